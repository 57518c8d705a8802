"""The results as one table for the terminal and as docs/benchmarks.md.

Ratios compare contenders measured in the same run, against the same sink
and the same roster size, never numbers from different runs.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from bench.results import BARE, MAILMERGE, OFFERLETTERS, Measurement

DASH = "-"

# The goals the numbers are read against; see "Targets" in the document.
TARGET_VS_BARE = 0.8
TARGET_VS_MAILMERGE = 3.0
TARGET_INGEST_ROWS = 100_000
TARGET_INGEST_S = 10.0
TARGET_API_GROWTH_MIB = 100.0
TARGET_WORKER_FLAT = 0.2

METHOD = """\
## What is measured

Every number in one table comes from one run of the command above, on one
machine: ratios are taken between contenders measured minutes apart, against
the same sink and the same roster size.

- **Rosters** are written by `samples/make_roster.py` (seed 2027): real xlsx
  files with names in many scripts, nine columns, every row valid.
- **Sinks** run in their own process on 127.0.0.1 and accept every message.
  `aiosmtpd` is `bench/sink_server.py`: it notes the time (machine-wide
  monotonic clock) and Message-ID of each message as it accepts it, so it
  also counts duplicates. `smtp-sink` is Postfix's C test server run with
  `-c`; its running counter is read from its output as it changes and timed
  on arrival. A fresh sink is started for every measurement.
- **aiosmtplib loop** (the practical limit): `bench/bare_loop.py` in its own
  process opens the same number of connections as one offerletters worker
  and sends pre-built messages (the bytes `offerletters preview` builds for
  the first rows of the same roster, used in turn) back to back; the clock
  runs from its first send to the sink's last arrival.
- **mailmerge** (the tool people reach for today): `mailmerge --no-dry-run
  --no-limit --output-format raw` on the same rows as a CSV, with the same
  letter (text and HTML parts from `templates/`) as its template; money and
  dates come preformatted in the CSV, as mailmerge has no filters. It opens
  one SMTP connection per message and sends one at a time, by design. The
  clock runs from starting it to the sink's last arrival.
- **offerletters**: a Kafka broker from `scripts/kafka-broker`, one API
  process (`python -m offerletters api`) and 1 or 2 worker processes
  (`python -m offerletters worker`), each measurement with a fresh topic,
  consumer group and SQLite ledger file. The API and the workers are started
  first, and the clock starts only once every worker holds its partitions.
  - *letters/s*: rows / (last letter accepted by the sink - upload started).
  - *ingest*: upload started → the API's `202` (every row validated, rendered,
    recorded and committed to Kafka in one transaction); rows/s from that.
  - *p50 / p95*: time from "queued" to each letter's arrival at the sink.
    "Queued" is the moment the API answered: the batch is one Kafka
    transaction and workers read committed messages only, so no letter can
    be sent before it (the ledger's `letters.queued_at` is written earlier,
    before the transaction commits, and would count the rest of the upload
    as queueing). With the whole batch queued at once, these are drain times
    and grow with the batch.
  - *RSS*: resident memory sampled every 50 ms with psutil; API growth is its
    peak minus its size just before the upload.
  - the ledger is checked afterwards: every letter must be `sent` in it.
- CPU seconds per process (psutil) are in the second table: on a small
  machine the sink, the broker and the pipeline share the same cores, and
  this shows who used them.

Reading the numbers: a batch is published in one Kafka transaction, so no
letter can leave before the whole roster is ingested; offerletters' total is
ingest plus delivery, one after the other, while the loop only delivers.

The full suite (three sizes, two sinks, one and two workers) takes about an
hour on two cores, most of it mailmerge at 100,000 rows, which sends one
letter per connection at a steady rate. Run it on a quiet machine: the load
average before and after is recorded above.

## Profiling

```sh
uv run --group bench python -m bench.run --sizes 10000 --workers 1 \\
    --sinks aiosmtpd --contenders offerletters --profile --no-out
uv run --group bench python -m bench.micro --rows 2000
```

`--profile` attaches py-spy to the API and the first worker and writes
`profile-*.summary.txt` (self time by package and function, inclusive time)
next to their logs; throughput in such a run is lowered by the sampling.
`bench.micro` times each per-letter step in one process: reading a row,
rendering, the Kafka payload, building the MIME message's bytes, and
compressing producer batches.

