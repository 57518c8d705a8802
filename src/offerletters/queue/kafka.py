"""Kafka: the topic, a transactional publisher, and a consumer-group source.

Every batch is published inside one Kafka transaction and workers read with
`read_committed`, so a batch that fails half-way (a bad row, a crash) is never
seen by any worker. Offsets are committed by hand, only after the handler has
given every letter up to them an outcome.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
from collections.abc import AsyncIterator, Callable, Collection, Sequence
from typing import Any

import structlog
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.abc import ConsumerRebalanceListener
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError
from pydantic import ValidationError

from offerletters.config import Settings
from offerletters.errors import QueueUnavailable
from offerletters.ledger import LetterOutcome
from offerletters.letters import Letter
from offerletters.queue import Handler
from offerletters.queue.offsets import OffsetTracker, Ticket

log = structlog.get_logger(__name__)

# Producer batching: wait a little to fill large, compressed batches instead of
# sending one request per letter.
LINGER_MS = 20
MAX_BATCH_BYTES = 512 * 1024

# How long one fetch waits for letters before the loop checks for a stop.
FETCH_TIMEOUT_MS = 500
# Finished offsets are committed this often, and whenever partitions move.
COMMIT_INTERVAL_S = 1.0


async def ensure_topic(settings: Settings) -> None:
    """Create the letters and dead-letter topics when missing; keep existing ones."""
    wanted = [
        NewTopic(
            name=settings.kafka_topic,
            num_partitions=settings.kafka_partitions,
            replication_factor=settings.kafka_replication_factor,
        ),
        # Dead letters are few and read whole when retried: one partition.
        NewTopic(
            name=settings.dead_letter_topic,
            num_partitions=1,
            replication_factor=settings.kafka_replication_factor,
        ),
    ]
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_servers)
    try:
        await admin.start()
        existing = set(await admin.list_topics())
        for topic in wanted:
            if topic.name not in existing:
                await _create_topic(admin, topic)
                log.info(
                    "topic_created", topic=topic.name, partitions=topic.num_partitions
                )
    except KafkaError as exc:
        raise _unavailable(settings, exc) from exc
    finally:
        await admin.close()


async def _create_topic(admin: AIOKafkaAdminClient, topic: NewTopic) -> None:
    """Create one topic; another process creating it first is fine."""
    response = await admin.create_topics([topic])
    for _name, code, *_rest in response.topic_errors:
        if code not in (0, TopicAlreadyExistsError.errno):
            raise KafkaError(f"creating topic {topic.name} failed with error {code}")


class KafkaPublisher:
    """Publishes batches of letters to the topic, one Kafka transaction each."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._producer: AIOKafkaProducer | None = None
        # A producer runs one transaction at a time; uploads take turns.
        self._turn = asyncio.Lock()

    async def start(self) -> None:
        await ensure_topic(self._settings)
        producer = AIOKafkaProducer(
            bootstrap_servers=self._settings.kafka_bootstrap_servers,
            # One id per process, so two API processes never fence each other.
            transactional_id=f"offerletters-api-{socket.gethostname()}-{os.getpid()}",
            acks="all",
            linger_ms=LINGER_MS,
            max_batch_size=MAX_BATCH_BYTES,
            compression_type="gzip",
        )
        try:
            await producer.start()
        except KafkaError as exc:
            await producer.stop()
            raise _unavailable(self._settings, exc) from exc

        self._producer = producer

    async def stop(self) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            await producer.stop()

    async def __aenter__(self) -> KafkaPublisher:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    @contextlib.asynccontextmanager
    async def batch(self) -> AsyncIterator[_TransactionWriter]:
        """Publish a batch inside one transaction; any exception aborts it whole."""
        if self._producer is None:
            raise QueueUnavailable("the Kafka publisher is not started")

        async with self._turn:
            try:
                async with self._producer.transaction():
                    writer = _TransactionWriter(
                        self._producer, self._settings.kafka_topic
                    )
                    yield writer
                    await writer.flush()
            except KafkaError as exc:
                raise _unavailable(self._settings, exc) from exc


class _TransactionWriter:
    """Sends letters without awaiting each one; `flush` awaits them all."""

    def __init__(self, producer: AIOKafkaProducer, topic: str) -> None:
        self._producer = producer
        self._topic = topic
        self._pending: list[asyncio.Future[Any]] = []

    async def put(self, letter: Letter) -> None:
        pending = await self._producer.send(
            self._topic,
            key=letter.letter_id.encode(),
            value=letter.model_dump_json().encode(),
        )
        self._pending.append(pending)

    async def flush(self) -> None:
        await asyncio.gather(*self._pending)
        self._pending.clear()


class KafkaDeadLetters:
    """Letters that failed for good, kept on the dead-letter topic for a retry."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._producer: AIOKafkaProducer | None = None

    async def __aenter__(self) -> KafkaDeadLetters:
        producer = AIOKafkaProducer(
            bootstrap_servers=self._settings.kafka_bootstrap_servers,
            enable_idempotence=True,
        )
        try:
            await producer.start()
        except KafkaError as exc:
            await producer.stop()
            raise _unavailable(self._settings, exc) from exc
        self._producer = producer
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            await producer.stop()

    async def keep(self, failed: Sequence[tuple[Letter, LetterOutcome]]) -> None:
        """Store each letter with the reply that failed it; return once stored."""
        if self._producer is None:
            raise QueueUnavailable("the dead-letter publisher is not started")

        pending = [
            await self._producer.send(
                self._settings.dead_letter_topic,
                key=letter.letter_id.encode(),
                value=letter.model_dump_json().encode(),
                headers=[("reply", (outcome.reply or "").encode())],
            )
            for letter, outcome in failed
        ]
        await asyncio.gather(*pending)

    async def find(self, letter_ids: Collection[str]) -> list[Letter]:
        """The newest stored copy of each of these letters, read from the topic."""
        wanted = set(letter_ids)
        found: dict[str, Letter] = {}
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self._settings.kafka_bootstrap_servers,
            enable_auto_commit=False,
        )
        try:
            await consumer.start()
            await _read_whole_topic(
                consumer,
                self._settings.dead_letter_topic,
                lambda record: _keep_wanted(record, wanted, found),
            )
        except KafkaError as exc:
            raise _unavailable(self._settings, exc) from exc
        finally:
            await consumer.stop()

        return list(found.values())


async def _read_whole_topic(
    consumer: AIOKafkaConsumer, topic: str, take: Callable[[Any], None]
) -> None:
    """Feed every record now in the topic to `take`, from the first to the last."""
    partitions = [
        TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()
    ]
    consumer.assign(partitions)
    await consumer.seek_to_beginning(*partitions)
    ends = await consumer.end_offsets(partitions)
    while [tp for tp, end in ends.items() if await consumer.position(tp) < end]:
        fetched = await consumer.getmany(timeout_ms=FETCH_TIMEOUT_MS)
        for records in fetched.values():
            for record in records:
                take(record)


def _keep_wanted(record: Any, wanted: set[str], found: dict[str, Letter]) -> None:
    letter_id = record.key.decode() if record.key else ""
    if letter_id in wanted:
        found[letter_id] = Letter.model_validate_json(record.value)


class KafkaSource:
    """One member of the workers' consumer group, handing letters to a handler.

    Each fetched group of records from one partition is handled as its own
    task, so a letter waiting on a retry never holds up the letters behind
    it; at most `capacity` letters are in hand at once. Offsets are committed
    as groups finish, never past a group that is still open.
    """

    def __init__(self, settings: Settings, *, name: str = "consumer") -> None:
        self._settings = settings
        self._name = name
        self._capacity = settings.worker_concurrency
        self._tracker: OffsetTracker[TopicPartition] = OffsetTracker()
        self._groups: set[asyncio.Task[None]] = set()
        self._in_hand = 0
        self._room = asyncio.Event()
        self._stopping = asyncio.Event()
        self._failure: BaseException | None = None

    async def consume(self, handle: Handler) -> None:
        """Fetch and hand out letters until `stop()`; then finish, commit, leave."""
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self._settings.kafka_bootstrap_servers,
            group_id=self._settings.kafka_consumer_group,
            client_id=f"offerletters-{self._name}",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            # Never see letters of a batch that was withdrawn or is unfinished.
            isolation_level="read_committed",
            # A rebalance waits for our open letters; give it the grace period.
            rebalance_timeout_ms=int(self._settings.shutdown_grace_s * 1000) + 10_000,
        )
        consumer.subscribe(
            [self._settings.kafka_topic], listener=_SettleOnRevoke(self, consumer)
        )
        try:
            await consumer.start()
            await self._fetch_until_stopped(consumer, handle)
            await self._wait_for_groups()
            if self._failure is not None:
                raise self._failure
        except KafkaError as exc:
            raise _unavailable(self._settings, exc) from exc
        finally:
            for group in self._groups:
                group.cancel()
            await self._commit(consumer)
            await consumer.stop()

    def stop(self) -> None:
        self._stopping.set()
        self._room.set()

    async def _fetch_until_stopped(
        self, consumer: AIOKafkaConsumer, handle: Handler
    ) -> None:
        last_commit = time.monotonic()
        while not self._stopping.is_set():
            fetched = await self._fetch(consumer)
            for tp, records in fetched.items():
                self._hand_out(tp, records, handle)

            if time.monotonic() - last_commit >= COMMIT_INTERVAL_S:
                await self._commit(consumer)
                last_commit = time.monotonic()

    async def _fetch(
        self, consumer: AIOKafkaConsumer
    ) -> dict[TopicPartition, list[Any]]:
        """Fetch up to the free room; when full, keep polling but take nothing."""
        room = self._capacity - self._in_hand
        if room > 0:
            consumer.resume(*consumer.paused())
            fetched: dict[TopicPartition, list[Any]] = await consumer.getmany(
                timeout_ms=FETCH_TIMEOUT_MS, max_records=room
            )
            return fetched

        # Polling while full keeps this member in the group however slow the
        # SMTP server is; paused partitions return nothing.
        consumer.pause(*consumer.assignment())
        await consumer.getmany(timeout_ms=0)
        self._room.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._room.wait(), FETCH_TIMEOUT_MS / 1000)
        return {}

    def _hand_out(
        self, tp: TopicPartition, records: list[Any], handle: Handler
    ) -> None:
        ticket = self._tracker.add(tp, records[-1].offset + 1)
        letters = [letter for r in records if (letter := self._decode(r)) is not None]
        self._in_hand += len(records)

        group = asyncio.create_task(handle(letters))
        self._groups.add(group)
        group.add_done_callback(
            lambda done: self._group_done(done, ticket, len(records))
        )

    def _group_done(
        self, group: asyncio.Task[None], ticket: Ticket[TopicPartition], size: int
    ) -> None:
        self._groups.discard(group)
        self._in_hand -= size
        self._room.set()
        if group.cancelled():
            return
        if exc := group.exception():
            # The group's offsets stay uncommitted, so its letters come back;
            # the worker stops rather than skip them.
            log.error("letter_group_failed", error=repr(exc))
            self._failure = exc
            self._stopping.set()
            return

        self._tracker.finish(ticket)

    async def settle(
        self, consumer: AIOKafkaConsumer, partitions: Sequence[TopicPartition]
    ) -> None:
        """Finish and commit the letters of partitions about to move elsewhere."""
        await self._wait_for_groups(partitions)
        await self._commit(consumer)
        self._tracker.forget(partitions)

    async def _wait_for_groups(
        self, partitions: Sequence[TopicPartition] | None = None
    ) -> None:
        """Wait until no group of these partitions (or of any) is open."""
        while self._tracker.unfinished(partitions):
            self._room.clear()
            await self._room.wait()

    async def _commit(self, consumer: AIOKafkaConsumer) -> None:
        """Commit finished offsets; shielded, as delivered letters depend on it."""
        offsets = self._tracker.take_committable()
        if offsets:
            await asyncio.shield(consumer.commit(offsets))
            log.debug("offsets_committed", consumer=self._name, partitions=len(offsets))

    def _decode(self, record: Any) -> Letter | None:
        """The letter in a record; a record that is not one is logged and passed."""
        try:
            return Letter.model_validate_json(record.value)
        except ValidationError as exc:
            log.error(
                "message_undecodable",
                partition=record.partition,
                offset=record.offset,
                errors=exc.error_count(),
            )
            return None


class _SettleOnRevoke(ConsumerRebalanceListener):  # type: ignore[misc]  # untyped base
    """Before partitions move to another worker, finish and commit their letters."""

    def __init__(self, source: KafkaSource, consumer: AIOKafkaConsumer) -> None:
        self._source = source
        self._consumer = consumer

    async def on_partitions_revoked(self, revoked: Sequence[TopicPartition]) -> None:
        await self._source.settle(self._consumer, revoked)
        log.info(
            "partitions_revoked", partitions=sorted(tp.partition for tp in revoked)
        )

    async def on_partitions_assigned(self, assigned: Sequence[TopicPartition]) -> None:
        log.info(
            "partitions_assigned", partitions=sorted(tp.partition for tp in assigned)
        )


def _unavailable(settings: Settings, exc: BaseException) -> QueueUnavailable:
    return QueueUnavailable(
        f"Kafka at {settings.kafka_bootstrap_servers} is not usable: {exc}"
    )
