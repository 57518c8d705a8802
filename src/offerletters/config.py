"""Settings: every knob of offerletters, read from OFFERLETTERS_* or a .env file.

Built once in an entrypoint and passed down; nothing reads the environment at
import time.
"""

from __future__ import annotations

import logging
from email.headerregistry import Address
from email.utils import parseaddr
from enum import StrEnum
from pathlib import Path
from typing import Literal, Self

from babel import Locale, UnknownLocaleError
from babel.numbers import is_currency
from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_core import PydanticCustomError
from pydantic_settings import BaseSettings, SettingsConfigDict

from offerletters.sealing import Keyring


class SmtpSecurity(StrEnum):
    """How the SMTP connection is protected."""

    NONE = "none"
    STARTTLS = "starttls"
    TLS = "tls"


# The port each kind of connection uses unless one is given.
DEFAULT_SMTP_PORTS = {
    SmtpSecurity.NONE: 25,
    SmtpSecurity.STARTTLS: 587,
    SmtpSecurity.TLS: 465,
}

# Ports whose protocol is fixed by convention: 465 speaks TLS from the first
# byte (RFC 8314), 587 starts in plain text and upgrades with STARTTLS.
IMPLICIT_TLS_PORT = 465
SUBMISSION_PORT = 587

LOG_FORMATS = ("auto", "json", "console")


