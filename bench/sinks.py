"""The SMTP sinks letters are sent to, each in its own process, and their clocks.

Two kinds: `aiosmtpd` (bench/sink_server.py, which reports the time and
Message-ID of every message it accepts) and Postfix's `smtp-sink` (a fast C
sink; its `-c` counters are read as they change and timed on arrival here).
Either way the benchmark sees one list of arrival times on the machine-wide
monotonic clock, which is all it needs for throughput and latency.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from bench.procs import Proc, Processes, free_port, wait_for_port

SINK_KINDS = ("aiosmtpd", "smtp-sink")
SMTP_SINK = Path("/usr/sbin/smtp-sink")
# smtp-sink's listen backlog and connection cap: far above what we open.
SMTP_SINK_BACKLOG = 1024
READY_TIMEOUT_S = 30.0
# A sink that accepts nothing new for this long has been given up on.
DEFAULT_STALL_S = 120.0
# Messages a sender had accepted before it exited are counted within this.
SENDER_GONE_GRACE_S = 5.0
COUNTER = re.compile(rb"mesg=(\d+)")
# What bench/sink_server.py writes for a message without a Message-ID.
NO_MESSAGE_ID = "-"


class SinkStalled(TimeoutError):
    """The sink stopped receiving before the expected count arrived."""


@dataclass
class Sink:
    """A running sink: where it listens and when each message arrived."""

    kind: str
    port: int
    proc: Proc
    _arrivals: list[float] = field(default_factory=list)
    _message_ids: list[str] = field(default_factory=list)
    _changed: threading.Condition = field(default_factory=threading.Condition)
    _reader: threading.Thread | None = None

    @property
    def count(self) -> int:
        with self._changed:
            return len(self._arrivals)

    def arrivals(self) -> list[float]:
        with self._changed:
            return list(self._arrivals)

    def duplicates(self) -> int | None:
        """Messages that arrived more than once (same Message-ID); None if unknown.

        Only the aiosmtpd sink reads Message-IDs, and only messages that carry
        one count (mailmerge's have none).
        """
        with self._changed:
            ids = [found for found in self._message_ids if found != NO_MESSAGE_ID]
        if not ids:
            return None
        return len(ids) - len(set(ids))

    def wait_for(
        self,
        count: int,
        *,
        deadline_s: float,
        stall_s: float = DEFAULT_STALL_S,
        sender: Proc | None = None,
    ) -> float:
        """Block until `count` messages arrived; return the time of the last one.

        Gives up when nothing arrives for `stall_s`, after `deadline_s` in
        all, or shortly after `sender` (the process sending) has exited.
        """
        start = time.monotonic()
        last_progress, seen = start, -1
        sender_gone_at: float | None = None
        with self._changed:
            while len(self._arrivals) < count:
                now = time.monotonic()
                if len(self._arrivals) != seen:
                    seen, last_progress = len(self._arrivals), now
                if sender is not None and sender_gone_at is None and not sender.alive():
                    sender_gone_at = now
                problem = self._problem(now, sender_gone_at)
                if problem is None and now - start > deadline_s:
                    problem = f"the deadline of {deadline_s:.0f} s passed"
                if problem is None and now - last_progress > stall_s:
                    problem = f"none arrived for {stall_s:.0f} s"
                if problem is not None:
                    raise SinkStalled(
                        f"{self.kind}: {len(self._arrivals)} of {count} messages"
                        f" arrived; {problem}"
                    )
                self._changed.wait(timeout=0.5)

            return self._arrivals[count - 1]

    def _problem(self, now: float, sender_gone_at: float | None) -> str | None:
        if not self.proc.alive():
            return f"the sink exited:\n{self.proc.log_tail()}"
        if sender_gone_at is not None and now - sender_gone_at > SENDER_GONE_GRACE_S:
            return "the sender exited"
        return None

    def _note(self, times: list[float], message_ids: list[str]) -> None:
        with self._changed:
            self._arrivals.extend(times)
            self._message_ids.extend(message_ids)
            self._changed.notify_all()


def available_kinds() -> list[str]:
    """The sinks this machine can run."""
    return [kind for kind in SINK_KINDS if kind != "smtp-sink" or SMTP_SINK.exists()]


@contextlib.contextmanager
def running_sink(kind: str, log_dir: Path) -> Iterator[Sink]:
    """Start a fresh sink of `kind`; it is stopped when the block exits."""
    with Processes() as procs:
        if kind == "aiosmtpd":
            sink = _start_aiosmtpd(procs, log_dir)
        elif kind == "smtp-sink":
            sink = _start_smtp_sink(procs, log_dir)
        else:
            raise ValueError(f"unknown sink {kind!r}; choose from {SINK_KINDS}")
        yield sink


def _start_aiosmtpd(procs: Processes, log_dir: Path) -> Sink:
    proc = procs.start(
        "aiosmtpd-sink",
        [sys.executable, "-m", "bench.sink_server", "--port", "0"],
        cwd=Path(__file__).resolve().parents[1],
        log_path=log_dir / "sink-aiosmtpd.log",
        stdout=subprocess.PIPE,
    )
    stdout = _stdout_of(proc)
    first = stdout.readline().decode().split()
    if len(first) != 2 or first[0] != "ready":
        raise RuntimeError(f"the aiosmtpd sink did not start:\n{proc.log_tail()}")

    sink = Sink("aiosmtpd", int(first[1]), proc)
    sink._reader = threading.Thread(
        target=_read_arrival_lines, args=(stdout, sink), daemon=True
    )
    sink._reader.start()
    return sink


def _read_arrival_lines(stdout: IO[bytes], sink: Sink) -> None:
    """Each line is `TIME MESSAGE_ID`, written by bench/sink_server.py."""
    for line in stdout:
        accepted_at, _, message_id = line.decode().partition(" ")
        sink._note([float(accepted_at)], [message_id.strip()])


def _start_smtp_sink(procs: Processes, log_dir: Path) -> Sink:
    if not SMTP_SINK.exists():
        raise RuntimeError(
            f"{SMTP_SINK} is missing; install Postfix: apt-get install -y postfix"
        )

    port = free_port()
    # As root, smtp-sink insists on dropping to another user after binding.
    user_args = ["-u", "nobody"] if os.geteuid() == 0 else []
    proc = procs.start(
        "smtp-sink",
        [
            str(SMTP_SINK),
            "-c",
            *user_args,
            "-m",
            str(SMTP_SINK_BACKLOG),
            f"127.0.0.1:{port}",
            str(SMTP_SINK_BACKLOG),
        ],
        log_path=log_dir / "sink-smtp-sink.log",
        stdout=subprocess.PIPE,
    )
    sink = Sink("smtp-sink", port, proc)
    sink._reader = threading.Thread(
        target=_read_counters, args=(_stdout_of(proc), sink), daemon=True
    )
    sink._reader.start()
    wait_for_port(port, proc, READY_TIMEOUT_S)
    return sink


def _read_counters(stdout: IO[bytes], sink: Sink) -> None:
    """smtp-sink -c rewrites `sess=N quit=N mesg=N` after every message; time it.

    The counter reaches us within a read of the pipe, so each arrival is
    timed a fraction of a millisecond late, the same for every message.
    """
    fd = stdout.fileno()
    seen = 0
    pending = b""
    while chunk := os.read(fd, 65536):
        received_at = time.monotonic()
        pending += chunk
        *updates, pending = re.split(rb"[\r\n]", pending)
        counts = [int(m.group(1)) for u in updates if (m := COUNTER.search(u))]
        if counts and counts[-1] > seen:
            sink._note([received_at] * (counts[-1] - seen), [])
            seen = counts[-1]


def _stdout_of(proc: Proc) -> IO[bytes]:
    if proc.popen.stdout is None:
        raise RuntimeError(f"{proc.name} has no stdout pipe")
    return proc.popen.stdout


def smtp_sink_version() -> str | None:
    """Postfix's version, which smtp-sink ships with; None if not installed."""
    postconf = shutil.which("postconf")
    if postconf is None or not SMTP_SINK.exists():
        return None

    done = subprocess.run(
        [postconf, "-d", "mail_version"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    return done.stdout.strip().partition("=")[2].strip() or None
