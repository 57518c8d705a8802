"""Child processes for the benchmark: started in their own group, always ended.

Every process the benchmark starts (sinks, API, workers, contenders) goes
through `Processes`, which ends them all, children included, when its block
exits for any reason. `RssSampler` watches their memory while they run.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import IO, Self

import psutil

# A stopped process gets this long to exit on SIGTERM before SIGKILL.
STOP_GRACE_S = 60.0
# How often memory is sampled; ingest and delivery run for seconds, not ms.
RSS_SAMPLE_INTERVAL_S = 0.05
MIB = 1024 * 1024


@dataclass
class Proc:
    """One running child: its name, the Popen handle and where its output goes."""

    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path | None

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def log_tail(self, lines: int = 30) -> str:
        """The end of its log, for error messages."""
        if self.log_path is None or not self.log_path.exists():
            return "(no log)"

        text = self.log_path.read_text(encoding="utf-8", errors="replace")
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, grace_s: float = STOP_GRACE_S) -> int | None:
        """SIGTERM the whole group, SIGKILL it after `grace_s`; safe to call twice."""
        if self.alive():
            _signal_group(self.pid, signal.SIGTERM)
            try:
                self.popen.wait(timeout=grace_s)
            except subprocess.TimeoutExpired:
                _signal_group(self.pid, signal.SIGKILL)
                self.popen.wait()

        # Anything the leader left behind in its group goes too.
        _signal_group(self.pid, signal.SIGKILL)
        return self.popen.returncode


def _signal_group(pgid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signum)


class Processes:
    """The children of one stage; leaving the block ends them, newest first."""

    def __init__(self) -> None:
        self._procs: list[Proc] = []

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop_all()

    def start(
        self,
        name: str,
        argv: Sequence[str],
        *,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
        log_path: Path | None = None,
        stdout: int | IO[bytes] | None = None,
    ) -> Proc:
        """Start `argv` in a new process group.

        stderr goes to `log_path`, and so does stdout unless `stdout` is given.
        """
        log = log_path.open("wb") if log_path is not None else None
        try:
            popen = subprocess.Popen(
                list(argv),
                env=env,
                cwd=cwd,
                stdin=subprocess.DEVNULL,
                stdout=stdout if stdout is not None else log,
                stderr=log if log is not None else subprocess.DEVNULL,
                start_new_session=True,
            )
        finally:
            if log is not None:
                log.close()

        proc = Proc(name, popen, log_path)
        self._procs.append(proc)
        return proc

    def stop_all(self) -> None:
        """Stop every child, newest first, even when stopping one of them fails."""
        with contextlib.ExitStack() as stack:
            for proc in self._procs:
                stack.callback(proc.stop)
            self._procs.clear()


def free_port() -> int:
    """A loopback port the kernel just handed out."""
    return free_ports(1)[0]


def free_ports(count: int) -> list[int]:
    """Distinct loopback ports, held together while asked for so they differ."""
    with contextlib.ExitStack() as stack:
        probes = [stack.enter_context(socket.socket()) for _ in range(count)]
        for probe in probes:
            probe.bind(("127.0.0.1", 0))
        return [int(probe.getsockname()[1]) for probe in probes]


def wait_for_port(port: int, proc: Proc, timeout_s: float = 30.0) -> None:
    """Block until something accepts connections on 127.0.0.1:`port`."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not proc.alive():
            raise RuntimeError(f"{proc.name} exited early:\n{proc.log_tail()}")
        with (
            contextlib.suppress(OSError),
            socket.create_connection(("127.0.0.1", port), timeout=1),
        ):
            return
        time.sleep(0.05)

    raise TimeoutError(f"{proc.name} did not listen on port {port} in {timeout_s} s")


def rss_bytes(pid: int) -> int | None:
    """Resident memory of one process now; None once it is gone."""
    try:
        return int(psutil.Process(pid).memory_info().rss)
    except psutil.Error:
        return None


def cpu_seconds(pid: int) -> float | None:
    """User plus system CPU time a process has used so far; None once it is gone."""
    try:
        times = psutil.Process(pid).cpu_times()
    except psutil.Error:
        return None
    return float(times.user + times.system)


@dataclass
class RssSampler:
    """Samples the resident memory of named processes in a thread; keeps the peak."""

    pids: dict[str, int]
    peaks: dict[str, int] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> Self:
        self._sample()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._sample()

    def peak_mib(self, name: str) -> float | None:
        peak = self.peaks.get(name)
        return None if peak is None else peak / MIB

    def _run(self) -> None:
        while not self._stop.wait(RSS_SAMPLE_INTERVAL_S):
            self._sample()

    def _sample(self) -> None:
        for name, pid in self.pids.items():
            rss = rss_bytes(pid)
            if rss is not None and rss > self.peaks.get(name, 0):
                self.peaks[name] = rss
