"""Cells as the text a person reads in them: cleaning of invisible characters
and Excel's escaped line breaks, numbers shown as a spreadsheet shows them, and
email addresses; `InvalidCell` is what every cell parser raises.
"""

from __future__ import annotations

import re
import unicodedata
from datetime import date, datetime, time, timedelta
from typing import Final, TypeAlias

from email_validator import EmailNotValidError, validate_email

__all__ = [
    "Cell",
    "InvalidCell",
    "cell_text",
    "is_empty",
    "multiline_text",
    "number_text",
    "parse_email",
]

Cell: TypeAlias = str | int | float | bool | date | time | timedelta


class InvalidCell(Exception):
    """A cell's value cannot be used; says why and how to fix it."""

    def __init__(self, message: str, fix: str) -> None:
        super().__init__(message)
        self.message = message
        self.fix = fix


# Line breaks as Excel stores them in xlsx text when a reader leaves them encoded.
_EXCEL_ESCAPES: Final = re.compile(r"_x000([9AD])_", re.IGNORECASE)
_EXCEL_ESCAPED: Final = {"9": "\t", "A": "\n", "D": "\r"}
# Invisible characters pasted from web pages and Word; never part of a value.
# (Zero-width joiners stay: Indic and Persian names need them.)
_INVISIBLE: Final = dict.fromkeys(
    [*range(0x00, 0x09), *range(0x0E, 0x1C), 0x7F, 0x200B, 0x2060, 0xFEFF]
)


def _clean(text: str) -> str:
    """A single-line value: trimmed, every run of whitespace one space, NFC."""
    if _is_clean(text):
        return text
    if "_x" in text or "_X" in text:
        text = _EXCEL_ESCAPES.sub(" ", text)
    text = " ".join(text.translate(_INVISIBLE).split())
    return unicodedata.normalize("NFC", text)


def _is_clean(text: str) -> bool:
    """True for the common case, text that cleaning would leave as it is."""
    return (
        text.isprintable()
        and "  " not in text
        and text[:1] != " "
        and text[-1:] != " "
        and "_x" not in text
        and "_X" not in text
        and unicodedata.is_normalized("NFC", text)
    )


def is_empty(cell: Cell) -> bool:
    """True for a cell with nothing a person could read in it."""
    if not isinstance(cell, str):
        return False
    if cell.isprintable() and "_x" not in cell:
        return not cell.strip(" ")
    return not _clean(cell)


def cell_text(cell: Cell) -> str:
    """Any cell as the single-line text a person reads in it."""
    if isinstance(cell, str):
        return _clean(cell)
    if isinstance(cell, bool):
        return "TRUE" if cell else "FALSE"
    if isinstance(cell, float):
        return number_text(cell)
    if isinstance(cell, datetime):
        return cell.date().isoformat() if cell.time() == time() else cell.isoformat(" ")
    if isinstance(cell, date | time):
        return cell.isoformat()
    return str(cell)


def multiline_text(cell: Cell) -> str:
    """Text that may span lines (extra columns): each line cleaned, LF between."""
    if not isinstance(cell, str):
        return cell_text(cell)

    text = _EXCEL_ESCAPES.sub(lambda match: _EXCEL_ESCAPED[match[1].upper()], cell)
    lines = [
        _clean(line) for line in re.split(r"\r\n|[\r\n\v\f\x85\u2028\u2029]", text)
    ]
    return "\n".join(lines).strip("\n")


def number_text(number: float) -> str:
    """120000.0 -> "120000", 1234.5 -> "1234.5", as a spreadsheet shows them."""
    if isinstance(number, int):
        return str(number)
    if number.is_integer() and abs(number) < 1e15:
        return str(int(number))
    return repr(number)


# What Excel shows in a cell whose formula failed; CSV exports write it as text.
_EXCEL_ERROR_TEXTS: Final = frozenset(
    {
        "#N/A",
        "#VALUE!",
        "#REF!",
        "#DIV/0!",
        "#NUM!",
        "#NAME?",
        "#NULL!",
        "#SPILL!",
        "#CALC!",
        "#GETTING_DATA",
    }
)


def refuse_error_text(cell: Cell) -> Cell:
    """The cell as it is, unless it shows a spreadsheet error such as #N/A."""
    if isinstance(cell, str) and cell.strip().upper() in _EXCEL_ERROR_TEXTS:
        raise InvalidCell(
            f"the cell shows the error {cell.strip()} instead of a value",
            "correct the formula, or type the value itself",
        )
    return cell


def parse_name(cell: Cell) -> str:
    """A person's name: a text cell holding at least one letter, in any script.

    A number, date or TRUE here is a slip, or a formula whose result was
    saved as 0; a letter must never open with "Dear 0,".
    """
    text = cell_text(cell)
    if not isinstance(cell, str) or not any(char.isalpha() for char in text):
        raise InvalidCell(
            "a name must be text with letters in it",
            "type the candidate's name; if the cell holds a formula, open and"
            " save the file in Excel so its result is stored",
        )
    return text


def parse_email(cell: Cell) -> str:
    """A checked address in its normalised form (the domain lower-cased)."""
    try:
        return validate_email(cell_text(cell), check_deliverability=False).normalized
    except EmailNotValidError as exc:
        raise InvalidCell(
            str(exc), "write one address alone, like name@example.com"
        ) from exc
