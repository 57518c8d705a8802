"""A workbook's zip package, read before and beside calamine: the guard that
refuses a decompression bomb by its declared sizes, and `ExcelPackage`, which
reads from xlsx and xlsb parts what calamine does not report.
"""

from __future__ import annotations

import html
import io
import re
import zipfile
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Final

from offerletters.errors import RosterUnreadable
from offerletters.roster.records import RosterOptions

__all__ = ["UNSAVED_FORMULA", "ExcelPackage", "check_unpacked_size"]

# calamine builds every cell of a sheet's used rectangle in memory (about
# 32 bytes each), so one stray cell far down and far right in a tiny file
# could ask for hundreds of gigabytes and abort the process. This caps that
# rectangle at about 1 GB.
MAX_SHEET_CELLS: Final = 2**25
EXCEL_MAX_ROWS: Final = 1_048_576
LETTER_COLUMNS: Final = 26  # A to Z: a cell reference with one column letter

# Below this many unpacked bytes a workbook's packing ratio is not judged.
RATIO_CHECK_FROM_BYTES: Final = 16 * 1024 * 1024

# Parts of a workbook's XML that calamine does not report, found with patterns
# rather than a parser: the files are large and only these few marks matter.
_XML_ATTRIBUTE: Final = re.compile(r"""([\w:.-]+)\s*=\s*(?:"([^"]*)"|'([^']*)')""")
_SHEET_ELEMENT: Final = re.compile(r"<(?:\w+:)?sheet\s([^>]*)>")
_RELATIONSHIP_ELEMENT: Final = re.compile(r"<(?:\w+:)?Relationship\s([^>]*)>")
_WORKBOOK_PROPERTIES: Final = re.compile(r"<(?:\w+:)?workbookPr\s([^>]*)>")
# Cell references with two or three column letters (column AA and beyond).
_WIDE_REFERENCE: Final = re.compile(rb'r="([A-Z]{2,3})[0-9]')
_ROW_OF_REFERENCE: Final = re.compile(rb'r="[A-Z]{1,3}([0-9]{1,7})"')
# What the empty-cell explainer says of a formula whose result was never saved.
UNSAVED_FORMULA: Final = "unsaved formula"
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
# A sheet's XML is read in pieces this large, each cut at a row's end.
XML_CHUNK_BYTES: Final = 4 << 20

# Records of the xlsb workbook part: workbook properties, and the first sheet.
XLSB_WORKBOOK_PROPERTIES: Final = 0x0099
XLSB_BEGIN_SHEETS: Final = 0x008F


def check_unpacked_size(data: bytes, options: RosterOptions) -> None:
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


class ExcelPackage:
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
                    reasons[int(row), _column_number(letters) - 1] = UNSAVED_FORMULA
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
