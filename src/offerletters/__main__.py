"""The command line: `offerletters api | worker | send | status | validate | preview`.

Each command builds Settings and logging here, at the entrypoint, and passes
them down. Reports for people go to stdout; structured logs go to stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
import uuid
from collections.abc import Sequence
from pathlib import Path

import pydantic
import structlog
import uvicorn

from offerletters import logs
from offerletters.api import create_app
from offerletters.config import Settings
from offerletters.embedded import running_embedded
from offerletters.errors import (
    ConfigError,
    OfferLettersError,
    QueueUnavailable,
    RosterUnreadable,
)
from offerletters.ingest import BatchReceipt, batch_id_for, ingest
from offerletters.ledger import Ledger, LetterState
from offerletters.letters import LetterTemplates
from offerletters.preview import Discard, FolderPublisher
from offerletters.progress import describe_progress, follow_batch
from offerletters.queue.kafka import KafkaPublisher
from offerletters.roster import RosterRejected, RowError
from offerletters.worker import run_worker

# Exit codes, so scripts can tell the cases apart.
EXIT_OK = 0
EXIT_REJECTED = 1  # the roster or its letters have problems; nothing was sent
EXIT_CONFIG = 2  # the settings cannot work, or the service cannot be reached
EXIT_UNDELIVERED = 3  # the batch was accepted but some letters failed

log = structlog.get_logger("offerletters")


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = Settings()
    except pydantic.ValidationError as exc:
        print(_settings_problem(exc), file=sys.stderr)
        return EXIT_CONFIG

    logs.configure(settings.log_level)
    try:
        code: int = args.command(args, settings)
    except RosterRejected as exc:
        print(
            f"the roster was rejected, nothing was sent: {len(exc.errors)} problem(s)"
        )
        _print_row_errors(exc.errors)
        return EXIT_REJECTED
    except (ConfigError, QueueUnavailable) as exc:
        print(f"offerletters: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except OfferLettersError as exc:
        print(f"offerletters: {exc}", file=sys.stderr)
        return EXIT_REJECTED
    return code


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="offerletters",
        description="Send a personalised offer letter to every candidate in a roster.",
    )
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    api = commands.add_parser("api", help="serve the HTTP API")
    api.add_argument("--host", default="127.0.0.1")
    api.add_argument("--port", type=int, default=8000)
    api.set_defaults(command=_api)

    worker = commands.add_parser("worker", help="deliver letters from Kafka")
    worker.set_defaults(command=_worker)

    send = commands.add_parser("send", help="validate a roster and send its letters")
    send.add_argument("roster", type=Path)
    send.add_argument(
        "--wait",
        action="store_true",
        help="with Kafka: show progress until every letter has an outcome",
    )
    send.add_argument(
        "--new-batch",
        action="store_true",
        help="send even if this roster was sent before",
    )
    send.set_defaults(command=_send)

    status = commands.add_parser("status", help="show how far a batch has come")
    status.add_argument("batch")
    status.set_defaults(command=_status)

    validate = commands.add_parser("validate", help="report every problem in a roster")
    validate.add_argument("roster", type=Path)
    validate.set_defaults(command=_validate)

    preview = commands.add_parser("preview", help="write every letter to a folder")
    preview.add_argument("roster", type=Path)
    preview.add_argument("--out", type=Path, default=Path("preview"))
    preview.set_defaults(command=_preview)
    return parser


def _api(args: argparse.Namespace, settings: Settings) -> int:
    app = create_app(settings)
    uvicorn.run(app, host=args.host, port=args.port, log_config=None)
    return EXIT_OK


def _worker(args: argparse.Namespace, settings: Settings) -> int:
    async def work() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        await run_worker(settings, stop)

    asyncio.run(work())
    return EXIT_OK


def _send(args: argparse.Namespace, settings: Settings) -> int:
    """Send a roster: publish to Kafka, or deliver in-process when there is none."""
    data = _read_roster(args.roster, settings)
    batch_id = batch_id_for(data, key=uuid.uuid4().hex) if args.new_batch else None
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
                templates=_templates(settings),
                settings=settings,
                ledger=ledger,
                batch_id=batch_id,
            )
        _print_receipt(receipt)
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
            templates=_templates(settings),
            settings=settings,
            ledger=ledger,
            batch_id=batch_id,
        )
        _print_receipt(receipt)
        await run.queue.drained()

    sent, failed = (
        run.courier.counts[LetterState.SENT],
        run.courier.counts[LetterState.FAILED],
    )
    print(f"delivered {sent}, failed {failed}: {run.where}")
    return EXIT_UNDELIVERED if failed else EXIT_OK


def _status(args: argparse.Namespace, settings: Settings) -> int:
    """Print a batch's progress and its failed letters with the server's reply."""
    return asyncio.run(_print_status(args.batch, settings))


async def _print_status(batch_id: str, settings: Settings) -> int:
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


def _validate(args: argparse.Namespace, settings: Settings) -> int:
    """Report every row error and note; exit 0 only for a clean roster."""
    data = _read_roster(args.roster, settings)
    receipt = asyncio.run(
        ingest(
            data,
            publisher=Discard(),
            templates=_templates(settings),
            settings=settings,
            all_or_nothing=False,
        )
    )
    _print_receipt(receipt)
    if receipt.errors:
        print(f"{len(receipt.errors)} row error(s); `send` sends nothing until fixed:")
        _print_row_errors(receipt.errors)
        return EXIT_REJECTED

    print("the roster is clean: nothing was sent")
    return EXIT_OK


def _preview(args: argparse.Namespace, settings: Settings) -> int:
    """Write each good row's letter as .eml and .html, list bad rows; send nothing."""
    data = _read_roster(args.roster, settings)
    receipt = asyncio.run(
        ingest(
            data,
            publisher=FolderPublisher(args.out, settings),
            templates=_templates(settings),
            settings=settings,
            all_or_nothing=False,
        )
    )
    _print_receipt(receipt)
    print(f"wrote {receipt.letters} letter(s) to {args.out}: nothing was sent")
    if receipt.errors:
        print(f"{len(receipt.errors)} row error(s); `send` sends nothing until fixed:")
        _print_row_errors(receipt.errors)
        return EXIT_REJECTED
    return EXIT_OK


