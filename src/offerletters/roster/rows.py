"""An opened `Roster` and its data rows: where the rows come from (`Source`),
and the validator that turns each into a `Candidate` or the `RowError`s that
say what is wrong with it, remembering the addresses it has seen.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from itertools import islice
from typing import TypeVar

from offerletters.errors import RosterTooLarge
from offerletters.roster.amounts import parse_amount, parse_currency_code
from offerletters.roster.cells import (
    Cell,
    InvalidCell,
    cell_text,
    is_empty,
    multiline_text,
    parse_email,
    parse_name,
    refuse_error_text,
)
from offerletters.roster.dates import long_date, parse_start_date
from offerletters.roster.header import Header
from offerletters.roster.package import UNSAVED_FORMULA
from offerletters.roster.records import (
    FIRST_NAME_KEY,
    Candidate,
    RosterOptions,
    RowError,
)

# "$120,000" cut at an unquoted comma: a head of one to three digits after
# any sign ("$120", "120"), then a tail of three and perhaps a currency
# ("000", "000.00", "000 €", "000 USD").
_SPLIT_HEAD = re.compile(r"\D*\d{1,3}")
_THOUSANDS_GROUP = re.compile(r"\d{3}(?:[.,]\d{1,2})?(?:\s*[^\d\s,.]{1,3})?")

__all__ = ["Roster", "Source"]

_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class Source:
    """Where a roster's rows come from, and what reading them needs to know."""

    # Numbered rows of cells from the top of the sheet; a new pass each call.
    rows: Callable[[], Iterator[tuple[int, Sequence[Cell]]]]
    options: RosterOptions
    # The sheet column (0-based) of each row's first cell.
    first_column: int = 0
    # Date serials in the workbook count days from 1904 (old Mac Excel).
    date1904: bool = False
    # Says why an empty-looking cell is empty, where the format lets us know.
    explain_empty: Callable[[int, int], str | None] | None = None
    # CSV: a row with more cells than the header has lost its columns' order
    # (an unquoted "$120,000"), so it is refused rather than read askew.
    fixed_width: bool = False


class Roster:
    """An opened roster: sheet chosen, header found, rows not yet read."""

    sheet: str
    header_row: int  # 1-based, as the spreadsheet shows it
    columns: list[str]  # header cells as written (cleaned of line breaks)
    extra_columns: dict[str, str]  # snake_case template name -> header as written

    def __init__(self, sheet: str, header: Header, source: Source) -> None:
        self.sheet = sheet
        self.header_row = header.row
        self.columns = list(header.cells)
        self.extra_columns = {key: header.cells[index] for key, index in header.extras}
        self._header = header
        self._source = source

    def rows(self) -> Iterator[Candidate | RowError]:
        """Every data row below the header, as a Candidate or its RowErrors.

        Blank rows are skipped and not counted towards `max_rows`; past it,
        RosterTooLarge is raised. Each call reads the rows again from the top.
        """
        options = self._source.options
        validator = _RowValidator(self._header, self._source, options)
        counted = 0
        for number, cells in islice(self._source.rows(), self.header_row, None):
            blank = cells.count("") == len(cells) or validator.is_blank(cells)
            if blank and not validator.hides_errors(number):
                continue

            counted += 1
            if counted > options.max_rows:
                raise RosterTooLarge("rows", options.max_rows)

            yield from validator.check(number, cells)


