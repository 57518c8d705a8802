"""Run the benchmark suite and write docs/benchmarks.md.

    uv run --group bench python -m bench.run \\
        --sizes 1000,10000,100000 --workers 1,2 --sinks aiosmtpd,smtp-sink

For every sink and roster size: the bare aiosmtplib loop, mailmerge, then
offerletters with each worker count, each against a fresh sink. One Kafka
broker serves the whole run. Everything is started here and stopped here,
on 127.0.0.1 only; logs, ledgers and profiles stay in .cache/bench/RUN/.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import itertools
import json
import os
import platform
import shlex
import signal
import subprocess
import sys
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from types import FrameType

import psutil

from bench import report
from bench.broker import kafka_version, local_broker
from bench.contenders import measure_bare, measure_mailmerge
from bench.inputs import SENDER, prebuilt_messages, roster
from bench.pipeline import PipelineConfig, measure_offerletters
from bench.results import BARE, MAILMERGE, OFFERLETTERS, Measurement
from bench.sinks import (
    SINK_KINDS,
    Sink,
    available_kinds,
    running_sink,
    smtp_sink_version,
)

REPO_ROOT = Path(__file__).resolve().parents[1]
WORK_DIR = REPO_ROOT / ".cache" / "bench"
DEFAULT_OUT = REPO_ROOT / "docs" / "benchmarks.md"
CONTENDERS = ("bare", "mailmerge", "offerletters")
# The bare loop cycles through this many distinct pre-built letters.
PREBUILT_LETTERS = 1000


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    _exit_cleanly_on_signals()

    sinks = [kind for kind in args.sinks if kind in available_kinds()]
    notes = [
        f"sink {kind} skipped: not installed (apt-get install -y postfix)"
        for kind in args.sinks
        if kind not in sinks
    ]
    run_dir = WORK_DIR / datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    run_dir.mkdir(parents=True)
    print(f"bench: logs in {run_dir}", flush=True)

    load_before = os.getloadavg()
    started = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    results: list[Measurement] = []
    needs_kafka = "offerletters" in args.contenders
    with _broker(args.kafka, needed=needs_kafka) as bootstrap:
        config = PipelineConfig(bootstrap, args.connections, profile=args.profile)
        for job in _jobs(args, sinks, config, run_dir):
            results.append(_attempt(job, run_dir))

    load_after = os.getloadavg()
    notes += _load_notes(load_before, load_after)
    notes += [
        f"{r.sink} {r.rows:,} {r.contender}: {n}" for r in results for n in r.notes
    ]
    (run_dir / "results.json").write_text(
        json.dumps([r.as_json() for r in results], indent=2), encoding="utf-8"
    )

    print()
    print(report.terminal_table(results))
    env = _environment(argv, args, started, load_before, load_after)
    if args.out is not None:
        args.out.write_text(report.document(results, env, notes), encoding="utf-8")
        print(f"\nbench: wrote {args.out}")
    return 1 if any(r.error for r in results) else 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench.run", description=__doc__.splitlines()[0]
    )
    parser.add_argument(
        "--sizes", type=_ints, default=[1000, 10000, 100000], help="roster rows"
    )
    parser.add_argument(
        "--workers", type=_ints, default=[1, 2], help="worker processes to try"
    )
    parser.add_argument(
        "--sinks",
        type=_names(SINK_KINDS),
        default=list(SINK_KINDS),
        help="aiosmtpd and/or smtp-sink (skipped when Postfix is not installed)",
    )
    parser.add_argument(
        "--contenders",
        type=_names(CONTENDERS),
        default=list(CONTENDERS),
        help="which of bare, mailmerge, offerletters to run",
    )
    parser.add_argument(
        "--connections",
        type=int,
        default=16,
        help="SMTP connections per worker process, and of the bare loop",
    )
    parser.add_argument(
        "--kafka", help="use this broker (host:port) instead of starting one"
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="record the API and the first worker with py-spy (slows them)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=DEFAULT_OUT,
        help="markdown report to write (default docs/benchmarks.md)",
    )
    parser.add_argument(
        "--no-out", dest="out", action="store_const", const=None, help="write none"
    )
    return parser


@dataclass(frozen=True)
class Job:
    """One measurement still to run: what, against which sink, how."""

    sink_kind: str
    rows: int
    contender: str
    workers: int | None
    measure: Callable[[Sink, Path], Measurement]


def _jobs(
    args: argparse.Namespace, sinks: list[str], config: PipelineConfig, run_dir: Path
) -> Iterator[Job]:
    """Per sink and size: the loop, mailmerge, then offerletters per worker count."""
    rosters = {rows: roster(rows, WORK_DIR / "rosters") for rows in args.sizes}
    messages = None
    if "bare" in args.contenders:
        messages = prebuilt_messages(
            roster(PREBUILT_LETTERS, WORK_DIR / "rosters"),
            run_dir / "prebuilt",
            _preview_env(),
        )

    for sink_kind, rows in itertools.product(sinks, args.sizes):
        if messages is not None:
            yield Job(
                sink_kind,
                rows,
                BARE,
                None,
                functools.partial(
                    measure_bare,
                    rows=rows,
                    connections=args.connections,
                    messages=messages,
                ),
            )
        if "mailmerge" in args.contenders:
            yield Job(
                sink_kind,
                rows,
                MAILMERGE,
                None,
                functools.partial(
                    measure_mailmerge, rows=rows, roster_path=rosters[rows]
                ),
            )
        if "offerletters" in args.contenders:
            for workers in args.workers:
                yield Job(
                    sink_kind,
                    rows,
                    OFFERLETTERS,
                    workers,
                    functools.partial(
                        measure_offerletters,
                        rows=rows,
                        roster_path=rosters[rows],
                        workers=workers,
                        config=config,
                    ),
                )


def _attempt(job: Job, run_dir: Path) -> Measurement:
    """One measurement against a fresh sink; a failure is recorded, not raised."""
    workers = f", {job.workers} worker(s)" if job.workers else ""
    print(
        f"bench: {job.sink_kind}, {job.rows:,} rows, {job.contender}{workers} ...",
        flush=True,
    )
    log_dir = run_dir / f"{job.sink_kind}-{job.rows}"
    log_dir.mkdir(exist_ok=True)
    try:
        with running_sink(job.sink_kind, log_dir) as sink:
            result = job.measure(sink, log_dir)
    except Exception as exc:
        traceback.print_exc()
        return Measurement(
            job.sink_kind,
            job.rows,
            job.contender,
            workers=job.workers,
            error=f"{type(exc).__name__}: {exc}",
        )

    print(f"bench:   {result.letters_per_s or 0:,.0f} letters/s", flush=True)
    return result


def _preview_env() -> dict[str, str]:
    """`offerletters preview` with the benchmark's sender and the default letter."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OFFERLETTERS_")}
    env["OFFERLETTERS_SENDER"] = SENDER
    env["OFFERLETTERS_TEMPLATES_DIR"] = str(REPO_ROOT / "templates")
    return env


