"""Reading rosters: a spreadsheet in, a stream of candidates and row errors out.

`open_roster` recognises the format from the bytes (xlsx, xlsm, xlsb, xls, ods
or CSV text), picks the sheet and finds the header row; `Roster.rows` then
reads the data rows one at a time and turns each into a Candidate or RowErrors.

The modules, in the order a roster passes through them: `opening` tells the
format; `package` guards against zip bombs and reads what calamine does not
report about an Excel package; `workbook` (through calamine) and `csv_text`
open the sheet; `header` finds the header row and maps its columns; `rows`
holds the opened `Roster` and validates each row, parsing cells with `cells`
(text, email), `amounts` and `dates`. `records` holds what comes out.
"""

from offerletters.roster.header import (
    COLUMN_SYNONYMS,
    CURRENCY_COLUMN,
    REQUIRED_COLUMNS,
)
from offerletters.roster.opening import open_roster
from offerletters.roster.records import (
    DEFAULT_OPTIONS,
    FIRST_NAME_KEY,
    Candidate,
    RosterOptions,
    RosterRejected,
    RowError,
)
from offerletters.roster.rows import Roster

__all__ = [
    "COLUMN_SYNONYMS",
    "CURRENCY_COLUMN",
    "DEFAULT_OPTIONS",
    "FIRST_NAME_KEY",
    "REQUIRED_COLUMNS",
    "Candidate",
    "Roster",
    "RosterOptions",
    "RosterRejected",
    "RowError",
    "open_roster",
]
