"""The command line: `offerletters api | worker | send | status | validate | preview`.

`main` builds Settings and logging once, at the entrypoint, passes them to
the command, and turns our errors into one clear line and an exit code.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import pydantic

from offerletters import logs
from offerletters.cli import checking, sending, serve
from offerletters.cli.shared import (
    EXIT_CONFIG,
    EXIT_REJECTED,
    print_row_errors,
)
from offerletters.config import Settings
from offerletters.errors import (
    ConfigError,
    LedgerUnavailable,
    OfferLettersError,
    QueueUnavailable,
    TemplateProblem,
)
from offerletters.roster import RosterRejected


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = Settings()
    except pydantic.ValidationError as exc:
        print(_settings_problem(exc), file=sys.stderr)
        return EXIT_CONFIG

    logs.configure(settings.log_level, settings.log_format)
    try:
        code: int = args.command(args, settings)
    except RosterRejected as exc:
        print(
            f"the roster was rejected, nothing was sent: {len(exc.errors)} problem(s)"
        )
        print_row_errors(exc.errors)
        return EXIT_REJECTED
    except (ConfigError, QueueUnavailable, LedgerUnavailable, TemplateProblem) as exc:
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
    api.set_defaults(command=serve.api)

    worker = commands.add_parser("worker", help="deliver letters from Kafka")
    worker.set_defaults(command=serve.worker)

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
    send.set_defaults(command=sending.send)

    status = commands.add_parser("status", help="show how far a batch has come")
    status.add_argument("batch")
    status.set_defaults(command=sending.status)

    validate = commands.add_parser("validate", help="report every problem in a roster")
    validate.add_argument("roster", type=Path)
    validate.set_defaults(command=checking.validate)

    preview = commands.add_parser("preview", help="write every letter to a folder")
    preview.add_argument("roster", type=Path)
    preview.add_argument("--out", type=Path, default=Path("preview"))
    preview.set_defaults(command=checking.preview)
    return parser


def _settings_problem(exc: pydantic.ValidationError) -> str:
    lines = ["offerletters: the settings are not usable:"]
    for problem in exc.errors():
        where = "_".join(str(part) for part in problem["loc"]).upper()
        name = f"OFFERLETTERS_{where}: " if where else ""
        lines.append(f"  {name}{problem['msg']}")
    return "\n".join(lines)