@contextlib.contextmanager
def _broker(bootstrap: str | None, *, needed: bool) -> Iterator[str]:
    """The given broker, or one started for this run; none when nothing needs it."""
    if bootstrap or not needed:
        yield bootstrap or ""
        return

    print("bench: starting a Kafka broker (scripts/kafka-broker)", flush=True)
    with local_broker() as started:
        yield started


def _exit_cleanly_on_signals() -> None:
    """The first SIGTERM or SIGINT unwinds like Ctrl-C; later ones are ignored.

    Unwinding runs every `finally`, which stops the processes started so
    far; a second signal (timeout and uv both forward one) must not cut that
    short and leave them running.
    """

    def interrupt(signum: int, frame: FrameType | None) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)
    signal.signal(signal.SIGINT, interrupt)


def _load_notes(before: tuple[float, ...], after: tuple[float, ...]) -> list[str]:
    cores = os.cpu_count() or 1
    notes = [
        f"1-minute load average {before[0]:.2f} before the run, {after[0]:.2f}"
        f" after, on {cores} cores"
    ]
    if before[0] > cores / 2:
        notes.append(
            "the machine was busy when the run started: numbers are lower and"
            " noisier than on a quiet machine"
        )
    return notes


def _environment(
    argv: list[str] | None,
    args: argparse.Namespace,
    started: str,
    load_before: tuple[float, ...],
    load_after: tuple[float, ...],
) -> report.Environment:
    shown_argv = sys.argv[1:] if argv is None else argv
    command = "uv run --group bench python -m bench.run " + shlex.join(shown_argv)
    memory = psutil.virtual_memory().total / 1024**3
    machine = [
        ("CPU", _cpu_model()),
        ("cores", str(os.cpu_count())),
        ("memory", f"{memory:.1f} GiB"),
        ("OS", platform.platform()),
        (
            "load average (1 min) before / after",
            f"{load_before[0]:.2f} / {load_after[0]:.2f}",
        ),
    ]
    versions = [
        ("Python", platform.python_version()),
        ("offerletters", _git_describe()),
        *[
            (name, _version(name))
            for name in (
                "aiosmtplib",
                "aiokafka",
                "aiosmtpd",
                "fastapi",
                "uvicorn",
                "sqlalchemy",
                "mailmerge",
            )
        ],
        ("Kafka", kafka_version()),
        ("Postfix (smtp-sink)", smtp_sink_version() or "not installed"),
    ]
    settings = [
        (
            "OFFERLETTERS_SMTP_CONNECTIONS (per worker) and loop connections",
            str(args.connections),
        ),
        ("worker settings", _worker_defaults()),
        ("ledger", "SQLite file, fresh per measurement"),
        ("Kafka topic", "fresh per measurement, 12 partitions (the default)"),
        ("API", "OFFERLETTERS_DEV_MODE=true (no key check), JSON logs at INFO"),
        (
            "bare loop letters",
            f"{PREBUILT_LETTERS} pre-built by offerletters preview, used in turn",
        ),
        ("profiling", "py-spy on the API and worker-0" if args.profile else "off"),
    ]
    return report.Environment(command, started, machine, versions, settings)


def _worker_defaults() -> str:
    try:
        from offerletters.config import Settings

        fields = Settings.model_fields
        consumers = fields["worker_consumers"].default
        concurrency = fields["worker_concurrency"].default
    except (ImportError, KeyError):
        return "offerletters defaults"
    return (
        f"defaults: OFFERLETTERS_WORKER_CONSUMERS={consumers},"
        f" OFFERLETTERS_WORKER_CONCURRENCY={concurrency}"
    )


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    return platform.processor() or "unknown"


def _version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


def _git_describe() -> str:
    done = subprocess.run(
        ["git", "describe", "--always", "--dirty"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    return done.stdout.strip() or "unknown"


def _ints(text: str) -> list[int]:
    return [int(part.replace("_", "")) for part in text.split(",") if part.strip()]


def _names(allowed: tuple[str, ...]) -> Callable[[str], list[str]]:
    def parse(text: str) -> list[str]:
        names = [part.strip() for part in text.split(",") if part.strip()]
        unknown = [name for name in names if name not in allowed]
        if unknown:
            raise argparse.ArgumentTypeError(
                f"unknown {', '.join(unknown)}; choose from {', '.join(allowed)}"
            )
        return names

    return parse


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
    print("bench: interrupted; everything it started is stopped", file=sys.stderr)
    sys.exit(130)
