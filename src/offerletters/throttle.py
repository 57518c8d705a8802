"""The throttle: how fast one worker process starts SMTP sends.

A smooth limiter spaces sends evenly at the lower of the configured letters
per second and per minute, first come first served, so no second and no
minute ever holds more than allowed. On top of it the rate adapts (AIMD): when
the server signals overload it is halved, down to a floor, and while replies
are healthy it climbs back by a fixed step per second. Without a configured
rate it is unlimited until the first overload, which derives a rate from the
throughput seen just before.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import structlog

from offerletters.config import Settings

__all__ = ["Permit", "RateChange", "Throttle"]

log = structlog.get_logger(__name__)

SECONDS_PER_MINUTE = 60.0
# A cut keeps this share of the rate (the multiplicative decrease).
DECREASE_FACTOR = 0.5
# The slowest a worker is ever slowed down to, in letters per second; with a
# configured rate below it, three cuts are always possible.
MIN_RATE_PER_S = 0.5
MIN_CUTS = 3
# A recovery climbs by the rate it returns to, spread over this many seconds
# of healthy replies (the additive increase): from a halved rate, half of it.
RECOVERY_S = 60.0
# Overload is judged on the latest replies since the last cut: a cut needs
# this share of them to be overload signals. Fewer replies than MIN_EVIDENCE
# are counted as that many, so one deferral alone (greylisting, a busy
# mailbox) is not taken for an overloaded server.
VERDICT_WINDOW = 20
OVERLOAD_SHARE = 1 / 3
MIN_EVIDENCE = 5
# The throughput that an unlimited throttle derives its first rate from is
# measured over this many seconds before the overload.
OBSERVE_WINDOW_S = 10.0
# A recovery is logged each time the rate has grown by this factor.
LOG_GROWTH = 1.25
HISTORY_SIZE = 500

SLOWING_DOWN = "smtp_slowing_down"
SPEEDING_UP = "smtp_speeding_up"

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Permit:
    """Leave to start one send, stamped with the rate's generation at the time.

    Replies to sends that started before the last cut describe the old rate,
    so they are not held against the new one.
    """

    generation: int


@dataclass(frozen=True, slots=True)
class RateChange:
    """One logged change of the rate; `rate_per_s` None means no limit."""

    at: float
    event: str
    rate_per_s: float | None
    signal: str | None = None


class Throttle:
    """Paces sends and adapts the pace to the server's replies.

    `acquire` before each send, then report the reply with `healthy` or
    `overloaded`. Time comes from `clock` and waits from `sleep`, so tests
    can run it on a fake clock.
    """

    def __init__(
        self,
        *,
        per_second: float | None = None,
        per_minute: float | None = None,
        floor_per_s: float = MIN_RATE_PER_S,
        recovery_s: float = RECOVERY_S,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        limits = [per_second] if per_second is not None else []
        if per_minute is not None:
            limits.append(per_minute / SECONDS_PER_MINUTE)
        # The highest sustained rate allowed; None when nothing is configured.
        self._ceiling = min(limits) if limits else None
        self._floor = floor_per_s
        if self._ceiling is not None:
            self._floor = min(floor_per_s, self._ceiling * DECREASE_FACTOR**MIN_CUTS)
        self._recovery_s = recovery_s
        self._clock = clock
        self._sleep = sleep

        self._last_start: float | None = None
        self._first_start: float | None = None
        self._turn = asyncio.Lock()

        self.rate_per_s: float | None = self._ceiling
        # The rate a recovery returns to; None when not recovering.
        self._target: float | None = None
        self._generation = 0
        self._verdicts: deque[bool] = deque(maxlen=VERDICT_WINDOW)
        self._adjusted_at = clock()
        self._logged_rate = 0.0
        self._delivered: deque[float] = deque()

        self.history: deque[RateChange] = deque(maxlen=HISTORY_SIZE)
        # How many sends had to wait for their turn: zero while unthrottled.
        self.waits = 0

    @classmethod
    def for_settings(cls, settings: Settings) -> Throttle:
        """The throttle for the provider limits in the settings."""
        return cls(
            per_second=settings.smtp_rate_per_second,
            per_minute=settings.smtp_rate_per_minute,
        )

    @property
    def slowed_down(self) -> bool:
        """True while the rate is below the configured one (or below unlimited)."""
        return self._target is not None

    async def acquire(self) -> Permit:
        """Wait for this send's turn; turns are given in the order asked for."""
        async with self._turn:
            waited = False
            while (delay_s := self._delay(self._clock())) > 0:
                waited = True
                await self._sleep(delay_s)

            now = self._clock()
            self._last_start = now
            if self._first_start is None:
                self._first_start = now
            if waited:
                self.waits += 1
            return Permit(self._generation)

    def healthy(self, permit: Permit) -> None:
        """The server answered normally: count it, and climb if recovering."""
        now = self._clock()
        self._delivered.append(now)
        self._forget_old_deliveries(now)
        if permit.generation != self._generation:
            return

        self._verdicts.append(False)
        if self._target is not None:
            self._climb(now, self._target)

    def overloaded(self, permit: Permit, signal: str) -> None:
        """The server signalled overload (`signal` says how): maybe cut the rate."""
        if permit.generation != self._generation:
            return

        self._verdicts.append(True)
        share = sum(self._verdicts) / max(len(self._verdicts), MIN_EVIDENCE)
        if share >= OVERLOAD_SHARE:
            self._cut(self._clock(), signal)

    def _delay(self, now: float) -> float:
        """Seconds until the next send may start: one interval after the last."""
        if self.rate_per_s is None or self._last_start is None:
            return 0.0

        return self._last_start + 1 / self.rate_per_s - now

    def _cut(self, now: float, signal: str) -> None:
        if self._target is None or self.rate_per_s is None:
            # The first cut of a spell of trouble: start from what actually
            # flowed, and recover to the configured rate or to that flow.
            observed = self._observed(now)
            known = [rate for rate in (self.rate_per_s, observed) if rate]
            base = min(known) if known else self._floor / DECREASE_FACTOR
            self._target = self._ceiling or max(base, self._floor / DECREASE_FACTOR)
        else:
            base = self.rate_per_s

        rate = max(self._floor, base * DECREASE_FACTOR)
        self._generation += 1
        self._verdicts.clear()
        self._adjusted_at = now
        if rate == self.rate_per_s:
            return

        self.rate_per_s = rate
        self._logged_rate = rate
        self._record(SLOWING_DOWN, now, signal)

    def _climb(self, now: float, target: float) -> None:
        rate = self.rate_per_s if self.rate_per_s is not None else target
        rate += target / self._recovery_s * (now - self._adjusted_at)
        self._adjusted_at = now
        if rate >= target:
            # Recovered: back to the configured rate, or to no limit at all.
            self.rate_per_s = self._ceiling
            self._target = None
            self._record(SPEEDING_UP, now)
            return

        self.rate_per_s = rate
        if rate >= self._logged_rate * LOG_GROWTH:
            self._logged_rate = rate
            self._record(SPEEDING_UP, now)

    def _observed(self, now: float) -> float:
        """Healthy replies per second lately; 0 when nothing was sent yet."""
        self._forget_old_deliveries(now)
        if self._first_start is None:
            return 0.0

        span_s = min(OBSERVE_WINDOW_S, max(1.0, now - self._first_start))
        return len(self._delivered) / span_s

    def _forget_old_deliveries(self, now: float) -> None:
        while self._delivered and self._delivered[0] < now - OBSERVE_WINDOW_S:
            self._delivered.popleft()

    def _record(self, event: str, now: float, signal: str | None = None) -> None:
        rate = self.rate_per_s
        self.history.append(RateChange(now, event, rate, signal))
        shown = None if rate is None else round(rate, 3)
        if event == SLOWING_DOWN:
            log.warning(event, rate_per_s=shown, signal=signal)
        else:
            log.info(event, rate_per_s=shown, limited=rate is not None)
