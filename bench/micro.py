"""Per-letter CPU cost of each step offerletters takes, measured in one process.

    uv run --group bench python -m bench.micro --rows 2000

Reads a roster from .cache/bench/rosters (written when missing), then times,
per letter: reading and validating the row, rendering, the Kafka payload
both ways, and building the MIME message's wire bytes. These call
offerletters' internals, so they follow its refactors.
"""

from __future__ import annotations

import argparse
import binascii
import gzip
import time
from collections.abc import Callable, Sequence, Sized
from email.headerregistry import Address
from pathlib import Path
from typing import TypeVar

import cramjam

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
        "build_message (the MIME message as wire bytes)",
        letters,
        lambda letter: build_message(letter, sender=SENDER),
    )
    flat = [message.data for message in messages]
    timed("  for scale: binascii.crc32 of the message", flat, binascii.crc32)
    print(f"message size: {sum(map(len, flat)) / len(flat):,.0f} bytes")
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