Where the time goes, what was changed to get here and what is left:
[performance.md](performance.md).
"""


@dataclass(frozen=True)
class Environment:
    """Where and with what the numbers were measured."""

    command: str
    started: str
    machine: list[tuple[str, str]]
    versions: list[tuple[str, str]]
    settings: list[tuple[str, str]]


def terminal_table(results: Sequence[Measurement]) -> str:
    return _markdown_table(_headers(), [_row(r, results) for r in results])


def document(
    results: Sequence[Measurement], env: Environment, notes: Sequence[str]
) -> str:
    """docs/benchmarks.md, whole."""
    lines = [
        "# Benchmarks",
        "",
        "Written by `bench/run.py`; do not edit by hand, run the command again.",
        f"Measured {env.started}.",
        "",
        "## Command",
        "",
        "```sh",
        env.command,
        "```",
        "",
        "It starts and stops everything it needs (Kafka broker, sinks, API,",
        "workers) on 127.0.0.1, and keeps logs, ledgers and profiles under",
        "`.cache/bench/`. Smaller runs: `--sizes 1000 --workers 1 --sinks aiosmtpd`.",
        "Postfix's `smtp-sink` is used when installed",
        "(`DEBIAN_FRONTEND=noninteractive apt-get install -y postfix`).",
        "",
        "## Results",
        "",
        _markdown_table(_headers(), [_row(r, results) for r in results]),
        "",
        "letters/s: from the upload (or the first send) to the last letter at the",
        "sink. send/s: offerletters from queued to the last letter, which is what",
        "the loop and mailmerge measure too. x loop and x mailmerge: offerletters'",
        "letters/s divided by theirs, same sink and rows. RSS in MiB; in brackets",
        "the API's growth during the upload.",
        "",
        "### CPU seconds per 1,000 letters, by process",
        "",
        _cpu_table(results),
        "",
        "## Targets",
        "",
        *_targets(results),
        "",
    ]
    if notes:
        lines += ["## Notes from this run", "", *[f"- {note}" for note in notes], ""]
    lines += [
        METHOD,
        "## Machine",
        "",
        *_pairs(env.machine),
        "",
        "## Versions",
        "",
        *_pairs(env.versions),
        "",
        "## Settings",
        "",
        *_pairs(env.settings),
        "",
    ]
    return "\n".join(lines)


def _headers() -> list[str]:
    return [
        "sink",
        "rows",
        "contender",
        "letters/s",
        "send/s",
        "total s",
        "ingest s (rows/s)",
        "p50 / p95 s",
        "API RSS",
        "worker RSS",
        "x loop",
        "x mailmerge",
    ]


def _row(result: Measurement, everything: Sequence[Measurement]) -> list[str]:
    contender = result.contender
    if result.workers is not None:
        plural = "s" if result.workers > 1 else ""
        contender = f"{contender}, {result.workers} worker{plural}"
    if result.error is not None:
        return [
            result.sink,
            f"{result.rows:,}",
            contender,
            f"failed: {result.error.splitlines()[0][:80]}",
            *[DASH] * 8,
        ]

    ingest = DASH
    if result.ingest_s is not None and result.ingest_rows_per_s is not None:
        ingest = f"{result.ingest_s:.2f} ({result.ingest_rows_per_s:,.0f})"
    latency = DASH
    if result.latency_p50_s is not None and result.latency_p95_s is not None:
        latency = f"{result.latency_p50_s:.2f} / {result.latency_p95_s:.2f}"
    api = DASH
    growth = result.api_rss_growth_mib
    if result.api_rss_peak_mib is not None and growth is not None:
        api = f"{result.api_rss_peak_mib:.0f} (+{growth:.0f})"
    workers = " / ".join(f"{mib:.0f}" for mib in result.worker_rss_peak_mib) or DASH

    return [
        result.sink,
        f"{result.rows:,}",
        contender,
        _number(result.letters_per_s),
        _number(result.delivery_per_s),
        _number(result.elapsed_s, ".1f"),
        ingest,
        latency,
        api,
        workers,
        _ratio(result, everything, BARE),
        _ratio(result, everything, MAILMERGE),
    ]


def _ratio(result: Measurement, everything: Sequence[Measurement], other: str) -> str:
    if result.contender != OFFERLETTERS:
        return DASH
    value = ratio(result, _find(everything, result.sink, result.rows, other))
    return DASH if value is None else f"{value:.2f}"


def ratio(result: Measurement, baseline: Measurement | None) -> float | None:
    if baseline is None or not baseline.letters_per_s or not result.letters_per_s:
        return None
    return result.letters_per_s / baseline.letters_per_s


def _find(
    results: Iterable[Measurement],
    sink: str,
    rows: int,
    contender: str,
    workers: int | None = None,
) -> Measurement | None:
    for result in results:
        if (result.sink, result.rows, result.contender, result.workers) == (
            sink,
            rows,
            contender,
            workers,
        ) and result.error is None:
            return result
    return None


def _cpu_table(results: Sequence[Measurement]) -> str:
    names = sorted({name for r in results for name in r.cpu_s})
    rows = []
    for result in results:
        if result.error is not None or not result.cpu_s:
            continue
        label = result.contender
        if result.workers is not None:
            label += f", {result.workers}w"
        per_thousand = [
            f"{1000 * result.cpu_s[name] / result.rows:.2f}"
            if name in result.cpu_s
            else DASH
            for name in names
        ]
        rows.append([result.sink, f"{result.rows:,}", label, *per_thousand])
    return _markdown_table(["sink", "rows", "contender", *names], rows)


def _targets(results: Sequence[Measurement]) -> list[str]:
    """Each goal, read off this run's numbers, per sink."""
    lines: list[str] = []
    for sink in sorted({r.sink for r in results}):
        mine = [r for r in results if r.sink == sink]
        sizes = sorted({r.rows for r in mine})
        lines.append(f"**{sink}**")
        lines.append("")
        for rows in sizes:
            one = _find(mine, sink, rows, OFFERLETTERS, workers=1)
            if one is None:
                continue
            vs_bare = ratio(one, _find(mine, sink, rows, BARE))
            vs_mm = ratio(one, _find(mine, sink, rows, MAILMERGE))
            lines.append(
                f"- {rows:,} rows, 1 worker: "
                f"{_verdict(vs_bare, TARGET_VS_BARE, 'of the aiosmtplib loop')}; "
                f"{_verdict(vs_mm, TARGET_VS_MAILMERGE, 'x mailmerge')}"
            )
        lines += _ingest_and_memory(mine, sink)
        lines.append("")
    return lines


