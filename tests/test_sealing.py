"""Sealed letters: AES-256-GCM keyrings, key rotation, and the bytes Kafka holds."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from structlog.testing import capture_logs

from offerletters.config import Settings
from offerletters.errors import ConfigError
from offerletters.ledger import LetterOutcome, LetterState
from offerletters.letters import Letter, letter_id_for, message_id_for
from offerletters.queue.kafka import (
    KID_HEADER,
    SOURCE_HEADER,
    UNDECODABLE_HEADER,
    KafkaDeadLetters,
    KafkaPublisher,
    LetterCodec,
    ensure_topic,
)
from offerletters.sealing import (
    KEY_BYTES,
    Keyring,
    SealBroken,
    Sealed,
    UnknownKeyId,
    new_key,
)
from tests.test_kafka_queue import collect

NAME = "Zoë Quintavalle-Ibáñez"
SALARY = "$187,350"
KEY_2026 = new_key()
KEY_2027 = new_key()
KEY_ROGUE = new_key()


def private_letter(row: int) -> Letter:
    """A letter whose name, address and salary must never show on the wire."""
    letter_id = letter_id_for("batch-sealing", row)
    return Letter(
        letter_id=letter_id,
        batch_id="batch-sealing",
        row=row,
        recipient=f"zoe.q{row}@example.com",
        recipient_name=NAME,
        subject=f"Your offer, {NAME}",
        text=f"Dear Zoë,\n\n  Base salary:    {SALARY} per year\n",
        html=f"<p>Base salary: {SALARY} per year</p>",
        message_id=message_id_for(letter_id, "acme.example"),
    )


def assert_private(value: bytes) -> None:
    for secret in (NAME, SALARY, "187350", "zoe.q", "Base salary"):
        assert secret.encode() not in value, secret


# --- the keyring ---------------------------------------------------------------


def test_a_sealed_letter_opens_to_the_same_bytes() -> None:
    """Seal then open gives back the plain bytes; the sealed ones reveal nothing."""
    keyring = Keyring.parse(f"k1={KEY_2026}")
    plain = private_letter(1).model_dump_json().encode()

    sealed = keyring.seal(plain, letter_id="L1")

    assert sealed.kid == "k1"
    assert_private(sealed.value)
    assert keyring.open(sealed, letter_id="L1") == plain
    assert keyring.seal(plain, letter_id="L1").value != sealed.value  # fresh nonce


@pytest.mark.parametrize(
    "spoil",
    [
        pytest.param(lambda v: v[:-1] + bytes([v[-1] ^ 1]), id="flipped-tag-bit"),
        pytest.param(lambda v: v[:20] + bytes([v[20] ^ 1]) + v[21:], id="flipped-body"),
        pytest.param(lambda v: v[:5] + bytes([v[5] ^ 1]) + v[6:], id="flipped-nonce"),
        pytest.param(lambda v: v[:-5], id="cut-short"),
        pytest.param(lambda v: b"\x02" + v[1:], id="unknown-envelope"),
        pytest.param(lambda v: b"", id="empty"),
    ],
)
def test_altered_bytes_do_not_open(spoil: Any) -> None:
    """Any change to a sealed value is detected instead of yielding wrong bytes."""
    keyring = Keyring.parse(f"k1={KEY_2026}")
    sealed = keyring.seal(b'{"salary": 187350}', letter_id="L1")

    with pytest.raises(SealBroken) as broken:
        keyring.open(Sealed("k1", spoil(sealed.value)), letter_id="L1")

    assert broken.value.kid == "k1"


def test_a_sealed_value_is_bound_to_its_letter_and_key_id() -> None:
    """Moved to another letter, or relabelled with another key id, it fails to open."""
    keyring = Keyring.parse(f"k1={KEY_2026},k2={KEY_2026}")
    sealed = keyring.seal(b"offer", letter_id="L1")

    with pytest.raises(SealBroken):
        keyring.open(sealed, letter_id="L2")
    with pytest.raises(SealBroken):
        keyring.open(replace(sealed, kid="k2"), letter_id="L1")


def test_an_unknown_key_id_is_named_and_the_keys_are_not() -> None:
    """Opening with a key id the ring lacks names that id, never key material."""
    sealed = Keyring.parse(f"rogue={KEY_ROGUE}").seal(b"offer", letter_id="L1")
    keyring = Keyring.parse(f"k1={KEY_2026}")

    with pytest.raises(UnknownKeyId) as unknown:
        keyring.open(sealed, letter_id="L1")

    assert unknown.value.kid == "rogue"
    assert "'rogue'" in str(unknown.value)
    assert KEY_2026 not in str(unknown.value)
    assert KEY_ROGUE not in str(unknown.value)


def test_rotation_seals_with_the_new_key_and_still_opens_the_old() -> None:
    """With the new key first and the old one kept, old and new letters both open."""
    before = Keyring.parse(f"2026={KEY_2026}")
    during = Keyring.parse(f"2027={KEY_2027},2026={KEY_2026}")
    after = Keyring.parse(f"2027={KEY_2027}")
    old = before.seal(b"old letter", letter_id="L1")

    new = during.seal(b"new letter", letter_id="L2")

    assert new.kid == "2027"
    assert during.open(old, letter_id="L1") == b"old letter"
    assert after.open(new, letter_id="L2") == b"new letter"
    with pytest.raises(UnknownKeyId):
        after.open(old, letter_id="L1")


def test_keys_are_read_with_or_without_padding() -> None:
    """A key written with '=' padding or without it is the same 32 bytes."""
    raw = base64.urlsafe_b64decode(KEY_2026 + "=")

    keyring = Keyring.parse(f" a = {KEY_2026}= , b={KEY_2026}")

    assert keyring.kids == ["a", "b"]
    assert len(raw) == KEY_BYTES
    sealed = keyring.seal(b"x", letter_id="L")
    assert Keyring.parse(f"a={KEY_2026}").open(sealed, letter_id="L") == b"x"


# --- the codec, on records shaped like aiokafka's ---------------------------------


@dataclass
class Record:
    """The fields of an aiokafka ConsumerRecord that the codec reads."""

    key: bytes | None
    value: bytes | None
    headers: Sequence[tuple[str, bytes]] = field(default_factory=list)
    topic: str = "offer_topic"
    partition: int = 0
    offset: int = 0


def record_of(codec: LetterCodec, letter: Letter) -> Record:
    value, headers = codec.encode(letter)
    return Record(letter.letter_id.encode(), value, headers)


def test_plain_letters_stay_readable_once_keys_are_set() -> None:
    """Turning sealing on is no flag day: letters queued before it still read."""
    plain = record_of(LetterCodec(None), private_letter(1))
    keyed = LetterCodec(Keyring.parse(f"k1={KEY_2026}"))

    assert plain.headers == []
    assert keyed.decode(plain) == private_letter(1)
    sealed = record_of(keyed, private_letter(2))
    assert (KID_HEADER, b"k1") in sealed.headers
    assert keyed.decode(sealed) == private_letter(2)


def test_a_sealed_letter_without_keys_fails_loudly() -> None:
    """A process with no keys refuses a sealed letter with a ConfigError."""
    sealed = record_of(LetterCodec(Keyring.parse(f"k1={KEY_2026}")), private_letter(1))

    with pytest.raises(ConfigError, match="OFFERLETTERS_PAYLOAD_KEYS is not set"):
        LetterCodec(None).decode(sealed)


# --- on a real broker -------------------------------------------------------------


def sealed_settings(settings: Settings, keys: str | None, **more: Any) -> Settings:
    """The same test topic and group, with these payload keys."""
    return Settings(  # type: ignore[call-arg]  # pydantic-settings init kwarg
        _env_file=None,
        **{
            **settings.model_dump(exclude={"payload_keys"}),
            "payload_keys": keys,
            **more,
        },
    )


async def publish(settings: Settings, rows: range) -> None:
    async with KafkaPublisher(settings) as publisher, publisher.batch() as writer:
        for row in rows:
            await writer.put(private_letter(row))


async def raw_records(settings: Settings, topic: str) -> list[Any]:
    """Every committed record now in a topic, as bytes and headers."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap_servers,
        isolation_level="read_committed",
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        consumer.assign([TopicPartition(topic, 0)])  # so its metadata is fetched
        for _ in range(600):
            if ids := consumer.partitions_for_topic(topic):
                break
            await asyncio.sleep(0.05)
        partitions = [TopicPartition(topic, p) for p in ids or ()]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        records: list[Any] = []
        while any([await consumer.position(tp) < end for tp, end in ends.items()]):
            fetched = await consumer.getmany(timeout_ms=500)
            for batch in fetched.values():
                records.extend(batch)
        return records
    finally:
        await consumer.stop()


