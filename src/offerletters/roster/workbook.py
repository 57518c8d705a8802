"""Excel and OpenDocument workbooks opened through calamine: the sheet chosen
(the one named, else the visible sheet that best holds a roster header), its
rows numbered as the spreadsheet shows them, calamine's failures made
RosterUnreadable.
"""

from __future__ import annotations

import io
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Final

from python_calamine import (
    CalamineError,
    CalamineSheet,
    CalamineWorkbook,
    PasswordError,
    SheetTypeEnum,
    SheetVisibleEnum,
)

from offerletters.errors import RosterUnreadable
from offerletters.roster.cells import Cell
from offerletters.roster.header import (
    MIN_HEADER_MATCHES,
    HeaderGuess,
    guess_header,
    header_from,
)
from offerletters.roster.package import ExcelPackage
from offerletters.roster.records import RosterOptions
from offerletters.roster.rows import Roster, Source

__all__ = ["open_workbook"]

# An Excel file saved with a password is an OLE container with this stream.
ENCRYPTED_PACKAGE: Final = "EncryptedPackage".encode("utf-16-le")


def open_workbook(data: bytes, kind: str, options: RosterOptions) -> Roster:
    """Open an Excel or OpenDocument workbook through calamine."""
    if kind == "xls" and data.find(ENCRYPTED_PACKAGE) != -1:
        raise RosterUnreadable(
            "the workbook is protected by a password; remove the password and"
            " upload it again"
        )

    package = ExcelPackage(data, kind)
    with _calamine_errors(kind):
        workbook = CalamineWorkbook.from_filelike(io.BytesIO(data))
    names = [sheet.name for sheet in workbook.sheets_metadata]
    if options.sheet is not None and options.sheet not in names:
        listed = ", ".join(repr(name) for name in names)
        raise RosterUnreadable(
            f"there is no sheet named {options.sheet!r}; the sheets are {listed}"
        )

    if options.sheet is not None:
        wanted = [options.sheet]
    else:
        wanted = [
            sheet.name
            for sheet in workbook.sheets_metadata
            if sheet.visible == SheetVisibleEnum.Visible
            and sheet.typ == SheetTypeEnum.WorkSheet
        ]
    if not wanted:
        raise RosterUnreadable("the workbook has no visible worksheet")

    fallback: tuple[str, HeaderGuess, Source] | None = None
    for name in wanted:
        package.check_area(name)
        with _calamine_errors(kind):
            sheet = workbook.get_sheet_by_name(name)
        if sheet.start is None:
            continue

        source = _sheet_source(sheet, package, name, options)
        guess = guess_header(source.rows())
        if guess is None:
            continue
        if guess.matches >= MIN_HEADER_MATCHES or options.sheet is not None:
            return Roster(name, header_from(guess), source)
        if fallback is None or guess.matches > fallback[1].matches:
            fallback = (name, guess, source)

    if fallback is None:
        where = f"the sheet {options.sheet!r}" if options.sheet else "every sheet"
        raise RosterUnreadable(f"{where} is empty")
    name, guess, source = fallback
    return Roster(name, header_from(guess), source)


def _sheet_source(
    sheet: CalamineSheet, package: ExcelPackage, name: str, options: RosterOptions
) -> Source:
    """Rows of one calamine sheet, numbered as the spreadsheet shows them."""

    # calamine pads the rows above the used area, so rows count from row 1;
    # columns, though, start at the used area's first column.
    def rows() -> Iterator[tuple[int, Sequence[Cell]]]:
        return enumerate(sheet.iter_rows(), start=1)

    start = sheet.start or (0, 0)
    return Source(
        rows=rows,
        options=options,
        first_column=start[1],
        date1904=package.date1904,
        explain_empty=package.empty_cell_explainer(name),
    )


@contextmanager
def _calamine_errors(kind: str) -> Iterator[None]:
    """Turn calamine's failures, panics included, into RosterUnreadable."""
    try:
        yield
    except PasswordError as exc:
        raise RosterUnreadable(
            "the workbook is protected by a password; remove the password and"
            " upload it again"
        ) from exc
    except (CalamineError, ValueError, OSError, IndexError) as exc:
        raise RosterUnreadable(f"the {kind} file is damaged ({exc})") from exc
    except BaseException as exc:
        # A Rust panic inside calamine surfaces as pyo3's PanicException,
        # which derives from BaseException and cannot be imported by name.
        if type(exc).__name__ != "PanicException":
            raise
        raise RosterUnreadable(f"the {kind} file is damaged ({exc})") from exc
