"""offerletters as subprocesses: API and workers started the way README starts them.

Also a look into the ledger those processes write, the way `status` reads it.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from offerletters.api import create_app
from offerletters.config import Settings
from offerletters.ledger import Ledger, LetterRecord, LetterState

# Letters read from the ledger per query when a test reads a whole batch.
LEDGER_PAGE = 1000

# The API key every test's settings carry (see make_settings), and the header
# that presents it.
TEST_API_KEY = "test-key-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {TEST_API_KEY}"}


def settings_env(settings: Settings, **extra: str) -> dict[str, str]:
    """The process environment carrying these settings as OFFERLETTERS_* variables."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OFFERLETTERS_")}
    for name, value in settings.model_dump(exclude_none=True).items():
        shown = (
            value.get_secret_value() if hasattr(value, "get_secret_value") else value
        )
        env[f"OFFERLETTERS_{name.upper()}"] = str(shown)
    env.update(extra)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Service:
    """One running `python -m offerletters ...`, its JSON log in a file."""

    name: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def events(self, event: str | None = None) -> Iterator[dict[str, Any]]:
        """The structured log lines written so far, optionally of one event."""
        for line in self.log_path.read_text(encoding="utf-8").splitlines():
            if not line.startswith("{"):
                continue
            record = json.loads(line)
            if event is None or record.get("event") == event:
                yield record

    def terminate(self, timeout_s: float = 60) -> int:
        """SIGTERM, then the exit code; SIGKILL only if it outlives the timeout."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


def start(name: str, args: list[str], env: dict[str, str], log_dir: Path) -> Service:
    log_path = log_dir / f"{name}.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "offerletters", *args],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    return Service(name, process, log_path)


def wait_until_healthy(service: Service, url: str, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if service.process.poll() is not None:
            raise RuntimeError(
                f"{service.name} exited:\n{service.log_path.read_text()}"
            )
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise TimeoutError(f"{service.name} not healthy:\n{service.log_path.read_text()}")


@dataclass(frozen=True)
class LedgerView:
    """A batch as the ledger tells it: counts per state and, if read, every letter."""

    progress: dict[LetterState, int]
    letters: list[LetterRecord]

    def count(self, state: LetterState) -> int:
        return self.progress[state]


async def read_ledger(
    settings: Settings, batch_id: str, *, letters: bool = True
) -> LedgerView:
    """What the ledger at `settings.database_url` says about a batch right now."""
    records: list[LetterRecord] = []
    async with Ledger(settings.database_url) as ledger:
        progress = await ledger.batch_progress(batch_id)
        while letters:
            page = await ledger.letters_in(
                batch_id, limit=LEDGER_PAGE, offset=len(records)
            )
            records.extend(page)
            if len(page) < LEDGER_PAGE:
                break

    return LedgerView(progress, records)


@contextlib.asynccontextmanager
async def in_process_api(
    settings: Settings, *, api_key: str | None = TEST_API_KEY
) -> AsyncIterator[httpx.AsyncClient]:
    """The app with its lifespan running, reached in-process over ASGI.

    The client sends `api_key` with every request; None sends no key.
    """
    app = create_app(settings)
    headers = {"Authorization": f"Bearer {api_key}"} if api_key is not None else {}
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://api", headers=headers
        ) as client:
            yield client


def run_cli(
    args: list[str], env: dict[str, str], cwd: Path, *, timeout_s: float = 120
) -> subprocess.CompletedProcess[str]:
    """`python -m offerletters ARGS` to completion, its output captured as text."""
    return subprocess.run(
        [sys.executable, "-m", "offerletters", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )
