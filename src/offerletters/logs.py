"""Logging: structlog set up once per entrypoint, and helpers that keep logs private.

Events have stable snake_case names and key/value fields. Output is JSON lines
when stderr is not a terminal (for log shippers) and readable columns when it
is. Nothing here runs at import time.
"""

from __future__ import annotations

import logging
import sys

import structlog


def configure(level: str = "INFO") -> None:
    """Route structlog (and the stdlib loggers of our libraries) to stderr."""
    numeric_level = logging.getLevelNamesMapping().get(level.upper(), logging.INFO)
    renderer: structlog.types.Processor = (
        structlog.dev.ConsoleRenderer()
        if sys.stderr.isatty()
        else structlog.processors.JSONRenderer()
    )

    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric_level),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )

    # aiokafka and uvicorn log through the stdlib; keep their chatter at WARNING
    # unless the operator asked for DEBUG.
    logging.basicConfig(
        level=max(numeric_level, logging.WARNING),
        stream=sys.stderr,
        format="%(message)s",
    )


def mask_email(address: str) -> str:
    """Hide the mailbox of an address: 'ana.lima@example.com' -> 'a***@example.com'."""
    local, at, domain = address.rpartition("@")
    if not at:
        return "***"

    return f"{local[:1]}***@{domain}"