@pytest.mark.kafka
async def test_letters_on_the_topic_are_sealed_and_workers_read_them(
    kafka_settings: Settings,
) -> None:
    """With keys set the topic holds no name or salary, and a consumer reads all."""
    keyed = sealed_settings(kafka_settings, f"2027={KEY_2027},2026={KEY_2026}")
    await publish(sealed_settings(kafka_settings, None), range(1, 3))  # before
    await publish(sealed_settings(kafka_settings, f"2026={KEY_2026}"), range(3, 5))
    await publish(keyed, range(5, 8))

    on_the_wire = await raw_records(keyed, keyed.kafka_topic)
    letters = await collect(keyed, expected=7)

    kids = sorted(dict(r.headers).get(KID_HEADER, b"") for r in on_the_wire)
    assert kids == [b"", b"", b"2026", b"2026", b"2027", b"2027", b"2027"]
    for record in on_the_wire:
        if dict(record.headers).get(KID_HEADER):
            assert_private(record.value)
    assert sorted(letters, key=lambda lt: lt.row) == [
        private_letter(row) for row in range(1, 8)
    ]


@pytest.mark.kafka
async def test_a_letter_sealed_with_an_unknown_key_is_set_aside_not_lost(
    kafka_settings: Settings,
) -> None:
    """It is logged by key id, copied as it is to the dead letters, and passed."""
    keyed = sealed_settings(kafka_settings, f"k1={KEY_2026}", kafka_partitions=1)
    await publish(sealed_settings(keyed, f"rogue={KEY_ROGUE}"), range(1, 2))
    await publish(keyed, range(2, 4))
    rogue = (await raw_records(keyed, keyed.kafka_topic))[0]

    with capture_logs() as logged:
        first = await collect(keyed, expected=2)
    await publish(keyed, range(4, 5))
    second = await collect(keyed, expected=1)
    dead = await raw_records(keyed, keyed.dead_letter_topic)

    assert [letter.row for letter in first] == [2, 3]
    assert [letter.row for letter in second] == [4]  # the rogue's offset moved on
    assert len(dead) == 1
    headers = dict(dead[0].headers)
    assert dead[0].value == rogue.value
    assert dead[0].key == rogue.key
    assert headers[KID_HEADER] == b"rogue"
    assert headers[SOURCE_HEADER] == f"{keyed.kafka_topic}/0/0".encode()
    assert b"does not hold" in headers[UNDECODABLE_HEADER]
    undecodable = [e for e in logged if e["event"] == "message_undecodable"]
    assert len(undecodable) == 1
    assert undecodable[0]["kid"] == "rogue"
    assert undecodable[0]["kept_in"] == keyed.dead_letter_topic
    assert NAME not in repr(logged)