class _RowValidator:
    """Turns data rows into Candidates or RowErrors, remembering addresses seen."""

    def __init__(self, header: Header, source: Source, options: RosterOptions) -> None:
        self._header = header
        self._source = source
        self._options = options
        self._today = options.today or date.today()
        self._first_row_of: dict[str, int] = {}
        self._used: tuple[int, ...] = (
            *header.required.values(),
            *(i for _, i in header.extras),
        )
        if header.currency is not None:
            self._used += (header.currency,)

    def hides_errors(self, number: int) -> bool:
        """True when a row that reads blank holds formula errors in named columns.

        Calamine reads an error cell as empty: a row of failed look-ups would
        otherwise vanish without a word instead of being reported. Formulas
        never calculated stay blank: sheets made by programs drag them down
        far below the data.
        """
        explain = self._source.explain_empty
        if explain is None:
            return False

        first = self._source.first_column
        reasons = (explain(number, first + index) for index in self._used)
        return any(reason not in (None, UNSAVED_FORMULA) for reason in reasons)

    def is_blank(self, cells: Sequence[Cell]) -> bool:
        """True when no named column of the row holds anything but spaces."""
        return all(is_empty(_cell(cells, index)) for index in self._used)

    def check(self, number: int, cells: Sequence[Cell]) -> list[Candidate | RowError]:
        """One Candidate, or one RowError for each column that is wrong."""
        if self._source.fixed_width and self._misaligned(cells):
            return [self._misaligned_error(number, cells)]

        errors: list[RowError] = []

        def read(column: str, parse: Callable[[Cell], _T]) -> _T | None:
            return self._read(number, cells, column, parse, errors)

        name = read("Name", parse_name)
        email = read("Email", parse_email)
        role = read("Role", cell_text)
        amount = read("Offer Amount", parse_amount)
        start = read("Start Date", self._start_date)
        location = read("Location", cell_text)
        currency = self._currency(number, cells, amount, errors)
        extra = self._extras(number, cells, errors)
        if email is not None:
            self._check_duplicate(number, email, errors)

        if (
            errors
            or name is None
            or email is None
            or role is None
            or amount is None
            or start is None
            or location is None
        ):
            return list(errors)
        return [
            Candidate(
                row=number,
                name=name,
                email=email,
                role=role,
                offer_amount=amount[0],
                start_date=start,
                location=location,
                currency=currency,
                extra=extra,
                notes=self._notes(start),
            )
        ]

    def _extras(
        self, number: int, cells: Sequence[Cell], errors: list[RowError]
    ) -> dict[str, str]:
        """The extra columns this row fills; an empty cell is left out, so
        that `{% if hiring_manager is defined %}` reads as the sheet does.

        A First Name column stands in for the name's first word in the
        greeting, so it is checked as a name; any cell showing a spreadsheet
        error is a row error, never a value.
        """
        extra: dict[str, str] = {}
        for key, index in self._header.extras:
            cell = _cell(cells, index)
            header = self._header.cells[index]
            if is_empty(cell):
                hidden = self._explained_empty(number, index, header, header)
                errors.extend([hidden] if hidden else [])
                continue

            parse = parse_name if key == FIRST_NAME_KEY else multiline_text
            try:
                extra[key] = parse(refuse_error_text(cell))
            except InvalidCell as problem:
                errors.append(_invalid(number, header, cell, problem))
        return extra

    def _misaligned(self, cells: Sequence[Cell]) -> bool:
        """A CSV row whose values have slipped out of their columns."""
        too_wide = any(not is_empty(cell) for cell in cells[len(self._header.cells) :])
        return too_wide or self._amount_split(cells)

    def _amount_split(self, cells: Sequence[Cell]) -> bool:
        """An unquoted "$120,000" in CSV: "$120" then "000" in the next column.

        When a column further right is empty the row keeps its width, so the
        width alone cannot tell; three digits after an amount can.
        """
        index = self._header.required["Offer Amount"]
        amount, after = _cell(cells, index), _cell(cells, index + 1)
        return (
            isinstance(amount, str)
            and isinstance(after, str)
            and _SPLIT_HEAD.fullmatch(amount.strip()) is not None
            and _THOUSANDS_GROUP.fullmatch(after.strip()) is not None
        )

    def _misaligned_error(self, number: int, cells: Sequence[Cell]) -> RowError:
        width = len(cells)
        while width and is_empty(cells[width - 1]):
            width -= 1
        return RowError(
            number,
            None,
            f"the row's values do not line up with the header's"
            f" {len(self._header.cells)} columns ({width} values, the amount"
            " perhaps split in two)",
            fix="put quotes around every value that holds the delimiter, like"
            ' "$120,000" in a comma-separated file, or export the sheet again as CSV',
        )

    def _read(
        self,
        number: int,
        cells: Sequence[Cell],
        column: str,
        parse: Callable[[Cell], _T],
        errors: list[RowError],
    ) -> _T | None:
        """The parsed value of one required cell, or None with a RowError added."""
        index = self._header.required[column]
        header = self._header.cells[index]
        cell = _cell(cells, index)
        if is_empty(cell):
            errors.append(self._empty(number, index, column, header))
            return None

        try:
            return parse(refuse_error_text(cell))
        except InvalidCell as problem:
            errors.append(_invalid(number, header, cell, problem))
            return None

    def _empty(self, number: int, index: int, column: str, header: str) -> RowError:
        """The RowError for an empty required cell, saying why if we can tell."""
        explained = self._explained_empty(number, index, column, header)
        if explained is not None:
            return explained
        return RowError(
            number, header, f"{column} is empty", fix=f"fill in the {column.lower()}"
        )

    def _explained_empty(
        self, number: int, index: int, column: str, header: str
    ) -> RowError | None:
        """A RowError when an empty-looking cell hides a formula or its error."""
        explain = self._source.explain_empty
        reason = explain(number, self._source.first_column + index) if explain else None
        if reason == UNSAVED_FORMULA:
            return RowError(
                number,
                header,
                f"{column} is empty: the cell holds a formula whose result"
                " was never saved",
                fix="open and save the file in Excel so the formula results are stored",
            )
        if reason is not None:
            return RowError(
                number,
                header,
                f"{column} shows the error {reason} instead of a value",
                value=reason,
                fix="correct the formula, or type the value itself",
            )
        return None

    def _start_date(self, cell: Cell) -> date:
        return parse_start_date(
            cell, day_first=self._options.day_first, date1904=self._source.date1904
        )

    def _currency(
        self,
        number: int,
        cells: Sequence[Cell],
        amount: tuple[Decimal, str | None] | None,
        errors: list[RowError],
    ) -> str | None:
        """The row's currency: the Currency column's, else the amount's own."""
        written = amount[1] if amount else None
        index = self._header.currency
        if index is None:
            return written

        header = self._header.cells[index]
        cell = _cell(cells, index)
        if is_empty(cell):
            hidden = self._explained_empty(number, index, header, header)
            errors.extend([hidden] if hidden else [])
            return written

        try:
            code = parse_currency_code(cell_text(refuse_error_text(cell)))
        except InvalidCell as problem:
            errors.append(_invalid(number, header, cell, problem))
            return None
        if written is not None and written != code:
            amount_header = self._header.cells[self._header.required["Offer Amount"]]
            errors.append(
                RowError(
                    number,
                    amount_header,
                    f"the amount is in {written} but the {header} column says {code}",
                    cell_text(_cell(cells, self._header.required["Offer Amount"])),
                    fix="make the amount and the currency agree",
                )
            )
        return code

    def _check_duplicate(self, number: int, email: str, errors: list[RowError]) -> None:
        """Flag a second row for the same address (ignoring case)."""
        key = email.casefold()
        first = self._first_row_of.setdefault(key, number)
        if first == number or self._options.allow_duplicate_emails:
            return

        errors.append(
            RowError(
                number,
                self._header.cells[self._header.required["Email"]],
                f"same address as row {first}",
                email,
                fix="give each candidate their own address, or delete the repeated row",
            )
        )

    def _notes(self, start: date) -> tuple[str, ...]:
        if start >= self._today:
            return ()
        return (f"start date {long_date(start)} is in the past",)


def _invalid(number: int, header: str, cell: Cell, problem: InvalidCell) -> RowError:
    """The RowError for a cell whose value cannot be used, quoting the value."""
    return RowError(number, header, problem.message, cell_text(cell), problem.fix)


def _cell(cells: Sequence[Cell], index: int) -> Cell:
    """The cell at index; rows may be shorter than the header (CSV)."""
    return cells[index] if index < len(cells) else ""
