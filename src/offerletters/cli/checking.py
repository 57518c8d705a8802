"""`offerletters validate` and `offerletters preview`: look before sending.

Both run the very pipeline `send` runs, with publishers that send nothing,
and show the good rows beside every row error.
"""

from __future__ import annotations

import argparse
import asyncio

from offerletters.cli.shared import (
    EXIT_OK,
    EXIT_REJECTED,
    print_checked,
    print_row_errors,
    read_roster,
    templates,
)
from offerletters.config import Settings
from offerletters.ingest import ingest
from offerletters.preview import Discard, FolderPublisher


def validate(args: argparse.Namespace, settings: Settings) -> int:
    """Report every row error and note; exit 0 only for a clean roster."""
    data = read_roster(args.roster, settings)
    receipt = asyncio.run(
        ingest(
            data,
            publisher=Discard(),
            templates=templates(settings),
            settings=settings,
            all_or_nothing=False,
        )
    )
    print_checked(receipt)
    if receipt.errors:
        print(f"{len(receipt.errors)} row error(s); `send` sends nothing until fixed:")
        print_row_errors(receipt.errors)
        return EXIT_REJECTED

    print("the roster is clean: nothing was sent")
    return EXIT_OK


def preview(args: argparse.Namespace, settings: Settings) -> int:
    """Write each good row's letter as .eml and .html, list bad rows; send nothing."""
    data = read_roster(args.roster, settings)
    receipt = asyncio.run(
        ingest(
            data,
            publisher=FolderPublisher(args.out, settings),
            templates=templates(settings),
            settings=settings,
            all_or_nothing=False,
        )
    )
    print_checked(receipt)
    print(f"wrote {receipt.letters} letter(s) to {args.out}: nothing was sent")
    if receipt.errors:
        print(f"{len(receipt.errors)} row error(s); `send` sends nothing until fixed:")
        print_row_errors(receipt.errors)
        return EXIT_REJECTED
    return EXIT_OK
