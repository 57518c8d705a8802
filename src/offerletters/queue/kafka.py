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
from collections.abc import AsyncIterator, Sequence
from typing import Any

import structlog
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.abc import ConsumerRebalanceListener
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError
from pydantic import ValidationError

from offerletters.config import Settings
from offerletters.errors import QueueUnavailable
from offerletters.letters import Letter
from offerletters.queue import Handler

log = structlog.get_logger(__name__)

# Producer batching: wait a little to fill large, compressed batches instead of
# sending one request per letter.
LINGER_MS = 20
MAX_BATCH_BYTES = 512 * 1024

# How long one fetch waits for letters before the loop checks for a stop.
FETCH_TIMEOUT_MS = 500
# Letters taken per fetch; enough to keep every SMTP connection busy.
MAX_FETCH_RECORDS = 256


async def ensure_topic(settings: Settings) -> None:
    """Create the letters topic when it is missing; leave an existing one alone."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_servers)
    try:
        await admin.start()
        if settings.kafka_topic in await admin.list_topics():
            return

        topic = NewTopic(
            name=settings.kafka_topic,
            num_partitions=settings.kafka_partitions,
            replication_factor=settings.kafka_replication_factor,
        )
        await _create_topic(admin, topic)
        log.info(
            "topic_created",
            topic=settings.kafka_topic,
            partitions=settings.kafka_partitions,
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


class KafkaSource:
    """One member of the workers' consumer group, handing letters to a handler."""

    def __init__(self, settings: Settings, *, name: str = "consumer") -> None:
        self._settings = settings
        self._name = name
        # Held while a fetched group of letters is being handled and committed,
        # so a rebalance waits for it instead of handing the letters to another
        # worker half-done.
        self._handling = asyncio.Lock()
        self._stopping = asyncio.Event()

    async def consume(self, handle: Handler) -> None:
        """Fetch, handle, commit; until `stop()`; then leave the group."""
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self._settings.kafka_bootstrap_servers,
            group_id=self._settings.kafka_consumer_group,
            client_id=f"offerletters-{self._name}",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            # Never see letters of a batch that was withdrawn or is unfinished.
            isolation_level="read_committed",
        )
        consumer.subscribe(
            [self._settings.kafka_topic], listener=_SettleOnRevoke(self._handling)
        )
        try:
            await consumer.start()
            while not self._stopping.is_set():
                fetched = await consumer.getmany(
                    timeout_ms=FETCH_TIMEOUT_MS, max_records=MAX_FETCH_RECORDS
                )
                if fetched:
                    async with self._handling:
                        await self._handle_and_commit(consumer, fetched, handle)
        except KafkaError as exc:
            raise _unavailable(self._settings, exc) from exc
        finally:
            await consumer.stop()

    def stop(self) -> None:
        self._stopping.set()

    async def _handle_and_commit(
        self,
        consumer: AIOKafkaConsumer,
        fetched: dict[TopicPartition, list[Any]],
        handle: Handler,
    ) -> None:
        letters = [
            letter
            for records in fetched.values()
            for record in records
            if (letter := self._decode(record)) is not None
        ]
        await handle(letters)

        # Shielded: a shutdown that cancels us must not lose the commit of
        # letters that were already delivered.
        offsets = {tp: records[-1].offset + 1 for tp, records in fetched.items()}
        await asyncio.shield(consumer.commit(offsets))
        log.debug("offsets_committed", consumer=self._name, letters=len(letters))

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
    """Before partitions move to another worker, finish and commit what we hold."""

    def __init__(self, handling: asyncio.Lock) -> None:
        self._handling = handling

    async def on_partitions_revoked(self, revoked: Sequence[TopicPartition]) -> None:
        async with self._handling:
            log.info("partitions_revoked", partitions=len(revoked))

    async def on_partitions_assigned(self, assigned: Sequence[TopicPartition]) -> None:
        log.info(
            "partitions_assigned", partitions=sorted(tp.partition for tp in assigned)
        )


def _unavailable(settings: Settings, exc: BaseException) -> QueueUnavailable:
    return QueueUnavailable(
        f"Kafka at {settings.kafka_bootstrap_servers} is not usable: {exc}"
    )