def _ingest_and_memory(mine: Sequence[Measurement], sink: str) -> list[str]:
    lines = []
    big = [
        r
        for r in mine
        if r.contender == OFFERLETTERS and r.rows >= TARGET_INGEST_ROWS and not r.error
    ]
    if not big:
        lines.append(
            f"- ingest of {TARGET_INGEST_ROWS:,} rows: not measured in this run"
        )
    for result in big:
        growth = result.api_rss_growth_mib or 0.0
        ingest_ok = (result.ingest_s or 0) < TARGET_INGEST_S
        memory_ok = growth < TARGET_API_GROWTH_MIB
        lines.append(
            f"- ingest of {result.rows:,} rows ({result.workers}w run):"
            f" {result.ingest_s:.1f} s ({'meets' if ingest_ok else 'misses'}"
            f" < {TARGET_INGEST_S:.0f} s), API grew {growth:.0f} MiB"
            f" ({'meets' if memory_ok else 'misses'} < {TARGET_API_GROWTH_MIB:.0f})"
        )

    ones = sorted(
        (r for r in mine if r.contender == OFFERLETTERS and r.workers == 1),
        key=lambda r: r.rows,
    )
    peaks = [
        (r.rows, max(r.worker_rss_peak_mib)) for r in ones if r.worker_rss_peak_mib
    ]
    if len(peaks) >= 2:
        (small_rows, small), (big_rows, large) = peaks[-2], peaks[-1]
        change = large / small - 1
        ok = abs(change) <= TARGET_WORKER_FLAT
        lines.append(
            f"- worker peak RSS {small:.0f} MiB at {small_rows:,} rows,"
            f" {large:.0f} MiB at {big_rows:,}: {change:+.0%}"
            f" ({'meets' if ok else 'misses'} ±{TARGET_WORKER_FLAT:.0%})"
        )
    return lines


def _verdict(value: float | None, goal: float, what: str) -> str:
    if value is None:
        return f"{what}: not measured"
    shown = f"{value:.0%}" if goal < 1 else f"{value:.1f}"
    return f"{shown} {what} ({'meets' if value >= goal else 'misses'} {goal:g})"


def _number(value: float | None, spec: str = ",.0f") -> str:
    return DASH if value is None else format(value, spec)


def _markdown_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [
        max(len(str(cell)) for cell in column)
        for column in zip(headers, *rows, strict=False)
    ]

    def line(cells: Sequence[str]) -> str:
        padded = (str(c).ljust(w) for c, w in zip(cells, widths, strict=False))
        return "| " + " | ".join(padded) + " |"

    return "\n".join(
        [line(headers), "| " + " | ".join("-" * w for w in widths) + " |"]
        + [line(row) for row in rows]
    )


def _pairs(pairs: Sequence[tuple[str, str]]) -> list[str]:
    return [f"- {key}: {value}" for key, value in pairs]
