"""Kafka: the topic, a transactional publisher, and a consumer-group source.

Every batch is published inside one Kafka transaction and workers read with
`read_committed`, so a batch that fails half-way (a bad row, a crash) is never
seen by any worker. Offsets are committed by hand, only after the handler has
given every letter up to them an outcome. With payload keys configured each
letter is sealed (see offerletters.sealing) and its key id rides in a header.
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
from offerletters.errors import ConfigError, QueueUnavailable
from offerletters.ledger import LetterOutcome
from offerletters.letters import Letter
from offerletters.logs import mask_addresses
from offerletters.queue import Handler
from offerletters.queue.offsets import OffsetTracker, Ticket
from offerletters.sealing import Keyring, Sealed, SealError

log = structlog.get_logger(__name__)

# Producer batching: wait a little to fill large, compressed batches instead of
# sending one request per letter.
LINGER_MS = 20
MAX_BATCH_BYTES = 512 * 1024
# How often (in letters put) a transaction forgets the sends already acknowledged.
SETTLE_EVERY = 1000

# How long one fetch waits for letters before the loop checks for a stop.
FETCH_TIMEOUT_MS = 500
# Compressed bytes a worker fetches ahead, per partition and in all.
PREFETCH_PARTITION_BYTES = 256 * 1024
PREFETCH_TOTAL_BYTES = 4 * 1024 * 1024
# Finished offsets are committed this often, and whenever partitions move.
COMMIT_INTERVAL_S = 1.0
# How long a consumer outside a group waits to learn a topic's partitions.
METADATA_WAIT_S = 30.0
METADATA_POLL_S = 0.05

# Record headers. `kid` names the payload key that sealed the value; no `kid`
# means plain JSON. A record no worker could read is copied as it is to the
# dead-letter topic with `undecodable` (why) and `source` (topic/partition/
# offset it came from), for a person to look at; retries never pick it up.
KID_HEADER = "kid"
UNDECODABLE_HEADER = "undecodable"
SOURCE_HEADER = "source"


async def ensure_topic(settings: Settings) -> None:
    """Create the letters and dead-letter topics when missing; keep existing ones.

    With `kafka_create_topics` off, a missing topic is a ConfigError naming
    the topic and how to create it.
    """
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
        missing = [topic for topic in wanted if topic.name not in existing]
        if missing and not settings.kafka_create_topics:
            raise _topics_missing(settings, missing)

        for topic in missing:
            await _create_topic(admin, topic)
            log.info("topic_created", topic=topic.name, partitions=topic.num_partitions)
    except KafkaError as exc:
        raise _unavailable(settings, exc) from exc
    finally:
        await admin.close()


def _topics_missing(settings: Settings, missing: Sequence[NewTopic]) -> ConfigError:
    servers = settings.kafka_bootstrap_servers
    how = "; ".join(
        f"kafka-topics.sh --bootstrap-server {servers} --create --topic {t.name}"
        f" --partitions {t.num_partitions}"
        f" --replication-factor {t.replication_factor}"
        for t in missing
    )
    names = ", ".join(repr(t.name) for t in missing)
    return ConfigError(
        f"Kafka topic {names} does not exist at {servers} and"
        " OFFERLETTERS_KAFKA_CREATE_TOPICS is off: create it"
        f" ({how}), or set OFFERLETTERS_KAFKA_CREATE_TOPICS=true"
    )


async def _create_topic(admin: AIOKafkaAdminClient, topic: NewTopic) -> None:
    """Create one topic; another process creating it first is fine."""
    response = await admin.create_topics([topic])
    for _name, code, *_rest in response.topic_errors:
        if code not in (0, TopicAlreadyExistsError.errno):
            raise KafkaError(f"creating topic {topic.name} failed with error {code}")


class _Undecodable(Exception):
    """A record that is not a letter this process can read; no content inside."""

    def __init__(self, reason: str, *, kid: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.kid = kid


class LetterCodec:
    """Letters to Kafka values and headers and back, sealed when keys are set.

    Plain JSON (no `kid` header) is always read, so turning sealing on needs
    no flag day; a sealed record with no keys configured is a ConfigError,
    as every letter after it would be unreadable too.
    """

    def __init__(self, keyring: Keyring | None) -> None:
        self._keyring = keyring

    @classmethod
    def from_settings(cls, settings: Settings) -> LetterCodec:
        if settings.payload_keys is None:
            return cls(None)

        try:
            return cls(Keyring.parse(settings.payload_keys.get_secret_value()))
        except ValueError as exc:
            raise ConfigError(f"OFFERLETTERS_PAYLOAD_KEYS: {exc}") from None

    def encode(self, letter: Letter) -> tuple[bytes, list[tuple[str, bytes]]]:
        """The record value and headers that carry this letter."""
        plain = letter.model_dump_json().encode()
        if self._keyring is None:
            return plain, []

        sealed = self._keyring.seal(plain, letter_id=letter.letter_id)
        return sealed.value, [(KID_HEADER, sealed.kid.encode())]

    def decode(self, record: Any) -> Letter:
        """The letter in a record; _Undecodable or ConfigError when there is none."""
        kid = _header(record, KID_HEADER)
        plain: bytes = record.value or b""
        if kid is not None:
            plain = self._open(record, kid)

        try:
            return Letter.model_validate_json(plain)
        except ValidationError as exc:
            raise _Undecodable(
                f"not a letter ({exc.error_count()} problems)", kid=kid
            ) from None  # the error would quote the content

    def _open(self, record: Any, kid: str) -> bytes:
        if self._keyring is None:
            raise ConfigError(
                f"a letter on Kafka topic {record.topic} is sealed with payload key"
                f" {kid!r} but OFFERLETTERS_PAYLOAD_KEYS is not set in this"
                " process: give it the same keys as the process that publishes"
            )

        try:
            return self._keyring.open(
                Sealed(kid, record.value or b""), letter_id=_letter_id(record)
            )
        except SealError as exc:
            raise _Undecodable(exc.reason, kid=kid) from None


def _header(record: Any, name: str) -> str | None:
    for key, value in record.headers or ():
        if key == name:
            return bytes(value).decode("utf-8", errors="replace")
    return None


def _letter_id(record: Any) -> str:
    return record.key.decode("utf-8", errors="replace") if record.key else ""


class KafkaPublisher:
    """Publishes batches of letters to the topic, one Kafka transaction each."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._codec = LetterCodec.from_settings(settings)
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
            compression_type="zstd",
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
                        self._producer, self._settings.kafka_topic, self._codec
                    )
                    yield writer
                    await writer.flush()
            except KafkaError as exc:
                raise _unavailable(self._settings, exc) from exc


