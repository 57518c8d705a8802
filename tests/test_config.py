"""Settings fail fast: every unworkable combination is refused with its fix."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

import pydantic
import pytest
from pydantic import SecretStr

from offerletters.config import Settings
from offerletters.errors import ConfigError
from offerletters.queue.kafka import ensure_topic
from offerletters.sealing import new_key
from tests.conftest import REPO, MakeSettings
from tests.support.services import run_cli, settings_env

DOCS = REPO / "docs" / "operations.md"
SMTP_PASSWORD = "pw-do-not-print-7731"  # noqa: S105  # a fake, to prove it is never shown


def settings(**values: Any) -> Settings:
    """Settings from these values alone, ignoring the environment's .env file."""
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]  # pydantic-settings init kwarg


def problems(**values: Any) -> str:
    """Every message the settings are refused with, one per line."""
    with pytest.raises(pydantic.ValidationError) as refused:
        settings(**values)
    return "\n".join(error["msg"] for error in refused.value.errors())


SMTP = {"smtp_host": "smtp.example.com"}


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (
            {**SMTP, "smtp_port": 465, "smtp_security": "starttls"},
            "port 465 expects implicit TLS: set OFFERLETTERS_SMTP_SECURITY=tls,"
            " or use port 587 for starttls",
        ),
        (
            {**SMTP, "smtp_port": 587, "smtp_security": "tls"},
            "port 587 expects STARTTLS: set OFFERLETTERS_SMTP_SECURITY=starttls,"
            " or use port 465 for tls",
        ),
        (
            {"sender": "Talent Team"},
            "OFFERLETTERS_SENDER='Talent Team' is not an email address",
        ),
        (
            {"reply_to": "nobody"},
            "OFFERLETTERS_REPLY_TO='nobody' is not an email address",
        ),
        (
            {**SMTP, "smtp_username": "u", "smtp_password": SMTP_PASSWORD},
            "SMTP login would cross an unencrypted connection"
            " (OFFERLETTERS_SMTP_SECURITY=none): set"
            " OFFERLETTERS_SMTP_SECURITY=starttls",
        ),
        (
            {**SMTP, "smtp_username": "u", "smtp_oauth_token": "tok"},
            "OFFERLETTERS_SMTP_ALLOW_PLAINTEXT_AUTH=true",
        ),
        (
            {
                **SMTP,
                "smtp_security": "starttls",
                "smtp_username": "u",
                "smtp_oauth_token": "tok",
                "smtp_oauth_token_command": "get-token",
            },
            "OFFERLETTERS_SMTP_OAUTH_TOKEN and OFFERLETTERS_SMTP_OAUTH_TOKEN_COMMAND"
            " are both set; keep one",
        ),
        (
            {**SMTP, "smtp_security": "tls", "smtp_password": SMTP_PASSWORD},
            "OFFERLETTERS_SMTP_PASSWORD is set without OFFERLETTERS_SMTP_USERNAME",
        ),
        (
            {
                **SMTP,
                "smtp_security": "tls",
                "smtp_username": "u",
                "smtp_password": SMTP_PASSWORD,
                "smtp_oauth_token": "tok",
            },
            "both OFFERLETTERS_SMTP_PASSWORD and an SMTP OAuth token are set",
        ),
        (
            {**SMTP, "smtp_security": "tls", "smtp_oauth_token_command": "t"},
            "an SMTP OAuth token is set without OFFERLETTERS_SMTP_USERNAME",
        ),
        (
            {"kafka_topic": "offers", "kafka_dead_letter_topic": "offers"},
            "OFFERLETTERS_KAFKA_DEAD_LETTER_TOPIC is the letters topic 'offers'",
        ),
        ({"locale": "xx_YY"}, "'xx_YY' is not a locale Babel knows"),
        ({"locale": "en-US"}, "write it like en_US"),
        ({"currency": "DOLLARS"}, "String should have at most 3 characters"),
        ({"currency": "XYZ"}, "'XYZ' is not an ISO 4217 currency code"),
        ({"log_format": "pretty"}, "'pretty' is not a log format; use auto"),
        ({"log_level": "LOUD"}, "'LOUD' is not a log level"),
        ({"payload_keys": "no-equals-sign"}, "entry 1 has no 'KID='"),
        ({"payload_keys": "k1=not*base64"}, "key 'k1' is not base64url"),
        ({"payload_keys": "k1=c2hvcnQ"}, "key 'k1' is 5 bytes, not 32"),
        (
            {"payload_keys": f"k1={new_key()},k1={new_key()}"},
            "key id 'k1' appears twice",
        ),
        ({"payload_keys": f"bad id={new_key()}"}, "key id 'bad id' is not usable"),
    ],
)
def test_each_unworkable_setting_is_refused_with_its_fix(
    values: dict[str, Any], message: str
) -> None:
    """Each wrong value or combination gives a message that names the fix."""
    assert message in problems(**values)


