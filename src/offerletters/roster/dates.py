"""Start dates: a date cell, an Excel serial number or text typed in the usual
orders, held to plausible years; and the long form ("3 March 2020") of notes.
"""

from __future__ import annotations

import re
from datetime import date, datetime, time, timedelta
from typing import Final

from offerletters.roster.cells import Cell, InvalidCell, cell_text, number_text

__all__ = ["MONTH_NAMES", "long_date", "parse_start_date"]

# Start dates outside these years are typing mistakes, not plans.
EARLIEST_START_YEAR: Final = 1990
LATEST_START_YEAR: Final = 2100

# A plain number in this range in a date column is an Excel date serial
# (1954 to 2119 in the 1900 date system); other numbers are not dates.
SERIAL_DATE_RANGE: Final = (20_000, 80_000)

# Excel counts 29 February 1900, a day that never was, so its 1900 serials
# line up with days since 30 December 1899. Old Mac workbooks count from 1904.
EPOCH_1900: Final = date(1899, 12, 30)
EPOCH_1904: Final = date(1904, 1, 1)

MONTH_NAMES: Final = (
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)

_DATE_FIX: Final = "type a date such as 2027-01-15, or format the cell as a date"

_MONTH_NUMBERS: Final = {
    name[:3].casefold(): index for index, name in enumerate(MONTH_NAMES, 1)
}
_TIME_OF_DAY: Final = re.compile(
    r"(?:[T ]|\s+)\d{1,2}:\d{2}(?::\d{2}(?:[.,]\d+)?)?\s*(?:[ap]\.?m\.?)?"
    r"(?:Z|[+-]\d{2}:?\d{2})?$",
    re.IGNORECASE,
)
_WEEKDAY: Final = re.compile(
    r"^(?:mon|tue|wed|thu|fri|sat|sun)[a-z]*\.?,?\s+", re.IGNORECASE
)
_ISO_DATE: Final = re.compile(r"(\d{4})[-/.](\d{1,2})[-/.](\d{1,2})")
_COMPACT_DATE: Final = re.compile(r"(\d{4})(\d{2})(\d{2})")
_NUMERIC_DATE: Final = re.compile(r"(\d{1,2})[-/.](\d{1,2})[-/.](\d{4}|\d{2})")
_DAY_MONTH_NAME: Final = re.compile(
    r"(\d{1,2})(?:st|nd|rd|th)?(?:\s*of)?[-/.\s]*([^\W\d_]+)\.?[-/.,\s]*(\d{4}|\d{2})",
    re.IGNORECASE,
)
_MONTH_NAME_DAY: Final = re.compile(
    r"([^\W\d_]+)\.?[-/.\s]*(\d{1,2})(?:st|nd|rd|th)?[,.\s]*(\d{4})", re.IGNORECASE
)
_SERIAL_TEXT: Final = re.compile(r"\d{5}(?:\.\d+)?")


def parse_start_date(cell: Cell, *, day_first: bool, date1904: bool) -> date:
    """A start date from a date cell, an Excel serial number or typed text."""
    if isinstance(cell, datetime):
        return _plausible(cell.date(), cell_text(cell))
    if isinstance(cell, date):
        return _plausible(cell, cell_text(cell))
    if isinstance(cell, bool | time | timedelta):
        raise InvalidCell(f"{cell_text(cell)} is not a date", _DATE_FIX)
    if isinstance(cell, int | float):
        return _date_from_number(cell, date1904)

    text = cell_text(cell)
    return _plausible(
        _date_from_text(text, day_first=day_first, date1904=date1904), text
    )


def _date_from_number(number: float, date1904: bool) -> date:
    """An Excel date serial, or a yyyymmdd number such as 20270115."""
    compact = _COMPACT_DATE.fullmatch(number_text(number))
    if compact:
        return _plausible(
            _ymd(*compact.groups(), text=number_text(number)), number_text(number)
        )

    low, high = SERIAL_DATE_RANGE
    if not low <= number < high:
        raise InvalidCell(f"{number_text(number)} is a number, not a date", _DATE_FIX)
    epoch = EPOCH_1904 if date1904 else EPOCH_1900
    return _plausible(epoch + timedelta(days=int(number)), number_text(number))


def _date_from_text(text: str, *, day_first: bool, date1904: bool) -> date:
    """ISO, day/month/year in the configured order, or a month written out."""
    if _SERIAL_TEXT.fullmatch(text):
        return _date_from_number(float(text), date1904)
    text = _WEEKDAY.sub("", _TIME_OF_DAY.sub("", text), count=1)

    if match := _ISO_DATE.fullmatch(text) or _COMPACT_DATE.fullmatch(text):
        year, month, day = match.groups()
        return _ymd(year, month, day, text=text)
    if match := _NUMERIC_DATE.fullmatch(text):
        first, second, year = match.groups()
        day, month = (first, second) if day_first else (second, first)
        if int(month) > 12 >= int(day):
            order = "day/month/year" if day_first else "month/day/year"
            raise InvalidCell(
                f"{text!r} has no month {int(month)}: dates read as {order}", _DATE_FIX
            )
        return _ymd(year, month, day, text=text)
    if match := _DAY_MONTH_NAME.fullmatch(text):
        day, month_name, year = match.groups()
        return _ymd(year, _month(month_name, text), day, text=text)
    if match := _MONTH_NAME_DAY.fullmatch(text):
        month_name, day, year = match.groups()
        return _ymd(year, _month(month_name, text), day, text=text)
    raise InvalidCell(f"{text!r} is not a date", _DATE_FIX)


def _month(name: str, text: str) -> int:
    """The number of an English month name or its abbreviation ("Sept" too)."""
    folded = name.casefold()
    number = _MONTH_NUMBERS.get(folded[:3])
    full = MONTH_NAMES[number - 1].casefold() if number else ""
    if number is None or not (full.startswith(folded) or folded == "sept"):
        raise InvalidCell(f"{text!r} is not a date: {name!r} is not a month", _DATE_FIX)
    return number


def _ymd(year: str | int, month: str | int, day: str | int, *, text: str) -> date:
    """The date for these parts; a two-digit year is in this century."""
    year = int(year)
    if year < 100:
        year += 2000
    try:
        return date(year, int(month), int(day))
    except ValueError as exc:
        raise InvalidCell(f"{text!r} is not a real date ({exc})", _DATE_FIX) from exc


def _plausible(day: date, text: str) -> date:
    """The date, if its year can be a start date at all."""
    if not EARLIEST_START_YEAR <= day.year <= LATEST_START_YEAR:
        raise InvalidCell(
            f"{text!r} is not a plausible start date (year {day.year})", _DATE_FIX
        )
    return day


def long_date(day: date) -> str:
    """3 March 2020: the same in every locale, unlike strftime's %B."""
    return f"{day.day} {MONTH_NAMES[day.month - 1]} {day.year}"
