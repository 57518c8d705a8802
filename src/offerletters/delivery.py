"""Delivery: one letter's way through the mailer, with retries, to a recorded outcome.

Shared by the Kafka worker and the embedded mode, so both skip letters already
sent, retry, dead-letter, log and record in exactly the same way.
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from collections.abc import Callable, Sequence

import structlog

from offerletters.errors import DeliveryFailed
from offerletters.ledger import Ledger, LetterOutcome, LetterState
from offerletters.letters import Letter
from offerletters.logs import mask_email
from offerletters.mailer import Mailer
from offerletters.metrics import (
    LETTERS_FAILED,
    LETTERS_IN_FLIGHT,
    LETTERS_RETRIED,
    LETTERS_SENT,
)
from offerletters.outcomes import OutcomeBook
from offerletters.queue import DeadLetterKeeper

log = structlog.get_logger(__name__)

# Backoff between attempts: doubles from the first delay up to the cap, and
# each wait is drawn at random below it so retries from many workers spread.
FIRST_RETRY_DELAY_S = 0.5
MAX_RETRY_DELAY_S = 30.0


class Delivery:
    """Tries one letter until it is sent, refused for good, or out of attempts."""

    def __init__(
        self,
        mailer: Mailer,
        *,
        max_attempts: int,
        on_retry: Callable[[LetterOutcome], None] | None = None,
    ) -> None:
        self._mailer = mailer
        self._max_attempts = max_attempts
        self._on_retry = on_retry

    async def deliver(self, letter: Letter) -> LetterOutcome:
        with (
            LETTERS_IN_FLIGHT.track_inprogress(),
            structlog.contextvars.bound_contextvars(
                letter_id=letter.letter_id, batch_id=letter.batch_id
            ),
        ):
            attempt = 1
            while True:
                try:
                    reply = await self._mailer.send(letter)
                except DeliveryFailed as exc:
                    if not exc.retriable or attempt == self._max_attempts:
                        return self._failed(letter, exc, attempt)

                    await self._wait_before_retry(letter, exc, attempt)
                    attempt += 1
                    continue

                LETTERS_SENT.inc()
                log.info(
                    "letter_sent", to=mask_email(letter.recipient), attempt=attempt
                )
                return LetterOutcome.of(
                    letter, LetterState.SENT, attempts=attempt, reply=reply
                )

    def _failed(
        self, letter: Letter, exc: DeliveryFailed, attempt: int
    ) -> LetterOutcome:
        LETTERS_FAILED.inc()
        log.error(
            "letter_failed",
            to=mask_email(letter.recipient),
            attempt=attempt,
            reply=exc.reply,
            retriable=exc.retriable,
        )
        return LetterOutcome.of(
            letter, LetterState.FAILED, attempts=attempt, reply=exc.reply
        )

    async def _wait_before_retry(
        self, letter: Letter, exc: DeliveryFailed, attempt: int
    ) -> None:
        ceiling = min(MAX_RETRY_DELAY_S, FIRST_RETRY_DELAY_S * 2 ** (attempt - 1))
        delay_s = random.uniform(ceiling / 2, ceiling)  # noqa: S311  # jitter, not crypto
        LETTERS_RETRIED.inc()
        log.warning(
            "letter_retrying",
            attempt=attempt,
            attempts_left=self._max_attempts - attempt,
            delay_s=round(delay_s, 2),
            reply=exc.reply,
        )
        if self._on_retry is not None:
            self._on_retry(
                LetterOutcome.of(
                    letter, LetterState.RETRYING, attempts=attempt, reply=exc.reply
                )
            )
        await asyncio.sleep(delay_s)


class Courier:
    """Handles a group of letters: skip the sent, deliver the rest, record it all.

    It returns only once every letter of the group has its outcome in the
    ledger (and, if failed for good, a copy with the dead letters), so the
    queue may then acknowledge the group.
    """

    def __init__(
        self,
        mailer: Mailer,
        ledger: Ledger,
        book: OutcomeBook,
        dead_letters: DeadLetterKeeper,
        *,
        max_attempts: int,
    ) -> None:
        self._ledger = ledger
        self._book = book
        self._dead_letters = dead_letters
        self._delivery = Delivery(mailer, max_attempts=max_attempts, on_retry=book.note)
        self.counts: Counter[LetterState] = Counter()

    async def handle(self, letters: Sequence[Letter]) -> None:
        sent_before = await self._ledger.sent_among([lt.letter_id for lt in letters])
        for letter in letters:
            if letter.letter_id in sent_before:
                log.info("letter_already_sent", letter_id=letter.letter_id)
        due = [lt for lt in letters if lt.letter_id not in sent_before]

        outcomes = await asyncio.gather(*(self._deliver_and_record(lt) for lt in due))
        self.counts.update(outcome.state for outcome in outcomes)

    async def _deliver_and_record(self, letter: Letter) -> LetterOutcome:
        """Deliver one letter and record its outcome as soon as it is known.

        A letter the server accepted is in the ledger one (group-committed)
        write later, not only once the slowest letter of its group is done:
        that write is the whole window in which a crash can send it twice.
        """
        outcome = await self._delivery.deliver(letter)
        if outcome.state is LetterState.FAILED:
            await self._dead_letters.keep([(letter, outcome)])
        await self._book.record([outcome])
        return outcome
