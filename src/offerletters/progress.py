"""Following a batch from the command line: a live progress line until it is done."""

from __future__ import annotations

import asyncio
import sys

from offerletters.ledger import Ledger, LetterState

POLL_INTERVAL_S = 0.5
BAR_WIDTH = 30


def describe_progress(progress: dict[LetterState, int]) -> str:
    """'120 of 200 done: 118 sent, 2 failed, 3 retrying, 77 queued'."""
    total = sum(progress.values())
    done = progress[LetterState.SENT] + progress[LetterState.FAILED]
    return (
        f"{done} of {total} done: {progress[LetterState.SENT]} sent,"
        f" {progress[LetterState.FAILED]} failed,"
        f" {progress[LetterState.RETRYING]} retrying,"
        f" {progress[LetterState.QUEUED]} queued"
    )


async def follow_batch(ledger: Ledger, batch_id: str) -> dict[LetterState, int]:
    """Redraw a progress bar on stderr until every letter is sent or failed."""
    while True:
        progress = await ledger.batch_progress(batch_id)
        _draw(progress)
        if not progress[LetterState.QUEUED] + progress[LetterState.RETRYING]:
            print(file=sys.stderr)
            print(describe_progress(progress))
            return progress
        await asyncio.sleep(POLL_INTERVAL_S)


def _draw(progress: dict[LetterState, int]) -> None:
    total = sum(progress.values()) or 1
    done = progress[LetterState.SENT] + progress[LetterState.FAILED]
    filled = BAR_WIDTH * done // total
    bar = "#" * filled + "-" * (BAR_WIDTH - filled)
    # On a terminal the line is redrawn in place; in a log, one line per poll.
    end = "\r" if sys.stderr.isatty() else "\n"
    print(
        f"[{bar}] {describe_progress(progress)}", end=end, file=sys.stderr, flush=True
    )
