"""`offerletters api` and `offerletters worker`: the long-running services."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import threading

import structlog
import uvicorn

from offerletters.api import create_app
from offerletters.cli.shared import EXIT_OK
from offerletters.config import Settings
from offerletters.ledger import Ledger
from offerletters.letters import LetterTemplates
from offerletters.queue.kafka import ensure_topic
from offerletters.worker import run_worker

log = structlog.get_logger(__name__)

# How long past the grace period a stopping worker may take to close its
# clients before the watchdog ends the process.
WATCHDOG_SLACK_S = 15.0
# The exit code of a worker that had to be ended by the watchdog.
EXIT_FORCED = 4


def api(args: argparse.Namespace, settings: Settings) -> int:
    """Serve the HTTP API until interrupted."""
    # Inside uvicorn a start-up failure is a traceback; checked here first,
    # it is one line naming the fix, like every other command's.
    asyncio.run(_preflight(settings))
    app = create_app(settings)
    # Our own request_done events replace uvicorn's access lines, which
    # would log query strings.
    uvicorn.run(app, host=args.host, port=args.port, log_config=None, access_log=False)
    return EXIT_OK


async def _preflight(settings: Settings) -> None:
    """Fail before serving when templates, the ledger or Kafka are not usable."""
    LetterTemplates.load(
        settings.templates_dir, locale=settings.locale, currency=settings.currency
    )
    async with Ledger(settings.database_url) as ledger:
        await ledger.migrate()
    if not settings.embedded:
        await ensure_topic(settings)


def worker(args: argparse.Namespace, settings: Settings) -> int:
    """Deliver letters from Kafka until SIGTERM or Ctrl-C, then stop cleanly."""

    async def work() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, _stop_within, stop, settings)
        await run_worker(settings, stop)

    asyncio.run(work())
    return EXIT_OK


def _stop_within(stop: asyncio.Event, settings: Settings) -> None:
    """Ask the worker to stop, and make sure the process ends even if it cannot.

    A clean stop finishes within the grace period. Closing Kafka clients when
    the broker is gone can hang past it; the watchdog then ends the process,
    and the letters it held come back to another worker, as after a crash.
    """
    if stop.is_set():
        return

    stop.set()
    deadline_s = settings.shutdown_grace_s + WATCHDOG_SLACK_S
    watchdog = threading.Timer(deadline_s, _give_up, args=(deadline_s,))
    watchdog.daemon = True
    watchdog.start()


def _give_up(deadline_s: float) -> None:
    log.error("worker_forced_exit", after_s=deadline_s)
    os._exit(EXIT_FORCED)
