"""The Kafka broker for a benchmark run: scripts/kafka-broker on free loopback ports.

Started once per run in its own data directory and always stopped (and its
data removed) afterwards, even when the run fails or is interrupted.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

from bench.procs import free_ports

REPO_ROOT = Path(__file__).resolve().parents[1]
BROKER_SCRIPT = REPO_ROOT / "scripts" / "kafka-broker"
# A first start also downloads the jars (about a minute); readiness takes ~10 s.
START_TIMEOUT_S = 600.0
# The script itself sends SIGKILL after 30 s.
STOP_TIMEOUT_S = 90.0


def kafka_version() -> str:
    """The Kafka version scripts/kafka-broker runs."""
    return os.environ.get("KAFKA_VERSION", "4.4.0")


@contextlib.contextmanager
def local_broker() -> Iterator[str]:
    """Start a single-node broker; yield its bootstrap address; stop it."""
    port, controller_port = free_ports(2)
    run_dir = REPO_ROOT / ".cache" / "kafka-run" / f"bench-{port}"
    where = ["--port", str(port), "--dir", str(run_dir)]
    try:
        _script("start", *where, "--controller-port", str(controller_port))
        yield f"127.0.0.1:{port}"
    finally:
        try:
            _script("stop", *where)
        finally:
            shutil.rmtree(run_dir, ignore_errors=True)


def _script(*args: str) -> None:
    timeout_s = START_TIMEOUT_S if args[0] == "start" else STOP_TIMEOUT_S
    done = subprocess.run(
        [str(BROKER_SCRIPT), *args],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )
    if done.returncode != 0:
        tail = "\n".join(done.stderr.strip().splitlines()[-30:])
        raise RuntimeError(f"{BROKER_SCRIPT.name} {args[0]} failed:\n{tail}")
