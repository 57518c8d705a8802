"""Real roster files for the tests: xlsx, xls, xlsb, ods and CSV, built from rows.

Every writer takes the same description, sheets of rows of plain Python
values, and returns the bytes a spreadsheet program would save: xlsx from
xlsxwriter, xls from xlwt, ods from odfpy, and xlsb from a small writer of
the binary format's records below, since no Python library writes xlsb.
"""

from __future__ import annotations

import csv
import io
import re
import struct
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time

import xlsxwriter
import xlwt  # type: ignore[import-untyped]  # xlwt ships no type information
from msoffcrypto.format.ooxml import OOXMLFile  # type: ignore[import-untyped]  # untyped
from odf.opendocument import (  # type: ignore[import-untyped]  # odfpy is untyped
    OpenDocumentSpreadsheet,
)
from odf.style import Style, TableProperties  # type: ignore[import-untyped]  # untyped
from odf.table import Table, TableCell, TableRow  # type: ignore[import-untyped]  # untyped
from odf.text import P  # type: ignore[import-untyped]  # odfpy is untyped

HEADER = ["Name", "Email", "Role", "Offer Amount", "Start Date", "Location"]


@dataclass(frozen=True, slots=True)
class Formula:
    """A formula cell; `cached` is the result saved with it, None if never saved."""

    text: str
    cached: str | float | None = None


Value = str | int | float | bool | date | time | Formula | None
Rows = Sequence[Sequence[Value]]


@dataclass(frozen=True, slots=True)
class Sheet:
    """One sheet of a workbook: a name, rows of values, and whether it is hidden."""

    name: str
    rows: Rows
    hidden: bool = False


def candidate(
    name: Value = "Zoë Müller",
    email: Value = "zoe.muller@example.com",
    role: Value = "Data Engineer",
    amount: Value = 120000,
    start: Value = date(2027, 1, 15),
    location: Value = "Berlin",
) -> list[Value]:
    """A valid roster row in HEADER's column order."""
    return [name, email, role, amount, start, location]


def roster(
    *rows: Sequence[Value], header: Sequence[Value] = HEADER
) -> list[list[Value]]:
    """A header followed by rows, ready for any writer."""
    return [list(header), *(list(row) for row in rows)]


# --- xlsx ----------------------------------------------------------------------


def xlsx(*sheets: Sheet, date1904: bool = False) -> bytes:
    """An xlsx workbook as Excel would save it; dates as formatted date cells."""
    buffer = io.BytesIO()
    workbook = xlsxwriter.Workbook(buffer, {"in_memory": True, "date_1904": date1904})
    date_format = workbook.add_format({"num_format": "yyyy-mm-dd"})
    datetime_format = workbook.add_format({"num_format": "yyyy-mm-dd hh:mm"})
    time_format = workbook.add_format({"num_format": "hh:mm"})
    for sheet in sheets:
        worksheet = workbook.add_worksheet(sheet.name)
        if sheet.hidden:
            worksheet.hide()
        for row, values in enumerate(sheet.rows):
            for column, value in enumerate(values):
                if isinstance(value, Formula):
                    cached = "" if value.cached is None else value.cached
                    worksheet.write_formula(row, column, value.text, None, cached)
                elif isinstance(value, datetime):
                    worksheet.write_datetime(row, column, value, datetime_format)
                elif isinstance(value, date):
                    worksheet.write_datetime(row, column, value, date_format)
                elif isinstance(value, time):
                    worksheet.write_datetime(row, column, value, time_format)
                elif value is not None:
                    worksheet.write(row, column, value)
    workbook.close()
    return _unsaved_formulas(buffer.getvalue())


def _unsaved_formulas(data: bytes) -> bytes:
    """Drop the empty cached results xlsxwriter writes, as Excel-less tools do.

    A workbook written by a script and never opened in Excel has formulas with
    no stored result (no <v> element); that is what Formula(cached=None) means.
    """
    return rewrite_parts(
        data,
        lambda name, body: (
            re.sub(rb"(</f>)<v></v>", rb"\1", body)
            if name.startswith("xl/worksheets/")
            else body
        ),
    )


def password_protected(data: bytes) -> bytes:
    """An xlsx encrypted with a password, as Excel's "Encrypt with Password" does."""
    output = io.BytesIO()
    OOXMLFile(io.BytesIO(data)).encrypt("open sesame", output)
    return output.getvalue()


