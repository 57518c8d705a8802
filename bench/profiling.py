"""Sampling profiles of the API and a worker with py-spy, summed up as text.

`Profiler.attach` starts `py-spy record` on a running process; `finish`,
called after that process was stopped, waits for py-spy to write its raw
(collapsed) stacks and writes a summary beside them: where the CPU time went
by package, by function (self) and by function with its callees
(inclusive). `python -m bench.profiling FILE.txt` summarises a file again.
"""

from __future__ import annotations

import argparse
import re
import shutil
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from bench.procs import Proc, Processes

SAMPLES_PER_S = 100
FINISH_TIMEOUT_S = 120.0
TOP = 25
# `function (path/to/file.py)` as py-spy writes a frame with --nolineno.
FRAME = re.compile(r"^(?P<function>.*) \((?P<path>[^()]*)\)$")
# Threads parked in a blocking call show this Python frame on top, and py-spy
# does not always see that they sleep: thread-pool workers waiting for a job,
# aiosqlite's thread waiting for a query, the event loop waiting in epoll.
IDLE_LEAVES = frozenset(
    {
        "_worker (futures/thread.py)",
        "_connection_worker_thread (aiosqlite/core.py)",
        "EpollSelector.select (python3.11/selectors.py)",
        "Condition.wait (python3.11/threading.py)",
    }
)


@dataclass
class Profiler:
    """py-spy recording one process until it exits."""

    target: Proc
    spy: Proc
    raw_path: Path

    @classmethod
    def attach(cls, procs: Processes, target: Proc, out_dir: Path) -> Profiler:
        beside = Path(sys.executable).with_name("py-spy")
        py_spy = str(beside) if beside.exists() else shutil.which("py-spy") or "py-spy"
        raw_path = out_dir / f"profile-{target.name}.txt"
        spy = procs.start(
            f"py-spy-{target.name}",
            [
                py_spy,
                "record",
                "--pid",
                str(target.pid),
                "--rate",
                str(SAMPLES_PER_S),
                "--format",
                "raw",
                "--nolineno",
                "--full-filenames",
                "--output",
                str(raw_path),
            ],
            log_path=out_dir / f"py-spy-{target.name}.log",
        )
        return cls(target, spy, raw_path)

    def finish(self) -> str:
        """Wait for the profile (its target must be stopped); summarise it."""
        self.spy.popen.wait(timeout=FINISH_TIMEOUT_S)
        if not self.raw_path.exists():
            return f"no profile of {self.target.name}: {self.spy.log_tail(5)}"

        summary_path = self.raw_path.with_suffix(".summary.txt")
        summary_path.write_text(summarise(self.raw_path), encoding="utf-8")
        return f"profile of {self.target.name}: {summary_path}"


def summarise(raw_path: Path, top: int = TOP) -> str:
    """Self time by package and by function, and inclusive time by function."""
    by_area: Counter[str] = Counter()
    by_self: Counter[str] = Counter()
    by_inclusive: Counter[str] = Counter()
    total = idle = 0
    idle_functions = {leaf.split(" (")[0] for leaf in IDLE_LEAVES}
    for line in raw_path.read_text(encoding="utf-8").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue

        count = int(count_text)
        frames = [_frame(frame) for frame in stack.split(";")]
        leaf_function, leaf_area = frames[-1]
        if leaf_function.split(" (")[0] in idle_functions:
            idle += count
            continue

        total += count
        by_self[leaf_function] += count
        by_area[leaf_area] += count
        for function in {function for function, _area in frames}:
            by_inclusive[function] += count

    if not total:
        return f"{raw_path}: no samples\n"

    def table(title: str, counts: Counter[str]) -> list[str]:
        rows = [
            f"  {100 * n / total:5.1f}%  {key}" for key, n in counts.most_common(top)
        ]
        return [title, *rows, ""]

    return "\n".join(
        [
            f"{raw_path.name}: {total} busy samples at {SAMPLES_PER_S}/s"
            f" (~{total / SAMPLES_PER_S:.1f} s running or ready to run); {idle}"
            " samples of threads parked in a blocking call left out",
            "",
            *table("self time by package", by_area),
            *table("self time by function", by_self),
            *table("inclusive time by function (itself and its callees)", by_inclusive),
        ]
    )


def _frame(text: str) -> tuple[str, str]:
    """A frame as `function (short/path.py)` and the package it belongs to."""
    found = FRAME.match(text)
    if found is None:
        return text, "other"

    path = found["path"]
    short = "/".join(path.split("/")[-2:])
    return f"{found['function']} ({short})", _area(path)


def _area(path: str) -> str:
    """`jinja2`, `stdlib email`, `offerletters.letters`, ... for a source path."""
    if "site-packages/" in path:
        return path.split("site-packages/")[-1].split("/")[0].removesuffix(".py")
    if "/src/offerletters/" in path:
        module = path.split("/src/offerletters/")[-1].removesuffix(".py")
        return "offerletters." + module.replace("/", ".")
    stdlib = re.search(r"/lib/python3\.\d+/(.+)", path)
    if stdlib:
        return "stdlib " + stdlib.group(1).split("/")[0].removesuffix(".py")
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description="Summarise a py-spy raw profile.")
    parser.add_argument("raw", type=Path, help="py-spy record --format raw output")
    parser.add_argument("--top", type=int, default=TOP)
    args = parser.parse_args()
    print(summarise(args.raw, args.top))


if __name__ == "__main__":
    main()
