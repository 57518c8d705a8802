"""`offerletters send` and `offerletters status`: deliver a roster, follow a batch."""

from __future__ import annotations

import argparse
import asyncio
import sys
import uuid

from offerletters.cli.shared import (
    EXIT_OK,
    EXIT_REJECTED,
    EXIT_UNDELIVERED,
    print_receipt,
    read_roster,
    templates,
)
from offerletters.config import Settings
from offerletters.embedded import running_embedded
from offerletters.ingest import batch_id_for, ingest
from offerletters.ledger import Ledger, LetterState
from offerletters.progress import describe_progress, follow_batch
from offerletters.queue.kafka import KafkaPublisher


def send(args: argparse.Namespace, settings: Settings) -> int:
    """Send a roster: publish to Kafka, or deliver in-process when there is none."""
    data = read_roster(args.roster, settings)
    batch_id = batch_id_for(data, salt=uuid.uuid4().hex) if args.new_batch else None
    if settings.embedded:
        return asyncio.run(_send_embedded(data, batch_id, settings))

    return asyncio.run(_publish(data, batch_id, settings, wait=args.wait))


async def _publish(
    data: bytes, batch_id: str | None, settings: Settings, *, wait: bool
) -> int:
    async with Ledger(settings.database_url) as ledger:
        await ledger.migrate()
        async with KafkaPublisher(settings) as publisher:
            receipt = await ingest(
                data,
                publisher=publisher,
                templates=templates(settings),
                settings=settings,
                ledger=ledger,
                batch_id=batch_id,
            )
        print_receipt(receipt)
        if not receipt.duplicate:
            print(f"queued on Kafka topic {settings.kafka_topic}; workers deliver them")
        if not wait:
            return EXIT_OK

        progress = await follow_batch(ledger, receipt.batch_id)
    return EXIT_UNDELIVERED if progress[LetterState.FAILED] else EXIT_OK


async def _send_embedded(data: bytes, batch_id: str | None, settings: Settings) -> int:
    async with (
        Ledger(settings.database_url) as ledger,
        running_embedded(settings, ledger) as run,
    ):
        await ledger.migrate()
        receipt = await ingest(
            data,
            publisher=run.queue,
            templates=templates(settings),
            settings=settings,
            ledger=ledger,
            batch_id=batch_id,
        )
        print_receipt(receipt)
        await run.queue.drained()

    sent, failed = (
        run.courier.counts[LetterState.SENT],
        run.courier.counts[LetterState.FAILED],
    )
    print(f"delivered {sent}, failed {failed}: {run.where}")
    return EXIT_UNDELIVERED if failed else EXIT_OK


def status(args: argparse.Namespace, settings: Settings) -> int:
    """Print a batch's progress and its failed letters with the server's reply."""
    return asyncio.run(_printstatus(args.batch, settings))


async def _printstatus(batch_id: str, settings: Settings) -> int:
    async with Ledger(settings.database_url) as ledger:
        await ledger.migrate()
        batch = await ledger.find_batch(batch_id)
        if batch is None:
            print(
                f"offerletters: no batch {batch_id} in {ledger.where}", file=sys.stderr
            )
            return EXIT_REJECTED

        progress = await ledger.batch_progress(batch_id)
        failed = await ledger.letters_in(
            batch_id, LetterState.FAILED, limit=50, offset=0
        )

    print(f"batch {batch_id}: {describe_progress(progress)}")
    if not batch.published:
        print("  queueing never finished: upload the roster again to resume")
    for letter in failed:
        print(
            f"  failed: row {letter.row} {letter.recipient_masked}: {letter.last_reply}"
        )
    return EXIT_UNDELIVERED if progress[LetterState.FAILED] else EXIT_OK
