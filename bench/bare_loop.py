"""The practical limit: aiosmtplib sending pre-built messages as fast as it can.

    python -m bench.bare_loop --port 2525 --count 10000 --messages DIR

Opens `--connections` connections, then every connection sends the next
message as soon as its previous one was accepted, until `--count` were
sent. The messages are the .eml files in DIR, used in turn, so no time goes
into rendering or MIME building. Prints one JSON line with the monotonic
times at which sending started and ended.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path

import aiosmtplib

SENDER = "talent@example.com"
TIMEOUT_S = 30.0


def load_messages(folder: Path) -> list[bytes]:
    messages = [path.read_bytes() for path in sorted(folder.glob("*.eml"))]
    if not messages:
        raise SystemExit(f"no .eml files in {folder}")
    return messages


async def send_all(
    host: str, port: int, connections: int, count: int, messages: list[bytes]
) -> tuple[float, float]:
    clients = [
        aiosmtplib.SMTP(hostname=host, port=port, timeout=TIMEOUT_S)
        for _ in range(connections)
    ]
    await asyncio.gather(*(client.connect() for client in clients))

    # One shared sequence: whichever connection is free takes the next message.
    numbers = iter(range(count))
    start = time.monotonic()
    await asyncio.gather(*(_pump(client, numbers, messages) for client in clients))
    end = time.monotonic()

    await asyncio.gather(*(client.quit() for client in clients))
    return start, end


async def _pump(
    client: aiosmtplib.SMTP, numbers: Iterator[int], messages: list[bytes]
) -> None:
    for n in numbers:
        message = messages[n % len(messages)]
        await client.sendmail(SENDER, [f"candidate{n}@example.com"], message)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--messages", type=Path, required=True)
    args = parser.parse_args()

    messages = load_messages(args.messages)
    start, end = asyncio.run(
        send_all(args.host, args.port, args.connections, args.count, messages)
    )
    print(json.dumps({"start": start, "end": end, "messages": len(messages)}))


if __name__ == "__main__":
    main()
