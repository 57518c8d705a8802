"""Delivery: one letter's way through the mailer, with retries, to an outcome.

Shared by the Kafka worker and the embedded mode, so both retry, log and count
in exactly the same way.
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from collections.abc import Sequence
from enum import StrEnum

import structlog

from offerletters.errors import DeliveryFailed
from offerletters.letters import Letter
from offerletters.logs import mask_email
from offerletters.mailer import Mailer

log = structlog.get_logger(__name__)

# Backoff between attempts: doubles from the first delay up to the cap, and
# each wait is drawn at random below it so retries from many workers spread.
FIRST_RETRY_DELAY_S = 0.5
MAX_RETRY_DELAY_S = 30.0


class Outcome(StrEnum):
    """What became of a letter."""

    SENT = "sent"
    FAILED = "failed"


class Delivery:
    """Delivers letters through a mailer and keeps count of the outcomes."""

    def __init__(self, mailer: Mailer, *, max_attempts: int) -> None:
        self._mailer = mailer
        self._max_attempts = max_attempts
        self.counts: Counter[Outcome] = Counter()

    async def deliver_all(self, letters: Sequence[Letter]) -> None:
        """Deliver letters concurrently; return when each one has an outcome."""
        await asyncio.gather(*(self.deliver(letter) for letter in letters))

    async def deliver(self, letter: Letter) -> Outcome:
        """Try one letter until it is sent, refused for good, or out of attempts."""
        with structlog.contextvars.bound_contextvars(
            letter_id=letter.letter_id, batch_id=letter.batch_id
        ):
            for attempt in range(1, self._max_attempts + 1):
                try:
                    await self._mailer.send(letter)
                except DeliveryFailed as exc:
                    if not exc.retriable or attempt == self._max_attempts:
                        return self._record_failure(letter, exc, attempt)

                    await self._wait_before_retry(exc, attempt)
                    continue

                log.info(
                    "letter_sent", to=mask_email(letter.recipient), attempt=attempt
                )
                self.counts[Outcome.SENT] += 1
                return Outcome.SENT

        raise AssertionError("unreachable: the last attempt always returns")

    def _record_failure(
        self, letter: Letter, exc: DeliveryFailed, attempt: int
    ) -> Outcome:
        log.error(
            "letter_failed",
            to=mask_email(letter.recipient),
            attempt=attempt,
            reply=exc.reply,
            retriable=exc.retriable,
        )
        self.counts[Outcome.FAILED] += 1
        return Outcome.FAILED

    async def _wait_before_retry(self, exc: DeliveryFailed, attempt: int) -> None:
        ceiling = min(MAX_RETRY_DELAY_S, FIRST_RETRY_DELAY_S * 2 ** (attempt - 1))
        delay_s = random.uniform(ceiling / 2, ceiling)  # noqa: S311  # jitter, not crypto
        log.warning(
            "letter_retrying",
            attempt=attempt,
            attempts_left=self._max_attempts - attempt,
            delay_s=round(delay_s, 2),
            reply=exc.reply,
        )
        await asyncio.sleep(delay_s)
