"""Settings: every knob of offerletters, read from OFFERLETTERS_* or a .env file.

Built once in an entrypoint and passed down; nothing reads the environment at
import time.
"""

from __future__ import annotations

from email.headerregistry import Address
from email.utils import parseaddr
from enum import StrEnum
from pathlib import Path
from typing import Self

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


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


class Settings(BaseSettings):
    """Everything offerletters can be told, validated at start-up."""

    model_config = SettingsConfigDict(
        env_prefix="OFFERLETTERS_",
        env_file=".env",
        extra="ignore",
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
