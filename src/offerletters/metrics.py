"""Metrics: the Prometheus counters, gauges and histograms of offerletters.

They live in prometheus_client's default registry, so the API's /metrics and
the worker's show them alike. `MetricsServer` is the worker's small HTTP
endpoint for /metrics and its health probes, served on the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from http import HTTPStatus

import structlog
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

from offerletters.errors import ConfigError

__all__ = [
    "INGEST_ROWS",
    "LETTERS_FAILED",
    "LETTERS_IN_FLIGHT",
    "LETTERS_QUEUED",
    "LETTERS_RETRIED",
    "LETTERS_SENT",
    "SMTP_CONNECTIONS_OPEN",
    "SMTP_SEND_SECONDS",
    "Health",
    "MetricsServer",
    "Probe",
]

log = structlog.get_logger(__name__)

LETTERS_QUEUED = Counter(
    "offerletters_letters_queued", "Letters published to the queue by ingest."
)
LETTERS_SENT = Counter(
    "offerletters_letters_sent", "Letters the SMTP server (or the outbox) accepted."
)
LETTERS_FAILED = Counter(
    "offerletters_letters_failed",
    "Letters that failed for good (refused or tried out).",
)
LETTERS_RETRIED = Counter(
    "offerletters_letters_retried", "Failed attempts that will be tried again."
)
SMTP_SEND_SECONDS = Histogram(
    "offerletters_smtp_send_seconds",
    "Time of one SMTP send, connecting if needed, not counting the throttle's wait.",
    # From a reused local connection to a slow provider near the 30 s timeout.
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
LETTERS_IN_FLIGHT = Gauge(
    "offerletters_letters_in_flight",
    "Letters being delivered now, including pauses between attempts.",
)
SMTP_CONNECTIONS_OPEN = Gauge(
    "offerletters_smtp_connections_open", "SMTP connections open in this process."
)
INGEST_ROWS = Histogram(
    "offerletters_ingest_rows",
    "Roster rows per published batch.",
    buckets=(1, 10, 100, 1_000, 10_000, 100_000, 1_000_000),
)

# A probe's request must arrive whole within this time; its head within this size.
REQUEST_TIMEOUT_S = 5.0
MAX_HEAD_LINES = 100


@dataclass(frozen=True, slots=True)
class Health:
    """A probe's answer: healthy or not, and a JSON body that says why."""

    ok: bool
    details: Mapping[str, object] = field(default_factory=dict)


# Answers a health path such as /healthz; called on the event loop per request.
Probe = Callable[[], Awaitable[Health]]


class MetricsServer:
    """Serves GET /metrics and the given probes over HTTP.

    Runs on the event loop, so a probe can look at tasks safely, and a loop
    that hangs stops answering, as a liveness probe wants. One request per
    connection; use as an async context manager. No host means every
    interface, IPv4 and IPv6, for scrapers and probes from outside; port 0
    picks a free port (give a host with it: each interface would get its own).
    """

    def __init__(
        self, port: int, probes: Mapping[str, Probe], *, host: str | None = None
    ) -> None:
        self.port = port
        self._host = host
        self._probes = dict(probes)
        self._server: asyncio.Server | None = None
        self._open: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        try:
            self._server = await asyncio.start_server(
                self._answer, host=self._host, port=self.port
            )
        except OSError as exc:
            raise ConfigError(
                f"cannot serve metrics on port {self.port} ({exc.strerror}); set"
                " OFFERLETTERS_WORKER_METRICS_PORT to a free port, or unset it"
            ) from exc

        self.port = int(self._server.sockets[0].getsockname()[1])
        log.info("metrics_serving", port=self.port, paths=["/metrics", *self._probes])

    async def stop(self) -> None:
        """Stop listening and close open connections; safe to call twice."""
        server, self._server = self._server, None
        if server is None:
            return

        server.close()
        for writer in list(self._open):
            writer.close()
        await server.wait_closed()

    async def __aenter__(self) -> MetricsServer:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    async def _answer(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self._open.add(writer)
        try:
            async with asyncio.timeout(REQUEST_TIMEOUT_S):
                method, path = await _read_head(reader)
            status, content_type, body = await self._route(method, path)
            writer.write(
                _response(status, content_type, body, send_body=method != "HEAD")
            )
            await writer.drain()
        except (TimeoutError, ConnectionError, ValueError):
            # A client that is slow, gone or not speaking HTTP gets nothing.
            pass
        finally:
            self._open.discard(writer)
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    async def _route(self, method: str, path: str) -> tuple[HTTPStatus, str, bytes]:
        if method not in ("GET", "HEAD"):
            return HTTPStatus.METHOD_NOT_ALLOWED, "text/plain", b"GET only\n"
        if path == "/metrics":
            return HTTPStatus.OK, CONTENT_TYPE_LATEST, generate_latest(REGISTRY)
        probe = self._probes.get(path)
        if probe is None:
            return HTTPStatus.NOT_FOUND, "text/plain", b"not found\n"

        try:
            health = await probe()
        except Exception as exc:  # a broken probe reports unhealthy, never a 500
            log.exception("probe_failed", path=path)
            health = Health(False, {"error": type(exc).__name__})
        status = HTTPStatus.OK if health.ok else HTTPStatus.SERVICE_UNAVAILABLE
        body = json.dumps({"ok": health.ok, **health.details}).encode() + b"\n"
        return status, "application/json", body


async def _read_head(reader: asyncio.StreamReader) -> tuple[str, str]:
    """The method and path of a request; ValueError when it is not HTTP."""
    request_line = (await reader.readline()).decode("latin-1")
    method, target, _version = request_line.split(" ", 2)
    for _ in range(MAX_HEAD_LINES):
        if (await reader.readline()).strip() == b"":
            break
    else:
        raise ValueError("request head too long")

    return method, target.split("?", 1)[0]


def _response(
    status: HTTPStatus, content_type: str, body: bytes, *, send_body: bool
) -> bytes:
    head = (
        f"HTTP/1.1 {status.value} {status.phrase}\r\n"
        f"Content-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\n"
        "Connection: close\r\n\r\n"
    )
    return head.encode("latin-1") + (body if send_body else b"")
