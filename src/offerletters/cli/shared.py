"""What the commands share: reading the roster file, loading templates, reporting.

Reports for people go to stdout; structured logs go to stderr.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from offerletters.config import Settings
from offerletters.errors import RosterMissing, RosterUnreadable
from offerletters.ingest import BatchReceipt
from offerletters.letters import LetterTemplates
from offerletters.roster import RowError

# Exit codes, so scripts can tell the cases apart.
EXIT_OK = 0
EXIT_REJECTED = 1  # the roster or its letters have problems; nothing was sent
EXIT_CONFIG = 2  # the settings cannot work, or the service cannot be reached
EXIT_UNDELIVERED = 3  # the batch was accepted but some letters failed


def read_roster(path: Path, settings: Settings) -> bytes:
    try:
        with path.open("rb") as roster:
            return roster.read(settings.max_upload_bytes + 1)
    except FileNotFoundError as exc:
        raise RosterMissing(f"there is no roster at {path}") from exc
    except OSError as exc:
        raise RosterUnreadable(f"{path}: {exc.strerror}") from exc


def templates(settings: Settings) -> LetterTemplates:
    return LetterTemplates.load(
        settings.templates_dir, locale=settings.locale, currency=settings.currency
    )


def print_receipt(receipt: BatchReceipt) -> None:
    if receipt.duplicate:
        print(
            f"batch {receipt.batch_id} was sent before ({receipt.letters} letters):"
            " nothing sent again; use --new-batch to send it anew"
        )
        return

    print(
        f"batch {receipt.batch_id}: {receipt.letters} letter(s)"
        f" from sheet {receipt.sheet!r}"
    )
    print_notes(receipt)


def print_checked(receipt: BatchReceipt) -> None:
    """What validate and preview found: no batch was made, only rows read."""
    print(f"sheet {receipt.sheet!r}: {receipt.letters} good row(s)")
    print_notes(receipt)


def print_notes(receipt: BatchReceipt) -> None:
    for note in receipt.notes:
        print(f"  note: {note}")


def print_row_errors(errors: Sequence[RowError]) -> None:
    for error in errors:
        where = f"row {error.row}" + (f", {error.column}" if error.column else "")
        value = f" (value {error.value!r})" if error.value else ""
        fix = f"; fix: {error.fix}" if error.fix else ""
        print(f"  {where}: {error.message}{value}{fix}")