class _TransactionWriter:
    """Sends letters without awaiting each one; `flush` awaits them all."""

    def __init__(
        self, producer: AIOKafkaProducer, topic: str, codec: LetterCodec
    ) -> None:
        self._producer = producer
        self._topic = topic
        self._codec = codec
        self._pending: list[asyncio.Future[Any]] = []

    async def put(self, letter: Letter) -> None:
        value, headers = self._codec.encode(letter)
        pending = await self._producer.send(
            self._topic, key=letter.letter_id.encode(), value=value, headers=headers
        )
        self._pending.append(pending)
        if len(self._pending) >= SETTLE_EVERY:
            self._settle_acknowledged()

    async def flush(self) -> None:
        await asyncio.gather(*self._pending)
        self._pending.clear()

    def _settle_acknowledged(self) -> None:
        """Forget sends the broker has acknowledged; raise a failed one's error.

        Keeps a large batch from holding a finished future per letter until
        the end: only the sends still in the air stay.
        """
        unsettled = []
        for pending in self._pending:
            if not pending.done():
                unsettled.append(pending)
            else:
                pending.result()
        self._pending = unsettled


class KafkaDeadLetters:
    """Letters that failed for good, kept on the dead-letter topic for a retry."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._codec = LetterCodec.from_settings(settings)
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

        pending = []
        for letter, outcome in failed:
            value, headers = self._codec.encode(letter)
            # Replies often quote the address ("550 <ana@...>: no such user").
            reply = ("reply", mask_addresses(outcome.reply or "").encode())
            pending.append(
                await self._producer.send(
                    self._settings.dead_letter_topic,
                    key=letter.letter_id.encode(),
                    value=value,
                    headers=[*headers, reply],
                )
            )
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
                lambda record: _keep_wanted(record, wanted, found, self._codec),
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
    partitions = await _partitions_of(consumer, topic)
    consumer.assign(partitions)
    await consumer.seek_to_beginning(*partitions)
    ends = await consumer.end_offsets(partitions)
    while [tp for tp, end in ends.items() if await consumer.position(tp) < end]:
        fetched = await consumer.getmany(timeout_ms=FETCH_TIMEOUT_MS)
        for records in fetched.values():
            for record in records:
                take(record)


async def _partitions_of(
    consumer: AIOKafkaConsumer, topic: str
) -> list[TopicPartition]:
    """Every partition of a topic, for a consumer outside any group.

    A fresh consumer knows no topic's partitions until it tracks the topic;
    assigning partition 0, which every topic has, makes it fetch them.
    """
    consumer.assign([TopicPartition(topic, 0)])
    deadline = time.monotonic() + METADATA_WAIT_S
    while (ids := consumer.partitions_for_topic(topic)) is None:
        if time.monotonic() > deadline:
            raise KafkaError(f"no partitions known for topic {topic}")
        await asyncio.sleep(METADATA_POLL_S)

    return [TopicPartition(topic, p) for p in sorted(ids)]


def _keep_wanted(
    record: Any, wanted: set[str], found: dict[str, Letter], codec: LetterCodec
) -> None:
    letter_id = _letter_id(record)
    if letter_id not in wanted or _header(record, UNDECODABLE_HEADER) is not None:
        return

    try:
        found[letter_id] = codec.decode(record)
    except _Undecodable as exc:
        _log_undecodable(record, exc)


class KafkaSource:
    """One member of the workers' consumer group, handing letters to a handler.

    Each fetched group of records from one partition is handled as its own
    task, so a letter waiting on a retry never holds up the letters behind
    it; at most `capacity` letters are in hand at once. Offsets are committed
    as groups finish, never past a group that is still open.

    A record that is not a readable letter (sealed with an unknown key,
    altered, not JSON) is logged as `message_undecodable` with its key id and
    copied as it is to the dead-letter topic before its offset may be
    committed: skipping it would lose the letter, and waiting on it would stop
    its partition for good.
    """

    def __init__(self, settings: Settings, *, name: str = "consumer") -> None:
        self._settings = settings
        self._name = name
        self._codec = LetterCodec.from_settings(settings)
        self._set_aside_producer: AIOKafkaProducer | None = None
        self._set_aside_lock = asyncio.Lock()
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
            # Letters compress about 20 to 1, so aiokafka's default prefetch
            # (1 MiB per partition) holds tens of MiB of them in memory when a
            # large batch waits; this still fetches thousands at a time.
            max_partition_fetch_bytes=PREFETCH_PARTITION_BYTES,
            fetch_max_bytes=PREFETCH_TOTAL_BYTES,
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
            await self._stop_set_aside()

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
        self._in_hand += len(records)

        group = asyncio.create_task(self._deliver(records, handle))
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
        """Wait until no group of these partitions (or of any) is open.

        A group that failed stays open in the tracker, so its offsets are
        never committed; once no group task runs, there is nothing to wait for.
        """
        while self._tracker.unfinished(partitions) and self._groups:
            self._room.clear()
            await self._room.wait()

    async def _commit(self, consumer: AIOKafkaConsumer) -> None:
        """Commit finished offsets; shielded, as delivered letters depend on it."""
        offsets = self._tracker.take_committable()
        if offsets:
            await asyncio.shield(consumer.commit(offsets))
            log.debug("offsets_committed", consumer=self._name, partitions=len(offsets))

    async def _deliver(self, records: list[Any], handle: Handler) -> None:
        """Hand the readable letters on; set the unreadable records aside first."""
        # This task's own context: every log line of these letters says where
        # in Kafka they came from.
        structlog.contextvars.bind_contextvars(
            topic=records[0].topic,
            partition=records[0].partition,
            offsets=f"{records[0].offset}-{records[-1].offset}",
        )
        letters: list[Letter] = []
        unreadable: list[tuple[Any, _Undecodable]] = []
        for record in records:
            try:
                letters.append(self._codec.decode(record))
            except _Undecodable as exc:
                _log_undecodable(record, exc, kept_in=self._settings.dead_letter_topic)
                unreadable.append((record, exc))

        if unreadable:
            await self._set_aside(unreadable)
        if letters:
            await handle(letters)

    async def _set_aside(self, unreadable: list[tuple[Any, _Undecodable]]) -> None:
        """Copy records as they are to the dead-letter topic; return once stored."""
        producer = await self._set_aside_producer_started()
        pending = [
            await producer.send(
                self._settings.dead_letter_topic,
                key=record.key,
                value=record.value,
                headers=[
                    *(record.headers or ()),
                    (UNDECODABLE_HEADER, exc.reason.encode()),
                    (SOURCE_HEADER, _source(record).encode()),
                ],
            )
            for record, exc in unreadable
        ]
        await asyncio.gather(*pending)

    async def _set_aside_producer_started(self) -> AIOKafkaProducer:
        """Started on the first unreadable record; most runs never need it."""
        async with self._set_aside_lock:
            if self._set_aside_producer is None:
                producer = AIOKafkaProducer(
                    bootstrap_servers=self._settings.kafka_bootstrap_servers,
                    enable_idempotence=True,
                )
                try:
                    await producer.start()
                except KafkaError:
                    await producer.stop()
                    raise
                self._set_aside_producer = producer

            return self._set_aside_producer

    async def _stop_set_aside(self) -> None:
        producer, self._set_aside_producer = self._set_aside_producer, None
        if producer is not None:
            await producer.stop()


def _log_undecodable(record: Any, exc: _Undecodable, **fields: str) -> None:
    """Where the record is and why it cannot be read; never what it holds."""
    log.error(
        "message_undecodable",
        source=_source(record),
        letter_id=_letter_id(record),
        kid=exc.kid,
        reason=exc.reason,
        **fields,
    )


def _source(record: Any) -> str:
    return f"{record.topic}/{record.partition}/{record.offset}"


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
