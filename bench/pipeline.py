"""offerletters end to end: API and workers as subprocesses, a roster sent over HTTP.

Each measurement gets a fresh topic, consumer group and SQLite ledger file.
The API and the workers are started and idle (workers holding their
partitions) before the clock starts; the clock starts with the upload and
stops when the sink has accepted the last letter.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import sys
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx

from bench.contenders import deadline_for
from bench.inputs import SENDER, TEMPLATES_DIR
from bench.procs import (
    MIB,
    Proc,
    Processes,
    RssSampler,
    cpu_seconds,
    free_port,
    rss_bytes,
)
from bench.profiling import Profiler
from bench.results import OFFERLETTERS, Measurement, latencies
from bench.sinks import Sink

HEALTH_TIMEOUT_S = 120.0
# Workers count as ready once their partitions stopped moving for this long.
ASSIGNMENT_STABLE_S = 2.0
ASSIGNMENT_TIMEOUT_S = 120.0
# The ledger records a letter right after the sink's 250; allow for stragglers.
LEDGER_TIMEOUT_S = 60.0
UPLOAD_TIMEOUT_S = 900.0
XLSX_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


@dataclass(frozen=True)
class PipelineConfig:
    """Everything about an offerletters run that is not the roster or the sink."""

    bootstrap_servers: str
    connections: int
    profile: bool = False


def service_env(
    config: PipelineConfig, sink: Sink, *, topic: str, ledger_path: Path
) -> dict[str, str]:
    """The environment the API and workers run with: OFFERLETTERS_* for this run."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OFFERLETTERS_")}
    env.update(
        {
            "OFFERLETTERS_KAFKA_BOOTSTRAP_SERVERS": config.bootstrap_servers,
            "OFFERLETTERS_KAFKA_TOPIC": topic,
            "OFFERLETTERS_KAFKA_CONSUMER_GROUP": f"{topic}-workers",
            "OFFERLETTERS_DATABASE_URL": f"sqlite+aiosqlite:///{ledger_path}",
            "OFFERLETTERS_SMTP_HOST": "127.0.0.1",
            "OFFERLETTERS_SMTP_PORT": str(sink.port),
            "OFFERLETTERS_SMTP_CONNECTIONS": str(config.connections),
            "OFFERLETTERS_SENDER": SENDER,
            "OFFERLETTERS_TEMPLATES_DIR": str(TEMPLATES_DIR),
            # No API keys to hand out on a benchmark machine.
            "OFFERLETTERS_DEV_MODE": "true",
            "OFFERLETTERS_LOG_FORMAT": "json",
        }
    )
    return env


def measure_offerletters(
    sink: Sink,
    log_dir: Path,
    *,
    rows: int,
    roster_path: Path,
    workers: int,
    config: PipelineConfig,
) -> Measurement:
    """Upload the roster to a fresh API with `workers` idle workers; time it all."""
    topic = f"bench-{sink.kind}-{rows}-w{workers}-{uuid.uuid4().hex[:8]}"
    run_dir = log_dir / f"offerletters-w{workers}"
    run_dir.mkdir(parents=True, exist_ok=True)
    ledger_path = run_dir / "ledger.db"
    env = service_env(config, sink, topic=topic, ledger_path=ledger_path)
    result = Measurement(sink.kind, rows, OFFERLETTERS, workers=workers)

    with Processes() as procs:
        api, api_port = _start_api(procs, env, run_dir)
        pool = _start_workers(procs, workers, env, run_dir)
        profilers = _profilers(procs, [api, pool[0]], run_dir) if config.profile else []

        watched = {"api": api.pid} | {w.name: w.pid for w in pool}
        watched["sink"] = sink.proc.pid
        with RssSampler(watched) as rss:
            result.api_rss_before_mib = (rss_bytes(api.pid) or 0) / MIB
            cpu_before = _cpu_seconds(watched)
            started = time.monotonic()
            _upload(api_port, roster_path, rows)
            queued = time.monotonic()
            last = sink.wait_for(rows, deadline_s=deadline_for(rows, 20))
            cpu_after = _cpu_seconds(watched)
            result.ledger_sent = _wait_ledger_sent(ledger_path, rows)

        _stop_in_order(pool, api)
        for profiler in profilers:
            result.notes.append(profiler.finish())

    if result.ledger_sent != rows:
        result.notes.append(f"the ledger holds {result.ledger_sent} of {rows} as sent")

    result.cpu_s = {name: cpu_after[name] - cpu_before[name] for name in cpu_after}
    result.api_rss_peak_mib = rss.peak_mib("api")
    result.worker_rss_peak_mib = [rss.peak_mib(w.name) or 0.0 for w in pool]
    result.ingest_s = queued - started
    result.elapsed_s = last - started
    result.letters_per_s = rows / result.elapsed_s
    result.delivery_per_s = rows / max(last - queued, 1e-9)
    arrivals = sink.arrivals()[:rows]
    result.latency_p50_s, result.latency_p95_s = latencies(arrivals, since=queued)
    result.duplicates = sink.duplicates()
    if result.duplicates:
        result.notes.append(f"{result.duplicates} letters arrived twice")
    return result


