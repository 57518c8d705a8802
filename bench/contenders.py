"""The two yardsticks: a bare aiosmtplib loop (the limit) and mailmerge (today's tool).

Each runs in its own process against a fresh sink; the clock stops when the
sink has accepted the last message.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import time
from pathlib import Path

from bench.inputs import mailmerge_files
from bench.procs import Processes, cpu_seconds
from bench.results import BARE, MAILMERGE, Measurement
from bench.sinks import Sink

REPO_ROOT = Path(__file__).resolve().parents[1]
EXIT_TIMEOUT_S = 60.0


def deadline_for(rows: int, slowest_per_s: float) -> float:
    """How long a run of `rows` may take, for a contender at least this fast."""
    return 120.0 + rows / slowest_per_s


def measure_bare(
    sink: Sink, log_dir: Path, *, rows: int, connections: int, messages: Path
) -> Measurement:
    """Pre-built messages over `connections` aiosmtplib connections to the sink."""
    result = Measurement(sink.kind, rows, BARE)
    result.notes.append(f"{connections} connections")
    with Processes() as procs:
        children_cpu = _children_cpu_s()
        sink_cpu = cpu_seconds(sink.proc.pid) or 0.0
        proc = procs.start(
            "bare-loop",
            [
                sys.executable,
                "-m",
                "bench.bare_loop",
                "--port",
                str(sink.port),
                "--connections",
                str(connections),
                "--count",
                str(rows),
                "--messages",
                str(messages),
            ],
            cwd=REPO_ROOT,
            log_path=log_dir / f"bare-{sink.kind}-{rows}.log",
            stdout=subprocess.PIPE,
        )
        last = sink.wait_for(rows, deadline_s=deadline_for(rows, 50), sender=proc)
        stdout, _ = proc.popen.communicate(timeout=EXIT_TIMEOUT_S)
        if proc.popen.returncode != 0:
            raise RuntimeError(f"the bare loop failed:\n{proc.log_tail()}")

        started = json.loads(stdout.decode().strip().splitlines()[-1])["start"]
        result.cpu_s["bare loop"] = _children_cpu_s() - children_cpu
        result.cpu_s["sink"] = (cpu_seconds(sink.proc.pid) or 0.0) - sink_cpu

    _timed(result, started, last)
    result.duplicates = sink.duplicates()
    return result


def measure_mailmerge(
    sink: Sink, log_dir: Path, *, rows: int, roster_path: Path
) -> Measurement:
    """mailmerge over the same roster (as CSV) and letter, as a user would run it."""
    files = mailmerge_files(roster_path, log_dir / "mailmerge", sink.port)
    result = Measurement(sink.kind, rows, MAILMERGE)
    result.notes.append("one connection per message, one at a time (its design)")
    with Processes() as procs:
        children_cpu = _children_cpu_s()
        sink_cpu = cpu_seconds(sink.proc.pid) or 0.0
        started = time.monotonic()
        proc = procs.start(
            "mailmerge",
            [
                str(Path(sys.executable).with_name("mailmerge")),
                "--no-dry-run",
                "--no-limit",
                "--template",
                str(files.template),
                "--database",
                str(files.database),
                "--config",
                str(files.config),
                # It prints every message it sends; raw is its cheapest way.
                "--output-format",
                "raw",
            ],
            cwd=files.folder,
            log_path=log_dir / f"mailmerge-{sink.kind}-{rows}.log",
            stdout=subprocess.DEVNULL,
        )
        last = sink.wait_for(rows, deadline_s=deadline_for(rows, 20), sender=proc)
        if proc.popen.wait(timeout=EXIT_TIMEOUT_S) != 0:
            raise RuntimeError(f"mailmerge failed:\n{proc.log_tail()}")

        result.cpu_s["mailmerge"] = _children_cpu_s() - children_cpu
        result.cpu_s["sink"] = (cpu_seconds(sink.proc.pid) or 0.0) - sink_cpu

    _timed(result, started, last)
    result.duplicates = sink.duplicates()
    return result


def _timed(result: Measurement, started: float, last: float) -> None:
    result.elapsed_s = last - started
    result.letters_per_s = result.rows / result.elapsed_s
    # Nothing to ingest: all of it is sending.
    result.delivery_per_s = result.letters_per_s


def _children_cpu_s() -> float:
    """CPU time of every child this process has waited for, so far."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime
