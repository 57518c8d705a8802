"""CSV (or tab-separated) text opened as a roster: its encoding checked, its
delimiter declared or sniffed, its records read as numbered rows.
"""

from __future__ import annotations

import codecs
import csv
import io
import re
from collections.abc import Iterator, Sequence
from typing import IO, Final

from offerletters.errors import RosterUnreadable
from offerletters.roster.cells import Cell
from offerletters.roster.header import guess_header, header_from
from offerletters.roster.records import RosterOptions
from offerletters.roster.rows import Roster, Source

__all__ = ["open_csv"]

# How much of a CSV file the delimiter sniffer and the text checks look at.
CSV_SAMPLE_BYTES: Final = 64 * 1024
DECODE_CHUNK_BYTES: Final = 1 << 20
# The delimiters a roster's CSV may use, most common first.
CSV_DELIMITERS: Final = ",;\t|"


def open_csv(data: bytes, options: RosterOptions) -> Roster:
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
    delimiter = declared[1] if declared else _choose_delimiter(sample, rest)

    def rows() -> Iterator[tuple[int, Sequence[Cell]]]:
        text = io.TextIOWrapper(io.BytesIO(data), encoding=encoding, newline="")
        if declared:
            text.readline()
        yield from _csv_rows(text, delimiter)

    guess = guess_header(rows())
    if guess is None:
        raise RosterUnreadable("the file holds no data")
    return Roster(
        "CSV", header_from(guess), Source(rows=rows, options=options, fixed_width=True)
    )


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


def _choose_delimiter(sample: str, below_first_line: str) -> str:
    """The delimiter that splits the sample into the best roster header.

    The sniffer looks below the first line, which may be a title; but it
    takes a comma inside every amount ("$120,000") of a tab- or
    semicolon-separated file for the delimiter. The header row settles it:
    the sniffer's choice stands unless another delimiter names more columns.
    """
    sniffed = _sniff_delimiter(below_first_line or sample)
    complete_lines = sample[: sample.rfind("\n") + 1] or sample

    def columns_named(delimiter: str) -> int:
        rows = _csv_rows(io.StringIO(complete_lines, newline=""), delimiter)
        try:
            guess = guess_header(rows)
        except RosterUnreadable:
            return -1
        return guess.matches if guess else 0

    others = [d for d in CSV_DELIMITERS if d != sniffed]
    return max([sniffed, *others], key=columns_named)


def _sniff_delimiter(sample: str) -> str:
    """The delimiter of a CSV sample; a comma when the sample does not say."""
    complete_lines = sample[: sample.rfind("\n") + 1] or sample
    try:
        return csv.Sniffer().sniff(complete_lines, delimiters=CSV_DELIMITERS).delimiter
    except csv.Error:
        return ","


def _csv_rows(text: IO[str], delimiter: str) -> Iterator[tuple[int, Sequence[Cell]]]:
    """Numbered CSV records; a record spanning lines is still one row."""
    # A space after the delimiter, as people type CSV by hand, must not
    # hide the quotes that follow it.
    reader = csv.reader(
        text, delimiter=delimiter, quotechar='"', skipinitialspace=True, strict=False
    )
    try:
        yield from enumerate(reader, start=1)
    except csv.Error as exc:
        raise RosterUnreadable(
            f"the CSV text is malformed near line {reader.line_num:,}: {exc}"
        ) from exc
