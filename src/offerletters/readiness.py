"""Readiness: can this process do its work right now?

`check` asks the ledger to answer a query and, in Kafka mode, asks the
brokers for their topics; each check has its own short timeout and they run
side by side. The API serves the result at /readyz; a worker can serve the
same. Reasons are written for an unauthenticated caller: they name what is
wrong, never a host, a path or a password. The full error goes to the log.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Final

import structlog
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from offerletters.config import Settings
from offerletters.errors import OfferLettersError
from offerletters.ledger import Ledger

__all__ = ["CHECK_TIMEOUT_S", "Problem", "check", "names"]

log = structlog.get_logger(__name__)

# Long enough for a healthy broker or database across a busy network, short
# enough that an orchestrator's probe (often 5 s) gets its answer in time.
CHECK_TIMEOUT_S: Final = 3.0


@dataclass(frozen=True, slots=True)
class Problem:
    """One failed check: which one, and why, in words safe to show anyone."""

    check: str
    reason: str


class _NotReady(Exception):
    """A check failed; `reason` is safe to show, `error` is for the log."""

    def __init__(self, reason: str, error: BaseException | str) -> None:
        super().__init__(reason)
        self.reason = reason
        self.error = error


async def check(
    settings: Settings, ledger: Ledger, *, timeout_s: float = CHECK_TIMEOUT_S
) -> list[Problem]:
    """Every check that fails now; an empty list means ready.

    Embedded mode checks only the ledger: its queue lives in this process.
    """
    checks: dict[str, Callable[[], Awaitable[None]]] = {"ledger": ledger.ping}
    if not settings.embedded:
        checks["kafka"] = lambda: _kafka_topics_exist(settings, timeout_s)

    outcomes = await asyncio.gather(
        *(_timed(name, run, timeout_s) for name, run in checks.items())
    )
    return [problem for problem in outcomes if problem is not None]


def names(settings: Settings) -> list[str]:
    """The checks `check` runs with these settings."""
    return ["ledger"] if settings.embedded else ["ledger", "kafka"]


async def _timed(
    name: str, run: Callable[[], Awaitable[None]], timeout_s: float
) -> Problem | None:
    try:
        async with asyncio.timeout(timeout_s):
            await run()
    except TimeoutError:
        reason = f"no answer within {timeout_s:g} s"
        log.warning("not_ready", check=name, reason=reason)
        return Problem(name, reason)
    except _NotReady as exc:
        log.warning("not_ready", check=name, reason=exc.reason, error=str(exc.error))
        return Problem(name, exc.reason)
    except OfferLettersError as exc:
        # Our own errors may name the database; the log keeps that detail.
        reason = f"it did not answer ({type(exc).__name__})"
        log.warning("not_ready", check=name, reason=reason, error=str(exc))
        return Problem(name, reason)
    except Exception as exc:
        # A check that breaks in a way nobody foresaw still means not ready,
        # and the probe must get its answer rather than a crash.
        reason = f"the check failed ({type(exc).__name__})"
        log.exception("not_ready", check=name, reason=reason)
        return Problem(name, reason)

    return None


async def _kafka_topics_exist(settings: Settings, timeout_s: float) -> None:
    """Raise _NotReady unless a broker answers and both our topics exist."""
    admin = AIOKafkaAdminClient(
        bootstrap_servers=settings.kafka_bootstrap_servers,
        request_timeout_ms=int(timeout_s * 1000),
    )
    try:
        await admin.start()
        topics = set(await admin.list_topics())
    except (KafkaError, OSError) as exc:
        raise _NotReady("no broker could be reached", exc) from exc
    finally:
        await admin.close()

    wanted = (settings.kafka_topic, settings.dead_letter_topic)
    missing = [topic for topic in wanted if topic not in topics]
    if missing:
        listed = ", ".join(missing)
        raise _NotReady(f"missing topic(s): {listed}", f"missing topic(s): {listed}")