@pytest.mark.kafka
async def test_a_consumer_without_keys_stops_and_leaves_sealed_letters_queued(
    kafka_settings: Settings,
) -> None:
    """No keys: consuming ends in a ConfigError and a keyed consumer still gets all."""
    keyed = sealed_settings(kafka_settings, f"k1={KEY_2026}")
    await publish(keyed, range(1, 4))

    with pytest.raises(ConfigError, match="OFFERLETTERS_PAYLOAD_KEYS is not set"):
        await collect(sealed_settings(keyed, None), expected=3)
    letters = await collect(keyed, expected=3)

    assert sorted(letter.row for letter in letters) == [1, 2, 3]


@pytest.mark.kafka
async def test_dead_letters_are_sealed_and_found_again(
    kafka_settings: Settings,
) -> None:
    """Letters kept for a retry are sealed on the dead-letter topic and still found."""
    keyed = sealed_settings(kafka_settings, f"k1={KEY_2026}")
    await ensure_topic(keyed)
    failed = [
        (
            private_letter(row),
            LetterOutcome.of(
                private_letter(row), LetterState.FAILED, attempts=1, reply="550 no"
            ),
        )
        for row in (1, 2)
    ]

    async with KafkaDeadLetters(keyed) as dead_letters:
        await dead_letters.keep(failed)
        found = await dead_letters.find([private_letter(2).letter_id])
    stored = await raw_records(keyed, keyed.dead_letter_topic)

    assert found == [private_letter(2)]
    assert len(stored) == 2
    for record in stored:
        assert dict(record.headers)[KID_HEADER] == b"k1"
        assert_private(record.value)