def rewrite_parts(data: bytes, change: Callable[[str, bytes], bytes]) -> bytes:
    """A copy of a zip-based file with each part passed through `change`."""
    output = io.BytesIO()
    with (
        zipfile.ZipFile(io.BytesIO(data)) as source,
        zipfile.ZipFile(output, "w", zipfile.ZIP_DEFLATED) as target,
    ):
        for info in source.infolist():
            target.writestr(info, change(info.filename, source.read(info)))
    return output.getvalue()


# --- xls -----------------------------------------------------------------------


def xls(*sheets: Sheet) -> bytes:
    """An Excel 97-2003 workbook; formulas are stored without results, as xlwt does."""
    workbook = xlwt.Workbook(encoding="utf-8")
    date_style = xlwt.easyxf(num_format_str="yyyy-mm-dd")
    datetime_style = xlwt.easyxf(num_format_str="yyyy-mm-dd hh:mm")
    for sheet in sheets:
        worksheet = workbook.add_sheet(sheet.name)
        if sheet.hidden:
            worksheet.visibility = 1
        for row, values in enumerate(sheet.rows):
            for column, value in enumerate(values):
                if isinstance(value, time):
                    raise ValueError("the xls writer does not write times")
                if isinstance(value, Formula):
                    worksheet.write(row, column, xlwt.Formula(value.text.lstrip("=")))
                elif isinstance(value, datetime):
                    worksheet.write(row, column, value, datetime_style)
                elif isinstance(value, date):
                    worksheet.write(row, column, value, date_style)
                elif value is not None:
                    worksheet.write(row, column, value)
    buffer = io.BytesIO()
    workbook.save(buffer)
    return buffer.getvalue()


# --- ods -----------------------------------------------------------------------


def ods(*sheets: Sheet) -> bytes:
    """An OpenDocument spreadsheet, with typed cells as LibreOffice stores them."""
    document = OpenDocumentSpreadsheet()
    hidden = Style(name="hidden", family="table")
    hidden.addElement(TableProperties(display="false"))
    document.automaticstyles.addElement(hidden)
    for sheet in sheets:
        table = (
            Table(name=sheet.name, stylename=hidden)
            if sheet.hidden
            else Table(name=sheet.name)
        )
        for values in sheet.rows:
            row = TableRow()
            for value in values:
                row.addElement(_ods_cell(value))
            table.addElement(row)
        document.spreadsheet.addElement(table)
    buffer = io.BytesIO()
    document.save(buffer)
    return buffer.getvalue()


def _ods_cell(value: Value) -> object:
    if value is None:
        return TableCell()
    if isinstance(value, Formula | time):
        raise ValueError("the ods writer does not write formulas or times")
    if isinstance(value, bool):
        cell = TableCell(valuetype="boolean", booleanvalue=str(value).lower())
    elif isinstance(value, int | float):
        cell = TableCell(valuetype="float", value=str(value))
    elif isinstance(value, date):
        cell = TableCell(valuetype="date", datevalue=value.isoformat())
    else:
        cell = TableCell(valuetype="string")
    cell.addElement(P(text=str(value)))
    return cell


# --- xlsb ----------------------------------------------------------------------

# Record types of the Excel binary workbook format (MS-XLSB) used below.
BRT_ROW_HDR = 0x0000
BRT_CELL_BOOL = 0x0004
BRT_CELL_REAL = 0x0005
BRT_CELL_ISST = 0x0007
BRT_SST_ITEM = 0x0013
BRT_XF = 0x002F
BRT_BEGIN_SHEET = 0x0081
BRT_END_SHEET = 0x0082
BRT_BEGIN_BOOK = 0x0083
BRT_END_BOOK = 0x0084
BRT_BEGIN_BUNDLE_SHS = 0x008F
BRT_END_BUNDLE_SHS = 0x0090
BRT_BEGIN_SHEET_DATA = 0x0091
BRT_END_SHEET_DATA = 0x0092
BRT_WS_DIM = 0x0094
BRT_WB_PROP = 0x0099
BRT_BUNDLE_SH = 0x009C
BRT_BEGIN_SST = 0x009F
BRT_END_SST = 0x00A0
BRT_BEGIN_STYLE_SHEET = 0x0116
BRT_END_STYLE_SHEET = 0x0117
BRT_BEGIN_CELL_XFS = 0x0269
BRT_END_CELL_XFS = 0x026A