def _start_api(
    procs: Processes, env: dict[str, str], run_dir: Path
) -> tuple[Proc, int]:
    """`offerletters api` on a free port, once it answers /healthz."""
    port = free_port()
    api = procs.start(
        "api",
        [sys.executable, "-m", "offerletters", "api", "--port", str(port)],
        env=env,
        cwd=run_dir,
        log_path=run_dir / "api.log",
    )
    _wait_healthy(api, port)
    return api, port


def _start_workers(
    procs: Processes, count: int, env: dict[str, str], run_dir: Path
) -> list[Proc]:
    """`count` worker processes, once all of them hold their partitions."""
    pool = [
        procs.start(
            f"worker-{n}",
            [sys.executable, "-m", "offerletters", "worker"],
            env=env,
            cwd=run_dir,
            log_path=run_dir / f"worker-{n}.log",
        )
        for n in range(count)
    ]
    _wait_assigned(pool)
    return pool


def _cpu_seconds(pids: dict[str, int]) -> dict[str, float]:
    return {name: cpu_seconds(pid) or 0.0 for name, pid in pids.items()}


def _wait_healthy(api: Proc, port: int) -> None:
    deadline = time.monotonic() + HEALTH_TIMEOUT_S
    url = f"http://127.0.0.1:{port}/healthz"
    while time.monotonic() < deadline:
        if not api.alive():
            raise RuntimeError(f"the API exited:\n{api.log_tail()}")
        try:
            if httpx.get(url, timeout=2).status_code == httpx.codes.OK:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)

    raise TimeoutError(f"the API was not healthy in time:\n{api.log_tail()}")


def _wait_assigned(workers: Sequence[Proc]) -> None:
    """Until every worker holds partitions and no partition moved for a while.

    A rebalance in the middle of a measurement would pause every consumer;
    so would the second worker joining, so all are settled first.
    """
    deadline = time.monotonic() + ASSIGNMENT_TIMEOUT_S
    moves, stable_since = -1, time.monotonic()
    while time.monotonic() < deadline:
        for worker in workers:
            if not worker.alive():
                raise RuntimeError(f"{worker.name} exited:\n{worker.log_tail()}")

        logs = [_log_text(worker) for worker in workers]
        now_moves = sum(
            log.count('"partitions_assigned"') + log.count('"partitions_revoked"')
            for log in logs
        )
        if now_moves != moves:
            moves, stable_since = now_moves, time.monotonic()
        everyone = all('"partitions_assigned"' in log for log in logs)
        if everyone and time.monotonic() - stable_since >= ASSIGNMENT_STABLE_S:
            return
        time.sleep(0.2)

    tails = "\n".join(w.log_tail(10) for w in workers)
    raise TimeoutError(f"workers did not settle on their partitions:\n{tails}")


def _log_text(proc: Proc) -> str:
    if proc.log_path is None:
        return ""
    return proc.log_path.read_text(encoding="utf-8", errors="replace")


def _upload(port: int, roster_path: Path, rows: int) -> None:
    """POST the roster; return once the API says every letter is queued."""
    response = httpx.post(
        f"http://127.0.0.1:{port}/send-emails",
        files={"file": (roster_path.name, roster_path.read_bytes(), XLSX_TYPE)},
        timeout=UPLOAD_TIMEOUT_S,
    )
    if response.status_code == httpx.codes.UNAUTHORIZED:
        raise RuntimeError(
            "the API asks for a key although OFFERLETTERS_DEV_MODE=true: "
            f"{response.text[:300]}"
        )
    if response.status_code != httpx.codes.ACCEPTED:
        raise RuntimeError(f"upload answered {response.status_code}: {response.text}")

    queued = response.json().get("letters")
    if queued != rows:
        raise RuntimeError(f"the API queued {queued} letters, not {rows}")


def _wait_ledger_sent(ledger_path: Path, rows: int) -> int:
    """How many letters the ledger holds as sent, once all are or time is up."""
    deadline = time.monotonic() + LEDGER_TIMEOUT_S
    sent = 0
    while time.monotonic() < deadline:
        sent = _ledger_count(ledger_path, "sent")
        if sent >= rows:
            break
        time.sleep(0.2)
    return sent


def _ledger_count(ledger_path: Path, state: str) -> int:
    uri = f"file:{ledger_path}?mode=ro"
    try:
        with contextlib.closing(sqlite3.connect(uri, uri=True, timeout=10)) as ledger:
            row = ledger.execute(
                "SELECT COUNT(*) FROM letters WHERE state = ?", (state,)
            ).fetchone()
    except sqlite3.Error:
        return 0
    return int(row[0])


def _profilers(
    procs: Processes, targets: Sequence[Proc], run_dir: Path
) -> list[Profiler]:
    return [Profiler.attach(procs, target, run_dir) for target in targets]


def _stop_in_order(workers: Sequence[Proc], api: Proc) -> None:
    """Workers first (they finish and commit), then the API."""
    for worker in workers:
        worker.stop()
    api.stop()
