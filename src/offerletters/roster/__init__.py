"""Reading rosters: a spreadsheet in, a stream of candidates and row errors out.

`open_roster` recognises the format from the bytes (xlsx, xlsm, xlsb, xls, ods
or CSV text), picks the sheet and finds the header row; `Roster.rows` then
reads the data rows one at a time and turns each into a Candidate or RowErrors.
"""

from __future__ import annotations

import codecs
import csv
import html
import io
import re
import unicodedata
import zipfile
import zlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from itertools import islice
from typing import IO, Final, TypeAlias, TypeVar

from babel.numbers import list_currencies
from email_validator import EmailNotValidError, validate_email
from python_calamine import (
    CalamineError,
    CalamineSheet,
    CalamineWorkbook,
    PasswordError,
    SheetTypeEnum,
    SheetVisibleEnum,
)

from offerletters.errors import OfferLettersError, RosterTooLarge, RosterUnreadable

__all__ = [
    "COLUMN_SYNONYMS",
    "CURRENCY_COLUMN",
    "REQUIRED_COLUMNS",
    "Candidate",
    "Roster",
    "RosterOptions",
    "RosterRejected",
    "RowError",
    "open_roster",
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

# Currency signs that name exactly one currency; "$" and "¥" do not, so an
# amount written with them takes its currency from the Currency column, if any.
CURRENCY_SYMBOLS: Final[dict[str, str | None]] = {
    "€": "EUR",
    "£": "GBP",
    "₹": "INR",
    "Rs": "INR",
    "Rs.": "INR",
    "₩": "KRW",
    "₪": "ILS",
    "₱": "PHP",
    "₦": "NGN",
    "₺": "TRY",
    "₴": "UAH",
    "₫": "VND",
    "฿": "THB",
    "US$": "USD",
    "C$": "CAD",
    "CA$": "CAD",
    "A$": "AUD",
    "AU$": "AUD",
    "NZ$": "NZD",
    "S$": "SGD",
    "HK$": "HKD",
    "R$": "BRL",
    "$": None,
    "¥": None,
    "kr": None,
}

# A header sits within the first rows that hold anything (titles come above).
HEADER_SCAN_ROWS: Final = 30

# A sheet holds a roster when one of its first rows names this many of the
# required columns; fewer is more likely a note or an instructions sheet.
MIN_HEADER_MATCHES: Final = 3

# calamine builds every cell of a sheet's used rectangle in memory (about
# 32 bytes each), so one stray cell far down and far right in a tiny file
# could ask for hundreds of gigabytes and abort the process. This caps that
# rectangle at about 1 GB.
MAX_SHEET_CELLS: Final = 2**25
EXCEL_MAX_ROWS: Final = 1_048_576
LETTER_COLUMNS: Final = 26  # A to Z: a cell reference with one column letter

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

# Offer amounts are money: whole cents at most, and below a trillion.
CENT: Final = Decimal("0.01")
MAX_OFFER_AMOUNT: Final = Decimal(10) ** 12
# Formula results such as =A2*1.1 carry binary noise (132000.00000000001);
# a numeric cell this close to whole cents is read as those cents.
FLOAT_NOISE: Final = Decimal("1e-6")

# How much of a CSV file the delimiter sniffer and the text checks look at.
CSV_SAMPLE_BYTES: Final = 64 * 1024
DECODE_CHUNK_BYTES: Final = 1 << 20
XML_CHUNK_BYTES: Final = 4 << 20

ZIP_MAGIC: Final = b"PK\x03\x04"
# Below this many unpacked bytes a workbook's packing ratio is not judged.
RATIO_CHECK_FROM_BYTES: Final = 16 * 1024 * 1024
OLE_MAGIC: Final = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
# An Excel file saved with a password is an OLE container with this stream.
ENCRYPTED_PACKAGE: Final = "EncryptedPackage".encode("utf-16-le")

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

Cell: TypeAlias = str | int | float | bool | date | time | timedelta
_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class Candidate:
    """One validated roster row, ready to become a letter."""

    row: int  # the row number the spreadsheet program shows (1-based)
    name: str
    email: str
    role: str
    offer_amount: Decimal
    start_date: date
    location: str
    currency: str | None = None  # from an optional Currency column
    extra: Mapping[str, str] = field(default_factory=dict)  # snake_case keys
    notes: tuple[str, ...] = ()  # worth a look, but not blocking


@dataclass(frozen=True, slots=True)
class RowError:
    """Why one roster row (or the header) cannot be used."""

    row: int
    column: str | None
    message: str
    value: str | None = None
    fix: str | None = None


class RosterRejected(OfferLettersError):
    """The roster has row errors; nothing from it may be queued."""

    def __init__(self, errors: list[RowError]) -> None:
        super().__init__(f"the roster has {len(errors)} row error(s)")
        self.errors = errors


@dataclass(frozen=True, slots=True)
class RosterOptions:
    """How to read a roster; the defaults suit an upload from HR."""

    # A sheet named by the caller; otherwise the first visible sheet that
    # holds a roster header.
    sheet: str | None = None
    # More non-blank data rows than this raise RosterTooLarge.
    max_rows: int = 200_000
    allow_duplicate_emails: bool = False
    # How to read ambiguous text dates such as 03/04/2027.
    day_first: bool = True
    # Start dates before this day get a note; None means the day of reading.
    today: date | None = None
    # A workbook is a zip: one that would unpack to more than this, or this
    # many times its packed size, is refused before it is unpacked.
    max_unpacked_bytes: int = 1024 * 1024 * 1024
    max_unpack_ratio: float = 200.0


DEFAULT_OPTIONS: Final = RosterOptions()


class Roster:
    """An opened roster: sheet chosen, header found, rows not yet read."""

    sheet: str
    header_row: int  # 1-based, as the spreadsheet shows it
    columns: list[str]  # header cells as written (cleaned of line breaks)
    extra_columns: dict[str, str]  # snake_case template name -> header as written

    def __init__(self, sheet: str, header: _Header, source: _Source) -> None:
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
            if cells.count("") == len(cells) or validator.is_blank(cells):
                continue

            counted += 1
            if counted > options.max_rows:
                raise RosterTooLarge("rows", options.max_rows)

            yield from validator.check(number, cells)


def open_roster(data: bytes, options: RosterOptions = DEFAULT_OPTIONS) -> Roster:
    """Open a roster: decide its format, choose the sheet and find the header.

    Raises RosterUnreadable when the bytes are not a spreadsheet we can read,
    and RosterRejected when the header lacks required columns.
    """
    if not data.strip():
        raise RosterUnreadable("the file is empty")

    if data.startswith(OLE_MAGIC):
        return _open_workbook(data, "xls", options)
    if data.startswith(ZIP_MAGIC):
        _check_unpacked_size(data, options)
        return _open_workbook(data, _zip_kind(data), options)
    return _open_csv(data, options)


# --- formats -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Source:
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


def _check_unpacked_size(data: bytes, options: RosterOptions) -> None:
    """Refuse a decompression bomb by the sizes its zip directory declares.

    Nothing is unpacked here. The ratio is judged only past a few megabytes:
    a small file that packs well can do no harm.
    """
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            members = archive.infolist()
    except (zipfile.BadZipFile, OSError) as exc:
        raise RosterUnreadable(f"the file is damaged: {exc}") from exc

    unpacked = sum(member.file_size for member in members)
    packed = max(sum(member.compress_size for member in members), 1)
    if unpacked > options.max_unpacked_bytes:
        raise RosterUnreadable(
            f"it unpacks to {_megabytes(unpacked)}, more than the"
            f" {_megabytes(options.max_unpacked_bytes)} a roster may unpack to;"
            " split the roster, or remove pictures and unused sheets"
        )
    if (
        unpacked > RATIO_CHECK_FROM_BYTES
        and unpacked / packed > options.max_unpack_ratio
    ):
        raise RosterUnreadable(
            f"it unpacks to {_megabytes(unpacked)} from {_megabytes(packed)},"
            f" {unpacked / packed:,.0f} times its size, where a spreadsheet"
            f" unpacks to at most {options.max_unpack_ratio:,.0f} times; it looks"
            " like a decompression bomb, not a roster"
        )


def _megabytes(size: int) -> str:
    return f"{size / 1_000_000:,.1f} MB"


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


def _open_workbook(data: bytes, kind: str, options: RosterOptions) -> Roster:
    """Open an Excel or OpenDocument workbook through calamine."""
    if kind == "xls" and data.find(ENCRYPTED_PACKAGE) != -1:
        raise RosterUnreadable(
            "the workbook is protected by a password; remove the password and"
            " upload it again"
        )

    package = _ExcelPackage(data, kind)
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

    fallback: tuple[str, _HeaderGuess, _Source] | None = None
    for name in wanted:
        package.check_area(name)
        with _calamine_errors(kind):
            sheet = workbook.get_sheet_by_name(name)
        if sheet.start is None:
            continue

        source = _sheet_source(sheet, package, name, options)
        guess = _guess_header(source.rows())
        if guess is None:
            continue
        if guess.matches >= MIN_HEADER_MATCHES or options.sheet is not None:
            return Roster(name, _header_from(guess), source)
        if fallback is None or guess.matches > fallback[1].matches:
            fallback = (name, guess, source)

    if fallback is None:
        where = f"the sheet {options.sheet!r}" if options.sheet else "every sheet"
        raise RosterUnreadable(f"{where} is empty")
    name, guess, source = fallback
    return Roster(name, _header_from(guess), source)


def _sheet_source(
    sheet: CalamineSheet, package: _ExcelPackage, name: str, options: RosterOptions
) -> _Source:
    """Rows of one calamine sheet, numbered as the spreadsheet shows them."""

    # calamine pads the rows above the used area, so rows count from row 1;
    # columns, though, start at the used area's first column.
    def rows() -> Iterator[tuple[int, Sequence[Cell]]]:
        return enumerate(sheet.iter_rows(), start=1)

    start = sheet.start or (0, 0)
    return _Source(
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


def _open_csv(data: bytes, options: RosterOptions) -> Roster:
    """Open CSV (or tab-separated) text; the roster's sheet is called "CSV"."""
    encoding = _text_encoding(data)
    sample = data[:CSV_SAMPLE_BYTES].decode(encoding, errors="ignore")
    if data.startswith(b"%PDF"):
        raise RosterUnreadable(
            "this is a PDF, not a spreadsheet; export the roster from its"
            " spreadsheet program as .xlsx or .csv"
        )
    if sample.lstrip().startswith("<"):
        raise RosterUnreadable(
            "this is a web page or XML document, not a spreadsheet; open it in"
            " Excel and save it as .xlsx"
        )

    first_line, _, rest = sample.partition("\n")
    # Excel writes and honours a first line "sep=;" naming the delimiter.
    declared = re.fullmatch(r"sep=(.)\r?", first_line)
    delimiter = declared[1] if declared else _sniff_delimiter(rest or sample)

    def rows() -> Iterator[tuple[int, Sequence[Cell]]]:
        text = io.TextIOWrapper(io.BytesIO(data), encoding=encoding, newline="")
        if declared:
            text.readline()
        yield from _csv_rows(text, delimiter)

    guess = _guess_header(rows())
    if guess is None:
        raise RosterUnreadable("the file holds no data")
    return Roster("CSV", _header_from(guess), _Source(rows=rows, options=options))


def _text_encoding(data: bytes) -> str:
    """The encoding of CSV text: UTF-8 (with or without BOM) or BOM-marked UTF-16."""
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        encoding = "utf-16"
    elif b"\x00" in data[:CSV_SAMPLE_BYTES]:
        raise RosterUnreadable(
            "this is not a spreadsheet (xlsx, xlsm, xlsb, xls, ods) nor CSV text"
        )
    else:
        encoding = "utf-8-sig"

    decoder = codecs.getincrementaldecoder(encoding)()
    for offset in range(0, len(data), DECODE_CHUNK_BYTES):
        chunk = data[offset : offset + DECODE_CHUNK_BYTES]
        try:
            decoder.decode(chunk, final=offset + DECODE_CHUNK_BYTES >= len(data))
        except UnicodeDecodeError as exc:
            raise RosterUnreadable(
                f"the text is not UTF-8 (byte {offset + exc.start:,});"
                ' save the file as "CSV UTF-8" and upload it again'
            ) from exc
    return encoding


def _sniff_delimiter(sample: str) -> str:
    """The delimiter of a CSV sample; a comma when the sample does not say."""
    complete_lines = sample[: sample.rfind("\n") + 1] or sample
    try:
        return csv.Sniffer().sniff(complete_lines, delimiters=",;\t|").delimiter
    except csv.Error:
        return ","


def _csv_rows(text: IO[str], delimiter: str) -> Iterator[tuple[int, Sequence[Cell]]]:
    """Numbered CSV records; a record spanning lines is still one row."""
    reader = csv.reader(text, delimiter=delimiter, quotechar='"', strict=False)
    try:
        yield from enumerate(reader, start=1)
    except csv.Error as exc:
        raise RosterUnreadable(
            f"the CSV text is malformed near line {reader.line_num:,}: {exc}"
        ) from exc


# --- the header --------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _HeaderGuess:
    """The row most likely to be the header, and how many columns it names."""

    row: int
    cells: tuple[str, ...]
    matches: int


@dataclass(frozen=True, slots=True)
class _Header:
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


def _guess_header(rows: Iterator[tuple[int, Sequence[Cell]]]) -> _HeaderGuess | None:
    """The first row naming the most required columns among the first rows."""
    best: _HeaderGuess | None = None
    scanned = 0
    for number, cells in rows:
        if cells.count("") == len(cells):
            continue

        texts = tuple(_text(cell) for cell in cells)
        named = {_HEADER_COLUMNS.get(_header_key(text)) for text in texts}
        matches = len(named.intersection(REQUIRED_COLUMNS))
        if best is None or matches > best.matches:
            best = _HeaderGuess(number, _trim_trailing(texts), matches)
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


def _header_from(guess: _HeaderGuess) -> _Header:
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
    return _Header(guess.row, guess.cells, required, currency, tuple(extras))


def _missing(guess: _HeaderGuess, column: str) -> RowError:
    found = ", ".join(text for text in guess.cells if text) or "nothing"
    also = ", ".join(COLUMN_SYNONYMS[column][:4])
    return RowError(
        row=guess.row,
        column=column,
        message=f"no column for {column}; the header row has: {found}",
        fix=f'add a column headed "{column}" (also understood: {also}, ...)',
    )


def _twice(guess: _HeaderGuess, column: str, found: list[int]) -> RowError:
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


# --- rows --------------------------------------------------------------------


class _Invalid(Exception):
    """A cell's value cannot be used; says why and how to fix it."""

    def __init__(self, message: str, fix: str) -> None:
        super().__init__(message)
        self.message = message
        self.fix = fix


class _RowValidator:
    """Turns data rows into Candidates or RowErrors, remembering addresses seen."""

    def __init__(
        self, header: _Header, source: _Source, options: RosterOptions
    ) -> None:
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

    def is_blank(self, cells: Sequence[Cell]) -> bool:
        """True when no named column of the row holds anything but spaces."""
        return all(_is_empty(_cell(cells, index)) for index in self._used)

    def check(self, number: int, cells: Sequence[Cell]) -> list[Candidate | RowError]:
        """One Candidate, or one RowError for each column that is wrong."""
        errors: list[RowError] = []

        def read(column: str, parse: Callable[[Cell], _T]) -> _T | None:
            return self._read(number, cells, column, parse, errors)

        name = read("Name", _text)
        email = read("Email", _email)
        role = read("Role", _text)
        amount = read("Offer Amount", _amount)
        start = read("Start Date", self._start_date)
        location = read("Location", _text)
        currency = self._currency(number, cells, amount, errors)
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
                extra={
                    key: _multiline_text(_cell(cells, i))
                    for key, i in self._header.extras
                },
                notes=self._notes(start),
            )
        ]

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
        if _is_empty(cell):
            errors.append(self._empty(number, index, column, header))
            return None

        try:
            return parse(cell)
        except _Invalid as problem:
            errors.append(
                RowError(number, header, problem.message, _text(cell), problem.fix)
            )
            return None

    def _empty(self, number: int, index: int, column: str, header: str) -> RowError:
        """The RowError for an empty required cell, saying why if we can tell."""
        explain = self._source.explain_empty
        reason = explain(number, self._source.first_column + index) if explain else None
        if reason == "unsaved formula":
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
        return RowError(
            number, header, f"{column} is empty", fix=f"fill in the {column.lower()}"
        )

    def _start_date(self, cell: Cell) -> date:
        return _start_date(
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
        if index is None or _is_empty(_cell(cells, index)):
            return written

        header = self._header.cells[index]
        cell = _cell(cells, index)
        try:
            code = _currency_code(_text(cell))
        except _Invalid as problem:
            errors.append(
                RowError(number, header, problem.message, _text(cell), problem.fix)
            )
            return None
        if written is not None and written != code:
            amount_header = self._header.cells[self._header.required["Offer Amount"]]
            errors.append(
                RowError(
                    number,
                    amount_header,
                    f"the amount is in {written} but the {header} column says {code}",
                    _text(_cell(cells, self._header.required["Offer Amount"])),
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
        return (f"start date {_long_date(start)} is in the past",)


def _cell(cells: Sequence[Cell], index: int) -> Cell:
    """The cell at index; rows may be shorter than the header (CSV)."""
    return cells[index] if index < len(cells) else ""


def _is_empty(cell: Cell) -> bool:
    """True for a cell with nothing a person could read in it."""
    if not isinstance(cell, str):
        return False
    if cell.isprintable() and "_x" not in cell:
        return not cell.strip(" ")
    return not _clean(cell)


def _long_date(day: date) -> str:
    """3 March 2020: the same in every locale, unlike strftime's %B."""
    return f"{day.day} {MONTH_NAMES[day.month - 1]} {day.year}"


# --- cell values -------------------------------------------------------------

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


def _text(cell: Cell) -> str:
    """Any cell as the single-line text a person reads in it."""
    if isinstance(cell, str):
        return _clean(cell)
    if isinstance(cell, bool):
        return "TRUE" if cell else "FALSE"
    if isinstance(cell, float):
        return _number_text(cell)
    if isinstance(cell, datetime):
        return cell.date().isoformat() if cell.time() == time() else cell.isoformat(" ")
    if isinstance(cell, date | time):
        return cell.isoformat()
    return str(cell)


def _multiline_text(cell: Cell) -> str:
    """Text that may span lines (extra columns): each line cleaned, LF between."""
    if not isinstance(cell, str):
        return _text(cell)

    text = _EXCEL_ESCAPES.sub(lambda match: _EXCEL_ESCAPED[match[1].upper()], cell)
    lines = [
        _clean(line) for line in re.split(r"\r\n|[\r\n\v\f\x85\u2028\u2029]", text)
    ]
    return "\n".join(lines).strip("\n")


def _number_text(number: float) -> str:
    """120000.0 -> "120000", 1234.5 -> "1234.5", as a spreadsheet shows them."""
    if isinstance(number, int):
        return str(number)
    if number.is_integer() and abs(number) < 1e15:
        return str(int(number))
    return repr(number)


def _email(cell: Cell) -> str:
    """A checked address in its normalised form (the domain lower-cased)."""
    try:
        return validate_email(_text(cell), check_deliverability=False).normalized
    except EmailNotValidError as exc:
        raise _Invalid(
            str(exc), "write one address alone, like name@example.com"
        ) from exc


# The currency codes CLDR knows; anything else in a Currency cell is a typo.
_CURRENCY_CODES: Final = frozenset(list_currencies())


def _currency_code(text: str) -> str:
    """An ISO 4217 code from a Currency cell ("usd", "€" and "EUR" work)."""
    code = CURRENCY_SYMBOLS.get(text) or text.upper()
    if re.fullmatch(r"[A-Z]{3}", code) and code in _CURRENCY_CODES:
        return code
    raise _Invalid(
        f"{text!r} is not a currency code",
        "write a three-letter ISO code, like USD or EUR",
    )


_AMOUNT_FIX: Final = "type the amount as a number, like 120000 or 120000.50"

# Currency marks, then the digits with their separators, then currency marks.
_AMOUNT_TEXT: Final = re.compile(
    r"(?P<prefix>\D*?)(?P<number>\d[\d.,']*(?:[eE][-+]?\d+)?)(?P<suffix>\D*)"
)


def _amount(cell: Cell) -> tuple[Decimal, str | None]:
    """A positive amount with at most two decimals, and the currency it names."""
    if isinstance(cell, bool | date | time | timedelta):
        raise _Invalid(f"{_text(cell)} is not an amount", _AMOUNT_FIX)
    if isinstance(cell, int):
        return _checked_amount(Decimal(cell)), None
    if isinstance(cell, float):
        return _checked_amount(_float_amount(cell)), None

    value, currency = _amount_from_text(_text(cell))
    return _checked_amount(value), currency


def _float_amount(number: float) -> Decimal:
    """The decimal a float stands for: repr gives its shortest exact digits."""
    value = Decimal(repr(number))
    if not value.is_finite() or abs(value) >= MAX_OFFER_AMOUNT:
        return value
    cents = value.quantize(CENT)
    return cents if abs(value - cents) < FLOAT_NOISE else value


def _amount_from_text(text: str) -> tuple[Decimal, str | None]:
    """An amount typed as text: "$120,000", "120 000 €", "USD 95,000.50", "1.2e5"."""
    compact = "".join(text.split()).replace("\u2212", "-")
    match = _AMOUNT_TEXT.fullmatch(compact)
    if match is None:
        raise _Invalid(f"{text!r} is not an amount", _AMOUNT_FIX)

    prefix, number, suffix = match.group("prefix", "number", "suffix")
    negative = "-" in prefix + suffix or ("(" in prefix and ")" in suffix)
    codes = {_currency_mark(prefix, text), _currency_mark(suffix, text)} - {None}
    if len(codes) > 1:
        raise _Invalid(f"{text!r} names two currencies", _AMOUNT_FIX)

    value = Decimal(_plain_number(number, text))
    return (-value if negative else value), (codes.pop() if codes else None)


def _currency_mark(affix: str, text: str) -> str | None:
    """The currency an amount's prefix or suffix names; raises on other words."""
    mark = affix.strip("()+-")
    if not mark:
        return None
    if mark in CURRENCY_SYMBOLS:
        return CURRENCY_SYMBOLS[mark]
    if re.fullmatch(r"[A-Za-z]{3}", mark) and mark.upper() in _CURRENCY_CODES:
        return mark.upper()
    if all(unicodedata.category(char) == "Sc" for char in mark):
        return None
    raise _Invalid(f"{text!r} is not an amount", _AMOUNT_FIX)


def _plain_number(number: str, text: str) -> str:
    """Digits with thousands separators removed and a "." decimal point."""
    mantissa, _, exponent = number.replace("'", "").replace("E", "e").partition("e")
    dots, commas = mantissa.count("."), mantissa.count(",")
    if dots and commas:
        point = "." if mantissa.rfind(".") > mantissa.rfind(",") else ","
        whole, _, fraction = mantissa.rpartition(point)
        whole = _ungrouped(whole, "," if point == "." else ".", text)
    elif commas == 1 and len(mantissa) - mantissa.rfind(",") - 1 in (1, 2):
        whole, _, fraction = mantissa.partition(",")
    elif commas or dots > 1:
        whole, fraction = _ungrouped(mantissa, "," if commas else ".", text), ""
    elif dots == 1 and len(mantissa) - mantissa.rfind(".") - 1 == 3 and not exponent:
        raise _Invalid(
            f"{text!r} is ambiguous: the dot may separate thousands or decimals",
            "write the amount without a thousands separator, like 120000 or 120.50",
        )
    else:
        whole, _, fraction = mantissa.partition(".")

    if not whole.isdigit() or (fraction and not fraction.isdigit()):
        raise _Invalid(f"{text!r} is not an amount", _AMOUNT_FIX)
    return f"{whole}.{fraction or 0}e{exponent or 0}"


def _ungrouped(whole: str, separator: str, text: str) -> str:
    """1,234,567 -> 1234567; Indian grouping (12,34,567) is accepted too."""
    first, *groups = whole.split(separator)
    western = all(len(group) == 3 for group in groups)
    indian = len(groups[-1]) == 3 and all(len(group) == 2 for group in groups[:-1])
    if not (1 <= len(first) <= 3 and (western or indian)):
        raise _Invalid(f"{text!r} has misplaced thousands separators", _AMOUNT_FIX)
    return first + "".join(groups)


def _checked_amount(value: Decimal) -> Decimal:
    """The amount in plain form, once it is a positive sum in whole cents."""
    if not value.is_finite():
        raise _Invalid("not an amount", _AMOUNT_FIX)
    if value < 0:
        raise _Invalid("the amount is negative", "type the offer as a positive number")
    if value == 0:
        raise _Invalid("the amount is zero", "type the offered amount")
    if value >= MAX_OFFER_AMOUNT:
        raise _Invalid("the amount is implausibly large", _AMOUNT_FIX)
    if value != value.quantize(CENT):
        raise _Invalid(
            "the amount has more than two decimal places", "round the amount to cents"
        )

    value = value.normalize()
    return value.quantize(Decimal(1)) if value == value.to_integral_value() else value


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


def _start_date(cell: Cell, *, day_first: bool, date1904: bool) -> date:
    """A start date from a date cell, an Excel serial number or typed text."""
    if isinstance(cell, datetime):
        return _plausible(cell.date(), _text(cell))
    if isinstance(cell, date):
        return _plausible(cell, _text(cell))
    if isinstance(cell, bool | time | timedelta):
        raise _Invalid(f"{_text(cell)} is not a date", _DATE_FIX)
    if isinstance(cell, int | float):
        return _date_from_number(cell, date1904)

    text = _text(cell)
    return _plausible(
        _date_from_text(text, day_first=day_first, date1904=date1904), text
    )


def _date_from_number(number: float, date1904: bool) -> date:
    """An Excel date serial, or a yyyymmdd number such as 20270115."""
    compact = _COMPACT_DATE.fullmatch(_number_text(number))
    if compact:
        return _plausible(
            _ymd(*compact.groups(), text=_number_text(number)), _number_text(number)
        )

    low, high = SERIAL_DATE_RANGE
    if not low <= number < high:
        raise _Invalid(f"{_number_text(number)} is a number, not a date", _DATE_FIX)
    epoch = EPOCH_1904 if date1904 else EPOCH_1900
    return _plausible(epoch + timedelta(days=int(number)), _number_text(number))


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
            raise _Invalid(
                f"{text!r} has no month {int(month)}: dates read as {order}", _DATE_FIX
            )
        return _ymd(year, month, day, text=text)
    if match := _DAY_MONTH_NAME.fullmatch(text):
        day, month_name, year = match.groups()
        return _ymd(year, _month(month_name, text), day, text=text)
    if match := _MONTH_NAME_DAY.fullmatch(text):
        month_name, day, year = match.groups()
        return _ymd(year, _month(month_name, text), day, text=text)
    raise _Invalid(f"{text!r} is not a date", _DATE_FIX)


def _month(name: str, text: str) -> int:
    """The number of an English month name or its abbreviation ("Sept" too)."""
    folded = name.casefold()
    number = _MONTH_NUMBERS.get(folded[:3])
    full = MONTH_NAMES[number - 1].casefold() if number else ""
    if number is None or not (full.startswith(folded) or folded == "sept"):
        raise _Invalid(f"{text!r} is not a date: {name!r} is not a month", _DATE_FIX)
    return number


def _ymd(year: str | int, month: str | int, day: str | int, *, text: str) -> date:
    """The date for these parts; a two-digit year is in this century."""
    year = int(year)
    if year < 100:
        year += 2000
    try:
        return date(year, int(month), int(day))
    except ValueError as exc:
        raise _Invalid(f"{text!r} is not a real date ({exc})", _DATE_FIX) from exc


def _plausible(day: date, text: str) -> date:
    """The date, if its year can be a start date at all."""
    if not EARLIEST_START_YEAR <= day.year <= LATEST_START_YEAR:
        raise _Invalid(
            f"{text!r} is not a plausible start date (year {day.year})", _DATE_FIX
        )
    return day


# --- Excel packages ----------------------------------------------------------

# Parts of a workbook's XML that calamine does not report, found with patterns
# rather than a parser: the files are large and only these few marks matter.
_XML_ATTRIBUTE: Final = re.compile(r"""([\w:.-]+)\s*=\s*(?:"([^"]*)"|'([^']*)')""")
_SHEET_ELEMENT: Final = re.compile(r"<(?:\w+:)?sheet\s([^>]*)>")
_RELATIONSHIP_ELEMENT: Final = re.compile(r"<(?:\w+:)?Relationship\s([^>]*)>")
_WORKBOOK_PROPERTIES: Final = re.compile(r"<(?:\w+:)?workbookPr\s([^>]*)>")
# Cell references with two or three column letters (column AA and beyond).
_WIDE_REFERENCE: Final = re.compile(rb'r="([A-Z]{2,3})[0-9]')
_ROW_OF_REFERENCE: Final = re.compile(rb'r="[A-Z]{1,3}([0-9]{1,7})"')
# A formula cell, noting whether a cached result (<v>) follows the formula.
_FORMULA_CELL: Final = re.compile(
    rb'<(?:\w+:)?c r="([A-Z]{1,3})([0-9]{1,7})"[^>]*>'
    rb"<(?:\w+:)?f\b(?:[^>]*/>|[^>]*>[^<]*</(?:\w+:)?f>)"
    rb"(<(?:\w+:)?v>)?"
)
# A cell showing an error (#N/A, #REF!), which calamine reads as empty.
_ERROR_CELL: Final = re.compile(
    rb'<(?:\w+:)?c r="([A-Z]{1,3})([0-9]{1,7})"[^>]*?\st="e"[^>]*>'
    rb"(?:<(?:\w+:)?f\b(?:[^>]*/>|[^>]*>[^<]*</(?:\w+:)?f>))?"
    rb"<(?:\w+:)?v>([^<]*)<"
)
_ROW_END: Final = b"row>"

# Records of the xlsb workbook part: workbook properties, and the first sheet.
XLSB_WORKBOOK_PROPERTIES: Final = 0x0099
XLSB_BEGIN_SHEETS: Final = 0x008F


class _ExcelPackage:
    """What calamine does not tell about a workbook: the date system, where a
    sheet's XML lives, how far its cells reach, and why a cell reads empty."""

    def __init__(self, data: bytes, kind: str) -> None:
        self._data = data
        self._kind = kind
        self._sheet_parts: dict[str, str] = {}
        self.date1904 = False
        if kind == "xlsx":
            with _package_errors(kind), zipfile.ZipFile(io.BytesIO(data)) as archive:
                self._read_xlsx_workbook(archive)
        elif kind == "xlsb":
            with _package_errors(kind), zipfile.ZipFile(io.BytesIO(data)) as archive:
                self.date1904 = _xlsb_date1904(archive.read("xl/workbook.bin"))

    def _read_xlsx_workbook(self, archive: zipfile.ZipFile) -> None:
        workbook = archive.read("xl/workbook.xml").decode("utf-8", errors="replace")
        properties = _WORKBOOK_PROPERTIES.search(workbook)
        if properties:
            flag = _attributes(properties[1]).get("date1904", "")
            self.date1904 = flag.casefold() in ("1", "true")

        rels_name = "xl/_rels/workbook.xml.rels"
        rels = archive.read(rels_name).decode("utf-8", errors="replace")
        targets = {}
        for element in _RELATIONSHIP_ELEMENT.finditer(rels):
            attributes = _attributes(element[1])
            targets[attributes.get("Id")] = attributes.get("Target", "")
        for element in _SHEET_ELEMENT.finditer(workbook):
            attributes = _attributes(element[1])
            relation = next(
                (v for k, v in attributes.items() if k.endswith(":id")), None
            )
            target = targets.get(relation)
            if target:
                path = target.lstrip("/") if target.startswith("/") else f"xl/{target}"
                self._sheet_parts[html.unescape(attributes.get("name", ""))] = path

    def check_area(self, sheet: str) -> None:
        """Refuse a sheet whose used rectangle would not fit in memory."""
        part = self._sheet_parts.get(sheet)
        if part is None:
            return

        widest = max(
            (_column_number(m) for m in self._findall(part, _WIDE_REFERENCE)), default=0
        )
        columns = max(widest, LETTER_COLUMNS)
        if columns * EXCEL_MAX_ROWS <= MAX_SHEET_CELLS:
            return
        deepest = max(
            (int(m) for m in self._findall(part, _ROW_OF_REFERENCE)), default=0
        )
        if columns * deepest <= MAX_SHEET_CELLS:
            return

        raise RosterUnreadable(
            f"the sheet {sheet!r} has cells as far as row {deepest:,} and column"
            f" {_column_letters(columns - 1)}, far more than a roster needs; delete"
            " what lies below and to the right of the roster and upload it again"
        )

    def empty_cell_explainer(
        self, sheet: str
    ) -> Callable[[int, int], str | None] | None:
        """Says why a cell reads empty: "unsaved formula", an error, or None.

        The sheet's XML is scanned once, and only when first asked, since
        most rosters never have an empty required cell.
        """
        part = self._sheet_parts.get(sheet)
        if part is None:
            return None
        reasons: dict[tuple[int, int], str] | None = None

        def explain(row: int, column: int) -> str | None:
            nonlocal reasons
            if reasons is None:
                reasons = self._empty_cell_reasons(part)
            return reasons.get((row, column))

        return explain

    def _empty_cell_reasons(self, part: str) -> dict[tuple[int, int], str]:
        reasons: dict[tuple[int, int], str] = {}
        for chunk in self._chunks(part):
            for letters, row, cached in _FORMULA_CELL.findall(chunk):
                if not cached:
                    reasons[int(row), _column_number(letters) - 1] = "unsaved formula"
            for letters, row, error in _ERROR_CELL.findall(chunk):
                reasons[int(row), _column_number(letters) - 1] = error.decode(
                    "ascii", "replace"
                )
        return reasons

    def _findall(self, part: str, pattern: re.Pattern[bytes]) -> Iterator[bytes]:
        for chunk in self._chunks(part):
            yield from pattern.findall(chunk)

    def _chunks(self, part: str) -> Iterator[bytes]:
        """A sheet's XML in pieces that end at a row's end, so no cell is cut."""
        with (
            _package_errors(self._kind),
            zipfile.ZipFile(io.BytesIO(self._data)) as archive,
            archive.open(part) as xml,
        ):
            pending = b""
            while block := xml.read(XML_CHUNK_BYTES):
                pending += block
                cut = pending.rfind(_ROW_END) + len(_ROW_END)
                if cut >= len(_ROW_END):
                    yield pending[:cut]
                    pending = pending[cut:]
            yield pending


@contextmanager
def _package_errors(kind: str) -> Iterator[None]:
    """A package missing its workbook parts is damaged, not a crash."""
    try:
        yield
    except (
        zipfile.BadZipFile,
        zlib.error,
        KeyError,
        OSError,
        IndexError,
        ValueError,
    ) as exc:
        raise RosterUnreadable(f"the {kind} file is damaged ({exc})") from exc


def _attributes(text: str) -> dict[str, str]:
    return {
        m[1]: html.unescape(m[2] if m[2] is not None else m[3])
        for m in _XML_ATTRIBUTE.finditer(text)
    }


def _xlsb_date1904(workbook: bytes) -> bool:
    """Whether an xlsb workbook counts dates from 1904 (its BrtWbProp flag)."""
    for record, body in _xlsb_records(workbook):
        if record == XLSB_WORKBOOK_PROPERTIES:
            return bool(body[:1]) and body[0] & 1 == 1
        if record == XLSB_BEGIN_SHEETS:
            break
    return False


def _xlsb_records(data: bytes) -> Iterator[tuple[int, bytes]]:
    """The records of an xlsb part: a 1-2 byte type, a 1-4 byte size, the body."""
    offset = 0
    while offset < len(data):
        record, offset = _xlsb_number(data, offset, 2)
        size, offset = _xlsb_number(data, offset, 4)
        yield record, data[offset : offset + size]
        offset += size


def _xlsb_number(data: bytes, offset: int, most: int) -> tuple[int, int]:
    """A little-endian number of 7-bit groups; the high bit says one more follows."""
    value = 0
    for shift in range(most):
        byte = data[offset]
        offset += 1
        value |= (byte & 0x7F) << (7 * shift)
        if not byte & 0x80:
            break
    return value, offset


def _column_number(letters: bytes | str) -> int:
    """A = 1, Z = 26, AA = 27, XFD = 16384."""
    text = letters.decode("ascii") if isinstance(letters, bytes) else letters
    number = 0
    for letter in text:
        number = number * 26 + ord(letter) - ord("A") + 1
    return number


def _column_letters(index: int) -> str:
    """0 -> A, 26 -> AA: the letters a spreadsheet shows for a 0-based column."""
    letters = ""
    index += 1
    while index:
        index, remainder = divmod(index - 1, 26)
        letters = chr(ord("A") + remainder) + letters
    return letters
