"""The header row: the columns a roster needs and the headers people write for
them, the guess of which of the first rows is the header, and the mapping of its
cells to columns (extra columns named for templates), or every problem with it.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Final

from offerletters.roster.cells import Cell, cell_text
from offerletters.roster.records import RosterRejected, RowError

__all__ = [
    "COLUMN_SYNONYMS",
    "CURRENCY_COLUMN",
    "MIN_HEADER_MATCHES",
    "REQUIRED_COLUMNS",
    "Header",
    "HeaderGuess",
    "guess_header",
    "header_from",
]

# The columns every roster must have, in the order errors report them.
REQUIRED_COLUMNS: Final = (
    "Name",
    "Email",
    "Role",
    "Offer Amount",
    "Start Date",
    "Location",
)

# Optional: the ISO code of each candidate's offer amount.
CURRENCY_COLUMN: Final = "Currency"

# The headers people write for each column we read. A header matches when it
# equals the column's name or one of these, ignoring case, spaces, punctuation
# and a bracketed remark: "E-mail", "EMAIL ADDRESS" and "Salary (USD)" all match.
COLUMN_SYNONYMS: Final[dict[str, tuple[str, ...]]] = {
    "Name": (
        "Full Name",
        "Candidate Name",
        "Candidate",
        "Candidate Full Name",
        "Employee Name",
        "Applicant Name",
        "Legal Name",
    ),
    "Email": (
        "E-mail",
        "Email Address",
        "E-mail Address",
        "Email ID",
        "Mail",
        "Personal Email",
        "Candidate Email",
    ),
    "Role": (
        "Position",
        "Job Title",
        "Title",
        "Designation",
        "Job Role",
        "Job",
        "Position Title",
    ),
    "Offer Amount": (
        "Offer",
        "Salary",
        "Base Salary",
        "Annual Salary",
        "Offered Salary",
        "Base Pay",
        "Compensation",
        "CTC",
        "Annual CTC",
        "Amount",
    ),
    "Start Date": (
        "Start",
        "Joining Date",
        "Date of Joining",
        "DOJ",
        "Join Date",
        "Starting Date",
        "Commencement Date",
    ),
    "Location": (
        "City",
        "Office",
        "Work Location",
        "Office Location",
        "Base Location",
        "Site",
    ),
    CURRENCY_COLUMN: ("Currency Code", "CCY"),
}

# A header sits within the first rows that hold anything (titles come above).
HEADER_SCAN_ROWS: Final = 30

# A sheet holds a roster when one of its first rows names this many of the
# required columns; fewer is more likely a note or an instructions sheet.
MIN_HEADER_MATCHES: Final = 3


@dataclass(frozen=True, slots=True)
class HeaderGuess:
    """The row most likely to be the header, and how many columns it names."""

    row: int
    cells: tuple[str, ...]
    matches: int


@dataclass(frozen=True, slots=True)
class Header:
    """Where each column is: indexes into a row's cells."""

    row: int
    cells: tuple[str, ...]
    required: dict[str, int]  # canonical column name -> index
    currency: int | None
    extras: tuple[tuple[str, int], ...]  # snake_case key -> index


def _header_key(text: str) -> str:
    """What a header is matched by: no case, spacing, punctuation or remark."""
    text = re.sub(r"\([^)]*\)|\[[^\]]*\]", "", unicodedata.normalize("NFKC", text))
    return "".join(char for char in text.casefold() if char.isalnum())


# Header key -> canonical column name, built once from COLUMN_SYNONYMS.
_HEADER_COLUMNS: Final = {
    _header_key(header): column
    for column, synonyms in COLUMN_SYNONYMS.items()
    for header in (column, *synonyms)
}


def guess_header(rows: Iterator[tuple[int, Sequence[Cell]]]) -> HeaderGuess | None:
    """The first row naming the most required columns among the first rows."""
    best: HeaderGuess | None = None
    scanned = 0
    for number, cells in rows:
        if cells.count("") == len(cells):
            continue

        texts = tuple(cell_text(cell) for cell in cells)
        named = {_HEADER_COLUMNS.get(_header_key(text)) for text in texts}
        matches = len(named.intersection(REQUIRED_COLUMNS))
        if best is None or matches > best.matches:
            best = HeaderGuess(number, _trim_trailing(texts), matches)
        scanned += 1
        if matches == len(REQUIRED_COLUMNS) or scanned == HEADER_SCAN_ROWS:
            break
    return best


def _trim_trailing(texts: tuple[str, ...]) -> tuple[str, ...]:
    """Header cells up to the last non-empty one."""
    end = len(texts)
    while end and not texts[end - 1]:
        end -= 1
    return texts[:end]


def header_from(guess: HeaderGuess) -> Header:
    """Map a header row's cells to columns, or reject it with every problem."""
    positions: dict[str, list[int]] = {}
    extras: list[tuple[str, int]] = []
    taken: set[str] = set()
    for index, text in enumerate(guess.cells):
        column = _HEADER_COLUMNS.get(_header_key(text))
        if column is not None:
            positions.setdefault(column, []).append(index)
        elif text:
            key = _unique(_template_name(text, index), taken)
            taken.add(key)
            extras.append((key, index))

    errors = [
        _twice(guess, column, found)
        for column, found in positions.items()
        if len(found) > 1
    ]
    errors += [
        _missing(guess, column)
        for column in REQUIRED_COLUMNS
        if column not in positions
    ]
    if errors:
        raise RosterRejected(errors)

    currency = positions.get(CURRENCY_COLUMN, [None])[0]
    required = {column: positions[column][0] for column in REQUIRED_COLUMNS}
    return Header(guess.row, guess.cells, required, currency, tuple(extras))


def _missing(guess: HeaderGuess, column: str) -> RowError:
    found = ", ".join(text for text in guess.cells if text) or "nothing"
    also = ", ".join(COLUMN_SYNONYMS[column][:4])
    return RowError(
        row=guess.row,
        column=column,
        message=f"no column for {column}; the header row has: {found}",
        fix=f'add a column headed "{column}" (also understood: {also}, ...)',
    )


def _twice(guess: HeaderGuess, column: str, found: list[int]) -> RowError:
    headers = " and ".join(f'"{guess.cells[index]}"' for index in found)
    return RowError(
        row=guess.row,
        column=column,
        message=f"more than one column means {column}: {headers}",
        fix="keep one of these columns and delete or rename the others",
    )


def _template_name(header: str, index: int) -> str:
    """A header as a template variable: "Hiring Manager" -> "hiring_manager"."""
    spaced = re.sub(
        r"(?<=[a-z0-9])(?=[A-Z])", " ", unicodedata.normalize("NFKC", header)
    )
    name = "_".join(re.findall(r"[^\W_]+", spaced.casefold()))
    if not name:
        return f"column_{index + 1}"
    if name[0].isdigit():
        return f"column_{name}"
    return name


def _unique(key: str, taken: set[str]) -> str:
    """The key itself, or with the lowest free suffix: notes, notes_2, ..."""
    suffix = 2
    unique = key
    while unique in taken:
        unique = f"{key}_{suffix}"
        suffix += 1
    return unique
