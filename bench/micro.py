"""Per-letter CPU cost of each step offerletters takes, measured in one process.

    uv run --group bench python -m bench.micro --rows 2000

Reads a roster from .cache/bench/rosters (written when missing), then times,
per letter: reading and validating the row, rendering, the Kafka payload
both ways, building the MIME message and flattening it as aiosmtplib's
`send_message` does. It also times two cheaper ways to get the same bytes,
as evidence for what changing the worker would gain: flattening once with
the message's own policy (`bytes(message)`, for `sendmail`), and writing the
MIME text directly with the stdlib's encoders (`direct_mime`, a sketch).
These call offerletters' internals, so they follow its refactors.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import gzip
import time
import uuid
from collections.abc import Callable, Sequence, Sized
from datetime import UTC, datetime
from email.header import Header
from email.headerregistry import Address
from email.utils import format_datetime, formataddr
from pathlib import Path
from typing import TypeVar

import cramjam
from aiosmtplib.email import flatten_message

from bench.inputs import LOCALE, SENDER_ADDRESS, SENDER_NAME, TEMPLATES_DIR, roster
from offerletters.letters import Letter, LetterTemplates, build_message
from offerletters.roster import Candidate, RosterOptions, RowError, open_roster

T = TypeVar("T")
R = TypeVar("R")
WORK_DIR = Path(__file__).resolve().parents[1] / ".cache" / "bench"
SENDER = Address(SENDER_NAME, addr_spec=SENDER_ADDRESS)
# About what fits the producer's 512 KiB batches.
LETTERS_PER_BATCH = 100


def timed(label: str, items: Sequence[T], step: Callable[[T], R]) -> list[R]:
    """Run `step` on every item; print its CPU time per item."""
    start = time.process_time()
    out = [step(item) for item in items]
    per_item_ms = 1000 * (time.process_time() - start) / len(items)
    print(f"  {per_item_ms:7.3f} ms  {label}")
    return out


def direct_mime(letter: Letter, sender: Address) -> bytes:
    """The letter as MIME bytes written directly: a sketch of a faster builder.

    Same structure as build_message (multipart/alternative, text then HTML,
    RFC 2047 headers, 7bit-safe bodies), without the email package's object
    model. Bodies are base64 when not ASCII, as the email package does.
    """
    boundary = f"=={uuid.uuid4().hex}=="
    headers = [
        f"From: {formataddr((sender.display_name, sender.addr_spec), 'utf-8')}",
        f"To: {formataddr((letter.recipient_name, letter.recipient), 'utf-8')}",
        f"Subject: {_header_text(letter.subject)}",
        f"Date: {format_datetime(datetime.now(UTC))}",
        f"Message-ID: {letter.message_id}",
        "MIME-Version: 1.0",
        f'Content-Type: multipart/alternative; boundary="{boundary}"',
    ]
    parts = [_part("plain", letter.text), _part("html", letter.html)]
    body = "".join(f"--{boundary}\r\n{part}\r\n" for part in parts)
    return ("\r\n".join(headers) + f"\r\n\r\n{body}--{boundary}--\r\n").encode()


def _header_text(text: str) -> str:
    return text if text.isascii() else Header(text, "utf-8").encode()


def _part(subtype: str, text: str) -> str:
    """A body part: 7bit when it can be, else the shorter of QP and base64."""
    if text.isascii() and max(map(len, text.splitlines()), default=0) <= 78:
        encoding, payload = "7bit", text
    else:
        data = text.encode()
        quoted = binascii.b2a_qp(data).decode("ascii")
        coded = base64.encodebytes(data).decode("ascii")
        encoding, payload = (
            ("quoted-printable", quoted)
            if len(quoted) <= len(coded)
            else ("base64", coded)
        )
    payload = payload.replace("\n", "\r\n")
    return (
        f'Content-Type: text/{subtype}; charset="utf-8"\r\n'
        f"Content-Transfer-Encoding: {encoding}\r\n\r\n{payload}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2000)
    args = parser.parse_args()

    data = roster(args.rows, WORK_DIR / "rosters").read_bytes()
    templates = LetterTemplates.load(TEMPLATES_DIR, locale=LOCALE)
    batch_id = "0" * 32
    print(f"per letter, CPU time, {args.rows:,} letters:")

    start = time.process_time()
    opened = open_roster(data, RosterOptions(max_rows=args.rows))
    rows = list(opened.rows())
    read_ms = 1000 * (time.process_time() - start) / len(rows)
    print(f"  {read_ms:7.3f} ms  roster: open, read and validate a row")
    candidates = [row for row in rows if isinstance(row, Candidate)]
    if len(candidates) != len(rows) or any(isinstance(r, RowError) for r in rows):
        raise SystemExit("the roster has row errors")

    letters = timed(
        "render (subject, text, HTML)",
        candidates,
        lambda c: templates.render(c, batch_id=batch_id, sender=SENDER),
    )
    payloads = timed(
        "Kafka payload: Letter.model_dump_json().encode()",
        letters,
        lambda letter: letter.model_dump_json().encode(),
    )
    timed(
        "Kafka payload: Letter.model_validate_json()",
        payloads,
        Letter.model_validate_json,
    )
    messages = timed(
        "build_message (EmailMessage)",
        letters,
        lambda letter: build_message(letter, sender=SENDER),
    )
    timed(
        "flatten as aiosmtplib send_message does (copy + BytesGenerator)",
        messages,
        lambda message: flatten_message(message, utf8=False, cte_type="8bit"),
    )
    flat = timed("flatten with its own policy: bytes(message)", messages, bytes)
    direct = timed(
        "direct_mime sketch (build and flatten)",
        letters,
        lambda lt: direct_mime(lt, SENDER),
    )
    timed("  for scale: binascii.crc32 of the flat message", flat, binascii.crc32)

    sizes = sum(map(len, flat)) / len(flat), sum(map(len, direct)) / len(direct)
    print(f"message size: {sizes[0]:,.0f} bytes built, {sizes[1]:,.0f} direct sketch")
    _compression(payloads)


def _compression(payloads: list[bytes]) -> None:
    """Producer batch compression per letter: gzip-9 (aiokafka's) and the others."""
    batches = [
        b"".join(payloads[i : i + LETTERS_PER_BATCH])
        for i in range(0, len(payloads), LETTERS_PER_BATCH)
    ]
    size = sum(map(len, payloads)) / len(payloads)
    print(f"Kafka batches of {LETTERS_PER_BATCH} letters ({size:,.0f} bytes each):")
    codecs: list[tuple[str, Callable[[bytes], Sized]]] = [
        ("gzip level 9 (aiokafka's gzip)", lambda b: gzip.compress(b, 9)),
        ("gzip level 1", lambda b: gzip.compress(b, 1)),
        ("lz4 (cramjam)", cramjam.lz4.compress_block),
        ("zstd (cramjam)", cramjam.zstd.compress),
    ]
    for label, codec in codecs:
        start = time.process_time()
        compressed = [len(codec(batch)) for batch in batches]
        per_ms = 1000 * (time.process_time() - start) / len(payloads)
        ratio = sum(map(len, batches)) / sum(compressed)
        print(f"  {per_ms:7.3f} ms  {label}, {ratio:.1f}x smaller")


if __name__ == "__main__":
    main()
