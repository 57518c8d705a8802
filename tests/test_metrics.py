"""Metrics: what deliveries and ingest count, as Prometheus would scrape it."""

from __future__ import annotations

import itertools

import httpx
from prometheus_client import REGISTRY, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from offerletters.config import Settings
from offerletters.delivery import Courier
from offerletters.ingest import ingest
from offerletters.ledger import Ledger, LetterState
from offerletters.letters import LetterTemplates
from offerletters.mailer import SmtpMailer
from offerletters.metrics import Health, MetricsServer
from offerletters.outcomes import OutcomeBook
from offerletters.queue.memory import MemoryQueue
from tests import rosters
from tests.rosters import Sheet, candidate, roster
from tests.support.smtp import SmtpSink
from tests.test_mailer import make_letter

Samples = dict[str, float]


def scrape() -> Samples:
    """Every offerletters sample in the default registry, by name (unlabelled)."""
    text = generate_latest(REGISTRY).decode()
    return {
        sample.name: sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name.startswith("offerletters_") and not sample.labels
    }


def change(before: Samples, after: Samples) -> Samples:
    """How much each sample moved; the registry is shared by the whole run."""
    return {name: after[name] - before.get(name, 0.0) for name in after}


async def test_delivering_letters_counts_sent_failed_retried_and_sends(
    smtp_settings: Settings, smtp: SmtpSink
) -> None:
    """Four letters delivered (one after a 451), one refused: the counters, the
    send histogram and the gauges say exactly that."""
    smtp.refuse("candidate4@example.com")
    first_try = itertools.count()
    smtp.judge_with(
        lambda address: (
            "451 4.3.0 Try again later"
            if address == "candidate5@example.com" and next(first_try) == 0
            else None
        )
    )
    mailer = SmtpMailer(smtp_settings)
    before = scrape()

    async with Ledger(smtp_settings.database_url) as ledger:
        await ledger.migrate()
        async with OutcomeBook(ledger) as book:
            courier = Courier(mailer, ledger, book, MemoryQueue(), max_attempts=3)
            await courier.handle([make_letter(row) for row in range(1, 6)])
    while_open = change(before, scrape())
    await mailer.stop()
    after = change(before, scrape())

    assert courier.counts == {LetterState.SENT: 4, LetterState.FAILED: 1}
    assert after["offerletters_letters_sent_total"] == 4
    assert after["offerletters_letters_failed_total"] == 1
    assert after["offerletters_letters_retried_total"] == 1
    assert after["offerletters_smtp_send_seconds_count"] == 6
    assert after["offerletters_smtp_send_seconds_sum"] > 0
    assert after["offerletters_letters_in_flight"] == 0
    assert while_open["offerletters_smtp_connections_open"] >= 1
    assert after["offerletters_smtp_connections_open"] == 0


async def test_a_published_batch_counts_its_letters_and_rows(
    smtp_settings: Settings,
) -> None:
    """Ingest counts every letter of a published batch as queued, and the batch's
    rows once in the rows-per-batch histogram."""
    data = rosters.xlsx(
        Sheet(
            "Hires",
            roster(
                *(
                    candidate(f"Candidate {n}", f"candidate{n}@example.com")
                    for n in range(1, 8)
                )
            ),
        )
    )
    templates = LetterTemplates.load(
        smtp_settings.templates_dir,
        locale=smtp_settings.locale,
        currency=smtp_settings.currency,
    )
    before = scrape()

    async with Ledger(smtp_settings.database_url) as ledger:
        await ledger.migrate()
        receipt = await ingest(
            data,
            publisher=MemoryQueue(),
            templates=templates,
            settings=smtp_settings,
            ledger=ledger,
        )
        again = await ingest(
            data,
            publisher=MemoryQueue(),
            templates=templates,
            settings=smtp_settings,
            ledger=ledger,
        )
    moved = change(before, scrape())

    assert receipt.letters == 7
    assert again.duplicate
    assert moved["offerletters_letters_queued_total"] == 7
    assert moved["offerletters_ingest_rows_count"] == 1
    assert moved["offerletters_ingest_rows_sum"] == 7


async def test_the_metrics_server_serves_metrics_and_probes() -> None:
    """GET /metrics is the Prometheus text; a probe answers 200 or 503 with JSON;
    anything else is 404."""
    healthy = True

    async def probe() -> Health:
        return Health(healthy, {"status": "fine" if healthy else "poorly"})

    async with (
        MetricsServer(0, {"/healthz": probe}, host="127.0.0.1") as server,
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}") as http,
    ):
        metrics = await http.get("/metrics")
        fine = await http.get("/healthz")
        healthy = False
        poorly = await http.get("/healthz?verbose=1")
        missing = await http.get("/nothing")
        posted = await http.post("/metrics")

    assert metrics.status_code == 200
    assert metrics.headers["content-type"].startswith("text/plain")
    assert "offerletters_letters_sent_total" in metrics.text
    assert (fine.status_code, fine.json()) == (200, {"ok": True, "status": "fine"})
    assert (poorly.status_code, poorly.json()["status"]) == (503, "poorly")
    assert missing.status_code == 404
    assert posted.status_code == 405
