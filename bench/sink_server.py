"""An aiosmtpd SMTP sink in its own process: accepts everything, notes each arrival.

    python -m bench.sink_server --port 0

Prints `ready PORT` once listening, then one line per accepted message:
`MONOTONIC_SECONDS MESSAGE_ID`. The time is taken when the message is
accepted, on the machine-wide monotonic clock, so the benchmark can compare
it with its own clock. Lines are written in small bursts, never one write
per message. Ends on SIGTERM or SIGINT after writing what it has.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import re
import signal
import sys
import time
from typing import Any

from aiosmtpd.smtp import SMTP, Envelope, Session

# Arrivals are written out this often; the time in each line is exact anyway.
FLUSH_INTERVAL_S = 0.05
MESSAGE_ID = re.compile(rb"^Message-ID:[ \t]*(\S+)", re.IGNORECASE | re.MULTILINE)


class Recorder:
    """The aiosmtpd handler: takes every message and notes when it came."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    async def handle_DATA(  # aiosmtpd's hook name
        self, server: SMTP, session: Session, envelope: Envelope
    ) -> str:
        accepted_at = time.monotonic()
        found = MESSAGE_ID.search(envelope.original_content or b"")
        message_id = found.group(1).decode("ascii", "replace") if found else "-"
        self.lines.append(f"{accepted_at:.6f} {message_id}\n")
        return "250 2.0.0 Accepted"


async def serve(host: str, port: int) -> None:
    recorder = Recorder()
    loop = asyncio.get_running_loop()

    def session() -> Any:
        return SMTP(recorder, enable_SMTPUTF8=True, hostname="bench-sink")

    server = await loop.create_server(session, host, port)
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)

    bound_port = server.sockets[0].getsockname()[1]
    _write([f"ready {bound_port}\n"])
    while not stop.is_set():
        _write(recorder.lines)
        recorder.lines = []
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), FLUSH_INTERVAL_S)

    server.close()
    _write(recorder.lines)


def _write(lines: list[str]) -> None:
    if lines:
        sys.stdout.write("".join(lines))
        sys.stdout.flush()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0: any free port")
    args = parser.parse_args()
    asyncio.run(serve(args.host, args.port))


if __name__ == "__main__":
    main()
