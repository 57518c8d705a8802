"""Logging: structlog set up once per entrypoint, and helpers that keep logs private.

Events have stable snake_case names and key/value fields. Output is JSON lines
when stderr is not a terminal (for log shippers) and readable columns when it
is. A last processor masks email addresses and drops secrets and letter
contents, so a slip elsewhere cannot leak them. Nothing here runs at import.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Mapping
from typing import Any, TextIO

import structlog
from pydantic import BaseModel, SecretBytes, SecretStr
from structlog.types import EventDict, Processor, WrappedLogger

__all__ = [
    "OUR_LOGGER",
    "REDACTED",
    "configure",
    "mask_addresses",
    "mask_email",
    "renderer_for",
    "scrub_private",
]

# What stands in for a value that must not be logged.
REDACTED = "[redacted]"
# The parent of every logger in this package (`structlog.get_logger(__name__)`).
OUR_LOGGER = "offerletters"

# Field names whose values are secrets or private content, matched as
# substrings of the lower-cased name ("smtp_password", "x_api_key"...).
_SECRET_NAMES = (
    "password",
    "passwd",
    "secret",
    "token",
    "api_key",
    "apikey",
    "authorization",
    "cookie",
    "credential",
    "payload_key",
    "private_key",
)
# Field names that would carry a letter or a salary; matched exactly.
_PRIVATE_NAMES = frozenset(
    {
        "amount",
        "body",
        "html",
        "letter_html",
        "letter_text",
        "offer_amount",
        "payload",
        "salary",
        "text",
    }
)
# Loose on purpose: whatever has the shape of an address is masked.
_EMAIL = re.compile(r"[^\s@<>()\[\]{},;:\"'=/\\]+@[\w-]+(?:\.[\w-]+)+")
# user:password@ inside a URL, such as a database URL.
_URL_CREDENTIALS = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://[^:/@\s]*):[^@\s]*@")
# Timestamps, levels and names that the processors add are never private.
_OURS = frozenset({"event", "level", "timestamp", "logger", "logger_name"})


def configure(level: str = "INFO", fmt: str = "auto") -> None:
    """Send our events and the stdlib loggers of our libraries to stderr.

    `fmt` is "json", "console", or "auto": JSON unless stderr is a terminal.
    Calling it again replaces the earlier set-up.
    """
    numeric_level = logging.getLevelNamesMapping().get(level.upper(), logging.INFO)
    renderer = renderer_for(fmt, tty=sys.stderr.isatty())
    stamped: list[Processor] = [
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]

    # Our events pass through the stdlib to one handler, so lines written
    # from several threads (aiosqlite has its own) never run into each other.
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            *stamped,
            structlog.processors.format_exc_info,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric_level),
        logger_factory=structlog.stdlib.LoggerFactory(),
        cache_logger_on_first_use=True,
    )

    handler = _OurHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[structlog.stdlib.add_logger_name, *stamped],
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                # Tracebacks become text first, so they are scrubbed too.
                structlog.processors.format_exc_info,
                scrub_private,
                renderer,
            ],
        )
    )
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _OurHandler)]:
        root.removeHandler(old)
    root.addHandler(handler)

    # aiokafka, uvicorn and aiosqlite chatter stays at WARNING unless DEBUG
    # was asked for; our own loggers follow the level given.
    debug = numeric_level <= logging.DEBUG
    root.setLevel(numeric_level if debug else max(numeric_level, logging.WARNING))
    logging.getLogger(OUR_LOGGER).setLevel(numeric_level)


def renderer_for(fmt: str, *, tty: bool) -> Processor:
    """JSON lines for machines, columns for people; "auto" asks the terminal."""
    if fmt == "console" or (fmt == "auto" and tty):
        return structlog.dev.ConsoleRenderer(colors=tty)
    if fmt in ("json", "auto"):
        return structlog.processors.JSONRenderer()

    raise ValueError(f"log format {fmt!r} is not auto, json or console")


def scrub_private(
    logger: WrappedLogger, method_name: str, event_dict: EventDict
) -> EventDict:
    """Mask every email address and redact secrets and letter contents.

    A safety net under the rule that code logs ids, counts and masked
    addresses only: it catches an address inside an SMTP reply or an
    exception, a password field, or a letter logged whole by mistake.
    """
    for key, value in event_dict.items():
        if key in _OURS and isinstance(value, str):
            event_dict[key] = _scrub_text(value)
        elif _is_private_name(key):
            event_dict[key] = REDACTED
        else:
            event_dict[key] = _scrub_value(value)

    return event_dict


def mask_addresses(text: str) -> str:
    """Every email address in a text masked, e.g. in an SMTP server's reply."""
    return _EMAIL.sub(lambda found: _mask_found(found.group()), text)


def mask_email(address: str) -> str:
    """Hide the mailbox of an address: 'ana.lima@example.com' -> 'a***@example.com'."""
    local, at, domain = address.rpartition("@")
    if not at:
        return "***"

    return f"{local[:1]}***@{domain}"


class _OurHandler(logging.StreamHandler[TextIO]):
    """The stderr handler `configure` installs, told apart so it is replaced once."""


def _is_private_name(key: str) -> bool:
    name = key.lower().replace("-", "_")
    return name in _PRIVATE_NAMES or any(secret in name for secret in _SECRET_NAMES)


def _scrub_value(value: Any) -> Any:
    """A copy of `value` safe to log; containers are scrubbed all the way down."""
    if isinstance(value, bool | int | float) or value is None:
        return value
    if isinstance(value, str):
        return _scrub_text(value)
    if isinstance(value, SecretStr | SecretBytes):
        return REDACTED
    if isinstance(value, BaseModel):
        # A model (a Letter, Settings) holds private fields: name it, no more.
        return f"<{type(value).__name__}>"
    if isinstance(value, Mapping):
        return {
            k: REDACTED if _is_private_name(str(k)) else _scrub_value(v)
            for k, v in value.items()
        }
    if isinstance(value, list | tuple | set | frozenset):
        return [_scrub_value(item) for item in value]

    return _scrub_text(str(value))


def _scrub_text(text: str) -> str:
    if "@" not in text:
        return text  # neither an address nor URL credentials: most values

    return mask_addresses(_URL_CREDENTIALS.sub(rf"\g<scheme>:{REDACTED}@", text))


def _mask_found(address: str) -> str:
    """Masked already ('a***@...') stays as it is; anything else is masked."""
    local = address.rpartition("@")[0]
    return address if local.endswith("***") else mask_email(address)