def _read_roster(path: Path, settings: Settings) -> bytes:
    try:
        with path.open("rb") as roster:
            return roster.read(settings.max_upload_bytes + 1)
    except OSError as exc:
        raise RosterUnreadable(f"{path}: {exc.strerror}") from exc


def _templates(settings: Settings) -> LetterTemplates:
    return LetterTemplates.load(
        settings.templates_dir, locale=settings.locale, currency=settings.currency
    )


def _print_receipt(receipt: BatchReceipt) -> None:
    if receipt.duplicate:
        print(
            f"batch {receipt.batch_id} was sent before ({receipt.letters} letters):"
            " nothing sent again; use --new-batch to send it anew"
        )
        return

    print(
        f"batch {receipt.batch_id}: {receipt.letters} letter(s)"
        f" from sheet {receipt.sheet!r}"
    )
    for note in receipt.notes:
        print(f"  note: {note}")


def _print_row_errors(errors: Sequence[RowError]) -> None:
    for error in errors:
        where = f"row {error.row}" + (f", {error.column}" if error.column else "")
        value = f" (value {error.value!r})" if error.value else ""
        fix = f"; fix: {error.fix}" if error.fix else ""
        print(f"  {where}: {error.message}{value}{fix}")


def _settings_problem(exc: pydantic.ValidationError) -> str:
    lines = ["offerletters: the settings are not usable:"]
    for problem in exc.errors():
        where = "_".join(str(part) for part in problem["loc"]).upper()
        name = f"OFFERLETTERS_{where}: " if where else ""
        lines.append(f"  {name}{problem['msg']}")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
