"""`offerletters api` and `offerletters worker`: the long-running services."""

from __future__ import annotations

import argparse
import asyncio
import signal

import uvicorn

from offerletters.api import create_app
from offerletters.cli.shared import EXIT_OK
from offerletters.config import Settings
from offerletters.worker import run_worker


def api(args: argparse.Namespace, settings: Settings) -> int:
    """Serve the HTTP API until interrupted."""
    app = create_app(settings)
    # Our own request_done events replace uvicorn's access lines, which
    # would log query strings.
    uvicorn.run(app, host=args.host, port=args.port, log_config=None, access_log=False)
    return EXIT_OK


def worker(args: argparse.Namespace, settings: Settings) -> int:
    """Deliver letters from Kafka until SIGTERM or Ctrl-C, then stop cleanly."""

    async def work() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        await run_worker(settings, stop)

    asyncio.run(work())
    return EXIT_OK
