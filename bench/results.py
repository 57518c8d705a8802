"""One measurement's numbers, and the arithmetic shared by every contender."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

BARE = "aiosmtplib loop"
MAILMERGE = "mailmerge"
OFFERLETTERS = "offerletters"


@dataclass
class Measurement:
    """What one contender did with one roster size against one sink."""

    sink: str
    rows: int
    contender: str
    # Worker processes (offerletters only).
    workers: int | None = None
    # From the start (upload, first send, process start) to the last arrival.
    elapsed_s: float | None = None
    letters_per_s: float | None = None
    # offerletters only: upload until the API answered "queued".
    ingest_s: float | None = None
    # offerletters only: from "queued" to the last arrival.
    delivery_per_s: float | None = None
    # Time from "queued" to each letter's arrival at the sink.
    latency_p50_s: float | None = None
    latency_p95_s: float | None = None
    api_rss_before_mib: float | None = None
    api_rss_peak_mib: float | None = None
    worker_rss_peak_mib: list[float] = field(default_factory=list)
    # CPU seconds each process used during the measurement, by name.
    cpu_s: dict[str, float] = field(default_factory=dict)
    # Letters the ledger holds as sent; letters the sink got twice.
    ledger_sent: int | None = None
    duplicates: int | None = None
    error: str | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def api_rss_growth_mib(self) -> float | None:
        if self.api_rss_peak_mib is None or self.api_rss_before_mib is None:
            return None
        return self.api_rss_peak_mib - self.api_rss_before_mib

    @property
    def ingest_rows_per_s(self) -> float | None:
        if not self.ingest_s:
            return None
        return self.rows / self.ingest_s

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


def percentile(sorted_values: list[float], fraction: float) -> float:
    """Nearest-rank percentile of values sorted ascending."""
    if not sorted_values:
        raise ValueError("no values")

    rank = max(1, math.ceil(fraction * len(sorted_values)))
    return sorted_values[rank - 1]


def latencies(arrivals: list[float], since: float) -> tuple[float, float]:
    """p50 and p95 of the time from `since` to each arrival.

    A letter can reach the sink a moment before the API's answer reaches the
    benchmark (the batch is committed just before the answer is sent); such
    a letter counts as zero, not as negative.
    """
    waited = sorted(max(0.0, arrival - since) for arrival in arrivals)
    return percentile(waited, 0.50), percentile(waited, 0.95)