XLSB_DATE_STYLE = 1  # the cell format with built-in number format 14, a date
EXCEL_DATE_FORMAT = 14

XML_DECLARATION = '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
PACKAGE = "http://schemas.openxmlformats.org/package/2006"
RELATIONSHIP = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
MS_EXCEL = "application/vnd.ms-excel"


def xlsb(*sheets: Sheet, date1904: bool = False) -> bytes:
    """An Excel binary workbook (.xlsb) holding text, numbers, booleans and dates.

    Written record by record to the MS-XLSB layout Excel uses: shared strings,
    a cell format for dates, and one part per sheet. Formulas are not supported.
    """
    strings: dict[str, int] = {}
    parts = {
        f"worksheets/sheet{index}.bin": _xlsb_sheet(sheet.rows, strings, date1904)
        for index, sheet in enumerate(sheets, start=1)
    }
    workbook_parts = [
        *((f"{RELATIONSHIP}/worksheet", name) for name in parts),
        (f"{RELATIONSHIP}/styles", "styles.bin"),
        (f"{RELATIONSHIP}/sharedStrings", "sharedStrings.bin"),
    ]
    content_types = [
        *((f"/xl/{name}", f"{MS_EXCEL}.worksheet") for name in parts),
        ("/xl/styles.bin", f"{MS_EXCEL}.styles"),
        ("/xl/sharedStrings.bin", f"{MS_EXCEL}.sharedStrings"),
    ]

    output = io.BytesIO()
    with zipfile.ZipFile(output, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("[Content_Types].xml", _content_types(content_types))
        archive.writestr(
            "_rels/.rels",
            _relationships([(f"{RELATIONSHIP}/officeDocument", "xl/workbook.bin")]),
        )
        archive.writestr("xl/workbook.bin", _xlsb_workbook(sheets, date1904))
        archive.writestr("xl/_rels/workbook.bin.rels", _relationships(workbook_parts))
        archive.writestr("xl/styles.bin", _xlsb_styles())
        archive.writestr("xl/sharedStrings.bin", _xlsb_strings(strings))
        for name, body in parts.items():
            archive.writestr(f"xl/{name}", body)
    return output.getvalue()


def _content_types(overrides: Sequence[tuple[str, str]]) -> str:
    defaults = [
        ("bin", f"{MS_EXCEL}.sheet.binary.macroEnabled.main"),
        ("rels", "application/vnd.openxmlformats-package.relationships+xml"),
        ("xml", "application/xml"),
    ]
    elements = [
        *(f'<Default Extension="{e}" ContentType="{t}"/>' for e, t in defaults),
        *(f'<Override PartName="{p}" ContentType="{t}"/>' for p, t in overrides),
    ]
    body = "".join(elements)
    return f'{XML_DECLARATION}<Types xmlns="{PACKAGE}/content-types">{body}</Types>'


def _relationships(targets: Sequence[tuple[str, str]]) -> str:
    """A relationships part; the ids are rId1, rId2, ... in the given order."""
    elements = "".join(
        f'<Relationship Id="rId{index}" Type="{kind}" Target="{target}"/>'
        for index, (kind, target) in enumerate(targets, start=1)
    )
    opening = f'<Relationships xmlns="{PACKAGE}/relationships">'
    return f"{XML_DECLARATION}{opening}{elements}</Relationships>"


def _record(kind: int, body: bytes = b"") -> bytes:
    """One record: its type and size as 7-bit groups (high bit: more follow)."""
    head = bytearray()
    for number, most in ((kind, 2), (len(body), 4)):
        for _ in range(most):
            byte = number & 0x7F
            number >>= 7
            head.append(byte | (0x80 if number else 0))
            if not number:
                break
    return bytes(head) + body


def _wide(text: str) -> bytes:
    """An XLWideString: a character count, then UTF-16LE."""
    encoded = text.encode("utf-16-le")
    return struct.pack("<I", len(encoded) // 2) + encoded


def _xlsb_workbook(sheets: Sequence[Sheet], date1904: bool) -> bytes:
    records = [
        _record(BRT_BEGIN_BOOK),
        _record(BRT_WB_PROP, struct.pack("<II", int(date1904), 0) + _wide("")),
        _record(BRT_BEGIN_BUNDLE_SHS),
    ]
    for index, sheet in enumerate(sheets, start=1):
        state = 1 if sheet.hidden else 0
        body = (
            struct.pack("<II", state, index) + _wide(f"rId{index}") + _wide(sheet.name)
        )
        records.append(_record(BRT_BUNDLE_SH, body))
    records += [_record(BRT_END_BUNDLE_SHS), _record(BRT_END_BOOK)]
    return b"".join(records)


def _xlsb_styles() -> bytes:
    """Two cell formats: General, and the built-in date format 14."""
    formats = [
        struct.pack("<HHHHHBBHH", 0xFFFF, number_format, 0, 0, 0, 0, 0, 0, 0)
        for number_format in (0, EXCEL_DATE_FORMAT)
    ]
    return b"".join(
        [
            _record(BRT_BEGIN_STYLE_SHEET),
            _record(BRT_BEGIN_CELL_XFS, struct.pack("<I", len(formats))),
            *(_record(BRT_XF, body) for body in formats),
            _record(BRT_END_CELL_XFS),
            _record(BRT_END_STYLE_SHEET),
        ]
    )


def _xlsb_strings(strings: dict[str, int]) -> bytes:
    items = [_record(BRT_SST_ITEM, b"\x00" + _wide(text)) for text in strings]
    count = struct.pack("<II", len(items), len(items))
    return b"".join([_record(BRT_BEGIN_SST, count), *items, _record(BRT_END_SST)])


def _xlsb_sheet(rows: Rows, strings: dict[str, int], date1904: bool) -> bytes:
    width = max((len(row) for row in rows), default=1)
    dimension = struct.pack("<IIII", 0, max(len(rows) - 1, 0), 0, max(width - 1, 0))
    records = [
        _record(BRT_BEGIN_SHEET),
        _record(BRT_WS_DIM, dimension),
        _record(BRT_BEGIN_SHEET_DATA),
    ]
    for row_index, values in enumerate(rows):
        records.append(
            _record(BRT_ROW_HDR, struct.pack("<IIHBBBI", row_index, 0, 300, 0, 0, 0, 0))
        )
        for column, value in enumerate(values):
            cell = _xlsb_cell(column, value, strings, date1904)
            if cell:
                records.append(cell)
    records += [_record(BRT_END_SHEET_DATA), _record(BRT_END_SHEET)]
    return b"".join(records)


def _xlsb_cell(
    column: int, value: Value, strings: dict[str, int], date1904: bool
) -> bytes:
    if value is None:
        return b""
    if isinstance(value, Formula | time):
        raise ValueError("the xlsb writer does not write formulas or times")
    if isinstance(value, bool):
        return _record(BRT_CELL_BOOL, struct.pack("<IIB", column, 0, value))
    if isinstance(value, int | float):
        return _record(BRT_CELL_REAL, struct.pack("<IId", column, 0, value))
    if isinstance(value, date):
        serial = excel_serial(value, date1904)
        return _record(
            BRT_CELL_REAL, struct.pack("<IId", column, XLSB_DATE_STYLE, serial)
        )
    index = strings.setdefault(value, len(strings))
    return _record(BRT_CELL_ISST, struct.pack("<III", column, 0, index))


def excel_serial(day: date, date1904: bool = False) -> float:
    """The number Excel stores for a date (or date and time)."""
    moment = (
        day if isinstance(day, datetime) else datetime(day.year, day.month, day.day)
    )
    epoch = datetime(1904, 1, 1) if date1904 else datetime(1899, 12, 30)
    return (moment - epoch).total_seconds() / 86400


# --- CSV -----------------------------------------------------------------------


def csv_bytes(
    rows: Rows,
    *,
    delimiter: str = ",",
    encoding: str = "utf-8",
    sep_line: bool = False,
) -> bytes:
    """CSV text as a spreadsheet exports it: dates as ISO text, CRLF line ends."""
    text = io.StringIO(newline="")
    if sep_line:
        text.write(f"sep={delimiter}\r\n")
    writer = csv.writer(text, delimiter=delimiter, lineterminator="\r\n")
    for row in rows:
        writer.writerow(["" if value is None else _csv_value(value) for value in row])
    return text.getvalue().encode(encoding)


def _csv_value(value: Value) -> str:
    if isinstance(value, date | time):
        return value.isoformat()
    if isinstance(value, Formula):
        raise ValueError("CSV has no formulas")
    return str(value)