class Settings(BaseSettings):
    """Everything offerletters can be told, validated at start-up."""

    model_config = SettingsConfigDict(
        env_prefix="OFFERLETTERS_",
        env_file=".env",
        extra="ignore",
        # A rejected value may be a password or a key: never echo inputs.
        hide_input_in_errors=True,
    )

    # Kafka. No bootstrap servers means embedded mode: an in-process queue.
    kafka_bootstrap_servers: str | None = None
    kafka_topic: str = "offer_topic"
    kafka_partitions: int = Field(default=12, ge=1)
    kafka_replication_factor: int = Field(default=1, ge=1)
    kafka_consumer_group: str = "offerletters-workers"
    # Letters that failed for good; unset means the topic name plus ".dead".
    kafka_dead_letter_topic: str | None = None
    # Off: the topics must exist already (for brokers where apps may not
    # create topics); start-up fails, naming the missing topic.
    kafka_create_topics: bool = True
    # Encrypts letters in Kafka (salaries and addresses sit there): key id
    # "=" base64 key, comma-separated; the first encrypts, all decrypt, so
    # keys can be rotated. Unset: letters travel as plain JSON.
    payload_keys: SecretStr | None = None

    # The ledger. SQLite suits one host; use PostgreSQL when workers run on
    # several machines (postgresql+asyncpg://user:password@host/db).
    database_url: str = "sqlite+aiosqlite:///offerletters.db"

    # SMTP. No host means letters are written as .eml files to the outbox.
    smtp_host: str | None = None
    smtp_port: int | None = Field(default=None, ge=1, le=65535)
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_security: SmtpSecurity = SmtpSecurity.NONE
    smtp_timeout_s: float = Field(default=30.0, gt=0)
    smtp_connections: int = Field(default=8, ge=1, le=256)
    smtp_max_attempts: int = Field(default=5, ge=1)
    smtp_validate_certs: bool = True
    # Sending a password over an unencrypted line is refused unless allowed.
    smtp_allow_plaintext_auth: bool = False
    # XOAUTH2 for providers that require it: a token, or a command printing one.
    smtp_oauth_token: SecretStr | None = None
    smtp_oauth_token_command: str | None = None
    # Provider limits, per worker process; unset means no limit.
    smtp_rate_per_second: float | None = Field(default=None, gt=0)
    smtp_rate_per_minute: float | None = Field(default=None, gt=0)
    outbox_dir: Path = Path("outbox")

    # Letters.
    sender: str = "Offer Letters <offers@example.com>"
    reply_to: str | None = None
    templates_dir: Path = Path("templates")
    currency: str = Field(default="USD", min_length=3, max_length=3)
    locale: str = "en_US"

    # Rosters.
    roster_path: Path | None = None
    max_upload_bytes: int = Field(default=50 * 1024 * 1024, ge=1)
    max_rows: int = Field(default=200_000, ge=1)
    # How dates written as text with slashes or dots read: 03/04/2027 is
    # 3 April with "dmy", 4 March with "mdy". ISO dates and date cells are
    # never ambiguous.
    date_order: Literal["dmy", "mdy"] = "dmy"
    # A spreadsheet is a zip: refuse one that unpacks to more than this, or
    # that unpacks this many times larger than it is (a decompression bomb).
    max_unpacked_bytes: int = Field(default=1024 * 1024 * 1024, ge=1)
    max_unpack_ratio: float = Field(default=200.0, gt=1)

    # The API. Keys are compared in constant time; dev mode turns them off.
    api_keys: SecretStr | None = None
    dev_mode: bool = False

    # Workers: how many letters one worker process delivers at once.
    worker_consumers: int = Field(default=2, ge=1, le=64)
    worker_concurrency: int = Field(default=64, ge=1)
    shutdown_grace_s: float = Field(default=30.0, gt=0)
    # Where a worker serves /metrics and /healthz (9100 is usual); unset: off.
    worker_metrics_port: int | None = Field(default=None, ge=1, le=65535)

    log_level: str = "INFO"
    # "auto": JSON lines unless stderr is a terminal; or "json", "console".
    log_format: str = "auto"

    @field_validator("currency", mode="before")
    @classmethod
    def _upper_currency(cls, value: object) -> object:
        return value.strip().upper() if isinstance(value, str) else value

    @field_validator("currency")
    @classmethod
    def _check_currency(cls, value: str) -> str:
        if not is_currency(value):
            raise _problem(
                f"{value!r} is not an ISO 4217 currency code Babel knows;"
                " write it like USD, EUR or GBP"
            )
        return value

    @field_validator("locale")
    @classmethod
    def _check_locale(cls, value: str) -> str:
        try:
            Locale.parse(value)
        except (UnknownLocaleError, ValueError):
            raise _problem(
                f"{value!r} is not a locale Babel knows; write it like en_US,"
                " de_DE or pt_BR (underscore, not hyphen)"
            ) from None
        return value

    @field_validator("log_level")
    @classmethod
    def _check_log_level(cls, value: str) -> str:
        level = value.strip().upper()
        if level not in logging.getLevelNamesMapping():
            raise _problem(
                f"{value!r} is not a log level; use DEBUG, INFO, WARNING or ERROR"
            )
        return level

    @field_validator("log_format")
    @classmethod
    def _check_log_format(cls, value: str) -> str:
        fmt = value.strip().lower()
        if fmt not in LOG_FORMATS:
            raise _problem(
                f"{value!r} is not a log format; use auto (JSON unless on a"
                " terminal), json or console"
            )
        return fmt

    @field_validator("payload_keys")
    @classmethod
    def _check_payload_keys(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            try:
                Keyring.parse(value.get_secret_value())
            except ValueError as exc:
                raise _problem(str(exc)) from None  # the cause may quote a key
        return value

    @model_validator(mode="after")
    def _check_smtp(self) -> Self:
        """Refuse SMTP settings that cannot work together, naming the fix."""
        problems = [*self._port_problems(), *self._login_problems()]
        if problems:
            raise _problem("; ".join(problems))

        return self

    @model_validator(mode="after")
    def _check_topics(self) -> Self:
        # Dead letters written to the letters topic would be read again, and
        # an unreadable record set aside there would circle for ever.
        if self.dead_letter_topic == self.kafka_topic:
            raise _problem(
                "OFFERLETTERS_KAFKA_DEAD_LETTER_TOPIC is the letters topic"
                f" {self.kafka_topic!r}; leave it unset (the letters topic plus"
                " '.dead') or name another topic"
            )
        return self

    def _port_problems(self) -> list[str]:
        port, security = self.smtp_port, self.smtp_security
        if port == IMPLICIT_TLS_PORT and security is SmtpSecurity.STARTTLS:
            return [
                f"port {port} expects implicit TLS: set"
                " OFFERLETTERS_SMTP_SECURITY=tls, or use port 587 for starttls"
            ]
        if port == SUBMISSION_PORT and security is SmtpSecurity.TLS:
            return [
                f"port {port} expects STARTTLS: set"
                " OFFERLETTERS_SMTP_SECURITY=starttls, or use port 465 for tls"
            ]
        return []

    def _login_problems(self) -> list[str]:
        problems = []
        if self.smtp_oauth_token and self.smtp_oauth_token_command:
            problems.append(
                "OFFERLETTERS_SMTP_OAUTH_TOKEN and"
                " OFFERLETTERS_SMTP_OAUTH_TOKEN_COMMAND are both set; keep one"
                " (the command, for tokens that expire)"
            )
        oauth = self.smtp_oauth_token or self.smtp_oauth_token_command
        if oauth and self.smtp_password:
            problems.append(
                "both OFFERLETTERS_SMTP_PASSWORD and an SMTP OAuth token are set;"
                " keep the one your provider expects"
            )
        if self.smtp_password and not self.smtp_username:
            problems.append(
                "OFFERLETTERS_SMTP_PASSWORD is set without"
                " OFFERLETTERS_SMTP_USERNAME; set the username to log in as"
            )
        elif oauth and not self.smtp_username:
            problems.append(
                "an SMTP OAuth token is set without OFFERLETTERS_SMTP_USERNAME;"
                " set it to the mailbox the token belongs to"
            )

        # Without a host nothing is sent, so stored credentials go nowhere.
        logs_in = self.smtp_password or oauth
        plaintext = self.smtp_security is SmtpSecurity.NONE
        if (
            self.smtp_host
            and logs_in
            and plaintext
            and not self.smtp_allow_plaintext_auth
        ):
            problems.append(
                "SMTP login would cross an unencrypted connection"
                " (OFFERLETTERS_SMTP_SECURITY=none): set"
                " OFFERLETTERS_SMTP_SECURITY=starttls (port 587) or tls (port 465),"
                " or OFFERLETTERS_SMTP_ALLOW_PLAINTEXT_AUTH=true for a trusted"
                " local relay"
            )
        return problems

    @model_validator(mode="after")
    def _check_sender(self) -> Self:
        for name in ("sender", "reply_to"):
            value = getattr(self, name)
            if value is not None and "@" not in parseaddr(value)[1]:
                raise ValueError(
                    f"OFFERLETTERS_{name.upper()}={value!r} is not an email address;"
                    " write it as 'Name <address@example.com>' or 'address@example.com'"
                )

        return self

    @property
    def embedded(self) -> bool:
        """True when no Kafka is configured and the queue lives in-process."""
        return not self.kafka_bootstrap_servers

    @property
    def dead_letter_topic(self) -> str:
        """Where letters that failed for good are kept for a later retry."""
        return self.kafka_dead_letter_topic or f"{self.kafka_topic}.dead"

    @property
    def smtp_port_or_default(self) -> int:
        """The SMTP port to dial: the configured one or the security's usual one."""
        return self.smtp_port or DEFAULT_SMTP_PORTS[self.smtp_security]

    @property
    def sender_address(self) -> Address:
        """The From header as a structured address (name and mailbox)."""
        name, address = parseaddr(self.sender)
        return Address(display_name=name, addr_spec=address)


def _problem(message: str) -> PydanticCustomError:
    """A validation error that prints as exactly this message, no prefix."""
    return PydanticCustomError("settings", message)
