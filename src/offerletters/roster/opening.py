"""`open_roster`: the format told from the first bytes (an OLE container, a zip
package or text), and the bytes handed to the workbook or the CSV reader.
"""

from __future__ import annotations

import io
import zipfile
from typing import Final

from offerletters.errors import RosterUnreadable
from offerletters.roster.csv_text import open_csv
from offerletters.roster.package import check_unpacked_size
from offerletters.roster.records import DEFAULT_OPTIONS, RosterOptions
from offerletters.roster.rows import Roster
from offerletters.roster.workbook import open_workbook

__all__ = ["open_roster"]

# How a file starts: xls is an OLE container; xlsx, xlsm, xlsb and ods are zips.
ZIP_MAGIC: Final = b"PK\x03\x04"
OLE_MAGIC: Final = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"


def open_roster(data: bytes, options: RosterOptions = DEFAULT_OPTIONS) -> Roster:
    """Open a roster: decide its format, choose the sheet and find the header.

    Raises RosterUnreadable when the bytes are not a spreadsheet we can read,
    and RosterRejected when the header lacks required columns.
    """
    if not data.strip():
        raise RosterUnreadable("the file is empty")

    if data.startswith(OLE_MAGIC):
        return open_workbook(data, "xls", options)
    if data.startswith(ZIP_MAGIC):
        check_unpacked_size(data, options)
        return open_workbook(data, _zip_kind(data), options)
    return open_csv(data, options)


def _zip_kind(data: bytes) -> str:
    """Which zip-based format the bytes hold, judged by the package's parts."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            names = set(archive.namelist())
            mimetype = archive.read("mimetype") if "mimetype" in names else b""
    except (zipfile.BadZipFile, OSError, KeyError) as exc:
        raise RosterUnreadable(f"the file is damaged: {exc}") from exc

    if "xl/workbook.xml" in names:
        return "xlsx"
    if "xl/workbook.bin" in names:
        return "xlsb"
    if b"spreadsheet" in mimetype:
        return "ods"
    if "word/document.xml" in names or b"text" in mimetype:
        raise RosterUnreadable("this is a text document, not a spreadsheet")
    raise RosterUnreadable("this is a zip archive that holds no spreadsheet")
