"""The throttle: pacing on a fake clock, AIMD on overload, and a real busy server."""

from __future__ import annotations

import asyncio
import itertools
from collections import Counter

import pytest

from offerletters.errors import DeliveryFailed
from offerletters.mailer import SmtpMailer
from offerletters.throttle import SLOWING_DOWN, SPEEDING_UP, Permit, Throttle
from tests.conftest import MakeSettings
from tests.support.smtp import SmtpSink
from tests.test_mailer import make_letter


class FakeTime:
    """A clock that only moves when a throttle sleeps, or when a test says so."""

    def __init__(self) -> None:
        self.now = 1_000.0

    def clock(self) -> float:
        return self.now

    async def sleep(self, delay_s: float) -> None:
        self.now += delay_s
        await asyncio.sleep(0)

    def throttle(self, **options: float) -> Throttle:
        return Throttle(clock=self.clock, sleep=self.sleep, **options)


async def send_healthy(
    throttle: Throttle, time: FakeTime, count: int, gap_s: float
) -> None:
    """`count` sends, each answered well `gap_s` after it started."""
    for _ in range(count):
        permit = await throttle.acquire()
        time.now += gap_s
        throttle.healthy(permit)


async def send_busy(throttle: Throttle, count: int) -> list[Permit]:
    """`count` sends started together and all answered 421."""
    permits = [await throttle.acquire() for _ in range(count)]
    for permit in permits:
        throttle.overloaded(permit, "421")
    return permits


def rates(throttle: Throttle, event: str) -> list[float | None]:
    return [change.rate_per_s for change in throttle.history if change.event == event]


async def test_without_limits_nothing_waits() -> None:
    """No configured rate and no trouble: every send starts at once."""
    time = FakeTime()
    throttle = time.throttle()

    await send_healthy(throttle, time, 200, gap_s=0.0)

    assert throttle.waits == 0
    assert time.now == 1_000.0
    assert throttle.rate_per_s is None


async def test_the_per_second_rate_spaces_sends_evenly() -> None:
    """At 10 letters per second, 21 sends take two seconds, 0.1 s apart."""
    time = FakeTime()
    throttle = time.throttle(per_second=10)

    starts = []
    for _ in range(21):
        await throttle.acquire()
        starts.append(time.now)

    assert time.now == pytest.approx(1_002.0)
    gaps = [later - earlier for earlier, later in itertools.pairwise(starts)]
    assert gaps == pytest.approx([0.1] * 20)


async def test_the_per_minute_rate_holds_in_every_minute() -> None:
    """30 a minute allows no more than 30 starts in any 60 s, however asked."""
    time = FakeTime()
    throttle = time.throttle(per_second=100, per_minute=30)

    starts = []
    for _ in range(100):
        await throttle.acquire()
        starts.append(time.now)

    busiest = max(
        sum(1 for t in starts if begin <= t < begin + 60.0) for begin in starts
    )
    assert busiest == 30


async def test_waiting_sends_go_in_the_order_they_asked() -> None:
    """Turns are first come, first served: no send overtakes another."""
    time = FakeTime()
    throttle = time.throttle(per_second=5)
    started: list[int] = []

    async def send(number: int) -> None:
        await throttle.acquire()
        started.append(number)

    tasks = []
    for number in range(20):
        tasks.append(asyncio.create_task(send(number)))
        await asyncio.sleep(0)
    await asyncio.gather(*tasks)

    assert started == list(range(20))


async def test_a_burst_of_421_halves_the_rate_and_healthy_replies_restore_it() -> None:
    """Unlimited at first; 421s cut to half the seen throughput, then half again;
    healthy replies climb back step by step until there is no limit again."""
    time = FakeTime()
    throttle = time.throttle(recovery_s=60)
    await send_healthy(throttle, time, 100, gap_s=0.01)  # 100 letters a second

    await send_busy(throttle, 10)
    assert rates(throttle, SLOWING_DOWN) == [pytest.approx(50.0)]

    await send_busy(throttle, 10)
    assert rates(throttle, SLOWING_DOWN) == [pytest.approx(50.0), pytest.approx(25.0)]
    assert throttle.slowed_down

    while throttle.slowed_down:
        await send_healthy(throttle, time, 1, gap_s=0.0)

    climbed = rates(throttle, SPEEDING_UP)
    assert climbed[-1] is None
    steps = [rate for rate in climbed[:-1] if rate is not None]
    assert steps == sorted(steps)
    assert all(25.0 < rate < 100.0 for rate in steps)
    # Additive: from 25 to 100 at 100/60 letters per second per second.
    assert time.now - 1_001.0 == pytest.approx(45.0, rel=0.05)


