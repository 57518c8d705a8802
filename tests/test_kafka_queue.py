"""The Kafka queue on a real broker: all-or-nothing batches, groups and commits."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from offerletters.config import Settings
from offerletters.letters import Letter
from offerletters.queue.kafka import KafkaPublisher, KafkaSource
from offerletters.worker import run_worker
from tests.support.smtp import SmtpSink
from tests.test_mailer import make_letter

pytestmark = pytest.mark.kafka


class Collected:
    """A handler that keeps what it is given and stops its source at a count."""

    def __init__(self, source: KafkaSource, expected: int) -> None:
        self.letters: list[Letter] = []
        self._source = source
        self._expected = expected

    async def __call__(self, letters: Sequence[Letter]) -> None:
        self.letters.extend(letters)
        if len(self.letters) >= self._expected:
            self._source.stop()


async def collect(
    settings: Settings, expected: int, timeout_s: float = 60
) -> list[Letter]:
    source = KafkaSource(settings)
    handler = Collected(source, expected)
    await asyncio.wait_for(source.consume(handler), timeout=timeout_s)
    return handler.letters


async def test_a_withdrawn_batch_never_reaches_a_consumer(
    kafka_settings: Settings,
) -> None:
    """Letters of a batch that raised are never seen; the next batch arrives."""
    async with KafkaPublisher(kafka_settings) as publisher:
        with pytest.raises(RuntimeError, match="bad row"):
            await publish_then_fail(publisher, rows=range(1, 6))

        async with publisher.batch() as writer:
            for row in range(101, 104):
                await writer.put(make_letter(row))

    letters = await collect(kafka_settings, expected=3)

    assert sorted(letter.row for letter in letters) == [101, 102, 103]


async def publish_then_fail(publisher: KafkaPublisher, rows: range) -> None:
    async with publisher.batch() as writer:
        for row in rows:
            await writer.put(make_letter(row))
        raise RuntimeError("bad row")


async def test_committed_letters_are_not_handed_out_again(
    kafka_settings: Settings,
) -> None:
    """A second member of the group starts after the first one's commits."""
    async with KafkaPublisher(kafka_settings) as publisher:
        async with publisher.batch() as writer:
            for row in range(1, 11):
                await writer.put(make_letter(row))
        first = await collect(kafka_settings, expected=10)

        async with publisher.batch() as writer:
            await writer.put(make_letter(11))
        second = await collect(kafka_settings, expected=1)

    assert len(first) == 10
    assert [letter.row for letter in second] == [11]


async def test_the_worker_delivers_every_published_letter_once(
    kafka_settings: Settings, smtp: SmtpSink
) -> None:
    """A worker fed 50 letters sends each to the SMTP server exactly once."""
    async with KafkaPublisher(kafka_settings) as publisher, publisher.batch() as writer:
        for row in range(1, 51):
            await writer.put(make_letter(row))

    stop = asyncio.Event()
    worker = asyncio.create_task(run_worker(kafka_settings, stop))
    await smtp.arrival_of(50)
    stop.set()
    await asyncio.wait_for(worker, timeout=30)

    recipients = sorted(r.recipients[0] for r in smtp.received)
    assert recipients == sorted(f"candidate{row}@example.com" for row in range(1, 51))