@pytest.mark.parametrize(
    "values",
    [
        {**SMTP, "smtp_port": 465, "smtp_security": "tls"},
        {**SMTP, "smtp_port": 587, "smtp_security": "starttls"},
        {**SMTP, "smtp_port": 2525, "smtp_security": "tls"},
        {
            **SMTP,
            "smtp_security": "starttls",
            "smtp_username": "u",
            "smtp_password": SMTP_PASSWORD,
        },
        {
            **SMTP,
            "smtp_username": "u",
            "smtp_password": SMTP_PASSWORD,
            "smtp_allow_plaintext_auth": True,
        },
        # Without a host nothing is sent, so no credential crosses a wire.
        {"smtp_username": "u", "smtp_password": SMTP_PASSWORD},
        {**SMTP, "smtp_security": "tls", "smtp_username": "u", "smtp_oauth_token": "t"},
        {"locale": "pt_BR", "currency": "eur", "log_format": "JSON"},
        {"payload_keys": f"2027-01={new_key()}, 2026-07={new_key()}="},
    ],
)
def test_workable_settings_are_accepted(values: dict[str, Any]) -> None:
    """Usual, correct combinations pass; loose spellings are normalised."""
    accepted = settings(**values)

    assert accepted.currency.isupper()
    assert accepted.log_format in ("auto", "json", "console")


def test_secrets_never_appear_in_refusals() -> None:
    """A refused password or payload key is not repeated in the error text."""
    bad_key = "k1=" + "A" * 40  # valid base64, wrong length
    with pytest.raises(pydantic.ValidationError) as refused:
        settings(
            smtp_host="smtp.example.com",
            smtp_password=SMTP_PASSWORD,
            payload_keys=bad_key,
        )

    text = str(refused.value)
    assert SMTP_PASSWORD not in text
    assert "A" * 40 not in text


def test_the_cli_exits_2_naming_the_fix(
    make_settings: MakeSettings, tmp_path: Path
) -> None:
    """The CLI given port 465 with STARTTLS prints the fix and exits 2."""
    env = settings_env(
        make_settings(),
        OFFERLETTERS_SMTP_HOST="smtp.example.com",
        OFFERLETTERS_SMTP_PORT="465",
        OFFERLETTERS_SMTP_SECURITY="starttls",
    )

    result = run_cli(["send", "roster.xlsx"], env, tmp_path)

    assert result.returncode == 2, result.stderr
    assert "port 465 expects implicit TLS: set OFFERLETTERS_SMTP_SECURITY=tls" in (
        result.stderr
    )
    assert "Traceback" not in result.stderr


@pytest.mark.kafka
async def test_a_missing_topic_is_named_when_creating_is_off(
    kafka_settings: Settings,
) -> None:
    """With topic creation off, start-up fails naming the topic and the setting."""
    settings = kafka_settings.model_copy(update={"kafka_create_topics": False})

    with pytest.raises(ConfigError) as refused:
        await ensure_topic(settings)
    await ensure_topic(kafka_settings)
    await exists_soon(settings)  # both exist now: no complaint

    message = str(refused.value)
    assert repr(settings.kafka_topic) in message
    assert repr(settings.dead_letter_topic) in message
    assert "OFFERLETTERS_KAFKA_CREATE_TOPICS is off" in message
    assert "set OFFERLETTERS_KAFKA_CREATE_TOPICS=true" in message


async def exists_soon(settings: Settings, attempts: int = 50) -> None:
    """ensure_topic passes once the broker lists the topics it just created."""
    for _ in range(attempts - 1):
        try:
            await ensure_topic(settings)
        except ConfigError:
            await asyncio.sleep(0.2)
        else:
            return
    await ensure_topic(settings)


def documented_defaults() -> dict[str, str]:
    """The settings table of docs/operations.md: variable name -> default cell."""
    row = re.compile(r"^\| `OFFERLETTERS_([A-Z0-9_]+)` \| ([^|]*) \|", re.MULTILINE)
    return {
        name.lower(): default.strip()
        for name, default in row.findall(DOCS.read_text(encoding="utf-8"))
    }


def shown_default(value: object) -> str:
    """How the operations guide writes a default value."""
    if value is None:
        return "unset"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, SecretStr):
        return "unset"
    return f"`{getattr(value, 'value', value)}`"


def test_the_operations_guide_lists_every_setting_with_its_default() -> None:
    """docs/operations.md has one row per Settings field, with the same default."""
    documented = documented_defaults()
    fields = Settings.model_fields

    assert sorted(documented) == sorted(fields)
    for name, field in fields.items():
        assert documented[name].startswith(shown_default(field.default)), name
