"""The command line: `offerletters api | worker | send | validate | preview`.

Each command builds Settings and logging here, at the entrypoint, and passes
them down. Reports for people go to stdout; structured logs go to stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

import pydantic
import structlog
import uvicorn

from offerletters import logs
from offerletters.api import create_app
from offerletters.config import Settings
from offerletters.delivery import Outcome
from offerletters.embedded import running_embedded
from offerletters.errors import (
    ConfigError,
    OfferLettersError,
    QueueUnavailable,
    RosterUnreadable,
)
from offerletters.ingest import BatchReceipt, ingest
from offerletters.letters import LetterTemplates
from offerletters.preview import Discard, FolderPublisher
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
    send.set_defaults(command=_send)

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
    templates = _templates(settings)
    if not settings.embedded:
        receipt = asyncio.run(_publish(data, templates, settings))
        _print_receipt(receipt)
        print(f"queued on Kafka topic {settings.kafka_topic}; workers deliver them")
        return EXIT_OK

    return asyncio.run(_send_embedded(data, templates, settings))


async def _publish(
    data: bytes, templates: LetterTemplates, settings: Settings
) -> BatchReceipt:
    async with KafkaPublisher(settings) as publisher:
        return await ingest(
            data, publisher=publisher, templates=templates, settings=settings
        )


async def _send_embedded(
    data: bytes, templates: LetterTemplates, settings: Settings
) -> int:
    async with running_embedded(settings) as run:
        receipt = await ingest(
            data, publisher=run.queue, templates=templates, settings=settings
        )
        _print_receipt(receipt)
        await run.queue.drained()

    sent, failed = (
        run.delivery.counts[Outcome.SENT],
        run.delivery.counts[Outcome.FAILED],
    )
    print(f"delivered {sent}, failed {failed}: {run.where}")
    return EXIT_UNDELIVERED if failed else EXIT_OK


def _validate(args: argparse.Namespace, settings: Settings) -> int:
    """Report every row error and note; exit 0 only for a clean roster."""
    data = _read_roster(args.roster, settings)
    receipt = asyncio.run(
        ingest(
            data, publisher=Discard(), templates=_templates(settings), settings=settings
        )
    )
    _print_receipt(receipt)
    print("the roster is clean: nothing was sent")
    return EXIT_OK


def _preview(args: argparse.Namespace, settings: Settings) -> int:
    """Write every letter as .eml and .html into a folder; send nothing."""
    data = _read_roster(args.roster, settings)
    folder = FolderPublisher(args.out, settings)
    receipt = asyncio.run(
        ingest(
            data, publisher=folder, templates=_templates(settings), settings=settings
        )
    )
    _print_receipt(receipt)
    print(f"wrote {receipt.letters} letter(s) to {args.out}: nothing was sent")
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
    print(
        f"batch {receipt.batch_id}: {receipt.letters} letter(s)"
        f" from sheet {receipt.sheet!r}"
    )
    for note in receipt.notes:
        print(f"  note: {note}")


def _print_row_errors(errors: Sequence[RowError]) -> None:
    print(f"the roster was rejected, nothing was sent: {len(errors)} problem(s)")
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