async def test_a_configured_rate_is_cut_and_recovers_to_itself() -> None:
    """With 20 a second configured, overload halves what flowed (at most 10 a
    second) and recovery ends at 20, never above."""
    time = FakeTime()
    throttle = time.throttle(per_second=20, recovery_s=10)
    await send_healthy(throttle, time, 40, gap_s=0.0)

    # A third of the latest 20 replies must tell of overload: 7 of them.
    await send_busy(throttle, 7)
    assert throttle.rate_per_s is not None
    assert 5.0 < throttle.rate_per_s <= 10.0

    while throttle.slowed_down:
        await send_healthy(throttle, time, 1, gap_s=0.0)
    assert throttle.rate_per_s == 20
    assert rates(throttle, SPEEDING_UP)[-1] == 20


async def test_replies_to_sends_begun_before_a_cut_do_not_cut_again() -> None:
    """64 sends in flight all answering 421 cost one halving, not 64."""
    time = FakeTime()
    throttle = time.throttle()
    await send_healthy(throttle, time, 100, gap_s=0.01)

    await send_busy(throttle, 64)

    assert len(rates(throttle, SLOWING_DOWN)) == 1


async def test_scattered_deferrals_do_not_slow_down() -> None:
    """One deferral in five replies (greylisting, busy mailboxes) is no overload."""
    time = FakeTime()
    throttle = time.throttle()

    for _ in range(50):
        await send_healthy(throttle, time, 4, gap_s=0.01)
        throttle.overloaded(await throttle.acquire(), "451")

    assert not throttle.history
    assert throttle.rate_per_s is None


async def test_the_rate_never_drops_below_the_floor() -> None:
    """However long the trouble lasts, sending goes on at the floor rate."""
    time = FakeTime()
    throttle = time.throttle(floor_per_s=2.0)
    await send_healthy(throttle, time, 100, gap_s=0.01)

    for _ in range(20):
        await send_busy(throttle, 2)

    assert throttle.rate_per_s == 2.0
    assert min(r for r in rates(throttle, SLOWING_DOWN) if r is not None) == 2.0


async def send_until_delivered(mailer: SmtpMailer, row: int) -> int:
    """Send one letter again at once after each temporary failure; the tries."""
    tries = 1
    while True:
        try:
            await mailer.send(make_letter(row))
        except DeliveryFailed as exc:
            if not exc.retriable:
                raise
            tries += 1
            continue
        return tries


async def test_a_busy_server_is_sent_to_more_slowly_and_gets_every_letter(
    make_settings: MakeSettings, smtp: SmtpSink
) -> None:
    """A server answering 421 for a while makes the mailer slow down (its rate
    falls and sends wait their turn), then speed up to no limit; every letter
    arrives exactly once."""
    settings = make_settings(
        smtp_host=smtp.host, smtp_port=smtp.port, smtp_connections=4
    )
    throttle = Throttle(floor_per_s=5.0, recovery_s=1.0)
    mailer = SmtpMailer(settings, throttle=throttle)

    await asyncio.gather(*(send_until_delivered(mailer, row) for row in range(1, 31)))
    assert throttle.waits == 0
    assert not throttle.history

    smtp.busy_for(8)
    tries = await asyncio.gather(
        *(send_until_delivered(mailer, row) for row in range(31, 91))
    )
    await mailer.stop()

    cuts = [rate for rate in rates(throttle, SLOWING_DOWN) if rate is not None]
    assert cuts
    assert cuts == sorted(cuts, reverse=True)
    assert min(cuts) >= 5.0
    assert throttle.waits > 0
    assert throttle.history[-1].event == SPEEDING_UP
    assert throttle.history[-1].rate_per_s is None
    assert sum(tries) == 60 + 8
    assert smtp.copies() == Counter(
        f"candidate{row}@example.com" for row in range(1, 91)
    )
