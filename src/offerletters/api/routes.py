"""The roster routes: upload a roster to send its letters, or to preview them."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Annotated

from fastapi import (
    APIRouter,
    File,
    Header,
    Query,
    Request,
    Response,
    UploadFile,
    status,
)

from offerletters.api.schemas import (
    BatchAccepted,
    LetterOut,
    PreviewOut,
    Problem,
    RosterRejectedOut,
    row_error_out,
)
from offerletters.errors import RosterMissing, RosterTooLarge, RosterUnreadable
from offerletters.ingest import batch_id_for, ingest
from offerletters.preview import Collect

router = APIRouter()

# What a roster upload can be answered with besides success.
ROSTER_PROBLEMS: dict[int | str, dict[str, object]] = {
    400: {"model": Problem, "description": "The file is not a readable roster."},
    413: {"model": Problem, "description": "The roster is over a size limit."},
    422: {"model": RosterRejectedOut, "description": "Row errors; nothing queued."},
}

RosterFile = Annotated[
    UploadFile | None,
    File(description="The roster: xlsx, xlsm, xlsb, xls, ods or csv."),
]


@router.post(
    "/send-emails",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=BatchAccepted,
    responses={
        **ROSTER_PROBLEMS,
        503: {"model": Problem, "description": "The queue cannot be reached."},
    },
    summary="Queue one offer letter per candidate in a roster",
)
async def send_emails(
    request: Request,
    response: Response,
    file: RosterFile = None,
    idempotency_key: Annotated[
        str | None,
        Header(
            max_length=200,
            description="With new_batch=true, names the new batch: retrying"
            " that request with the same key sends nothing again. (Without"
            " new_batch, the roster's content already names its batch.)",
        ),
    ] = None,
    new_batch: Annotated[
        bool,
        Query(description="Send even if this roster was sent before."),
    ] = False,
) -> BatchAccepted:
    """Validate the roster, render every letter and queue them all, or none.

    Without a `file` field, the roster at OFFERLETTERS_ROSTER_PATH is used.
    Sending the same roster again answers 200 with the existing batch and
    sends nothing, whatever the Idempotency-Key, unless `new_batch=true`.
    """
    services = request.app.state.services
    settings = services.settings
    data = await _roster_bytes(file, settings.roster_path, settings.max_upload_bytes)
    # The roster's content names its batch, so a repeat (with or without a
    # key) finds the first one. Only a deliberate new batch is salted: with
    # the caller's key, so that retrying that request does not send thrice.
    salt = (idempotency_key or uuid.uuid4().hex) if new_batch else None

    receipt = await ingest(
        data,
        publisher=services.publisher,
        templates=services.templates,
        settings=settings,
        ledger=services.ledger,
        batch_id=batch_id_for(data, salt=salt) if salt else None,
    )
    if receipt.duplicate:
        response.status_code = status.HTTP_200_OK
    return BatchAccepted(
        batch_id=receipt.batch_id,
        letters=receipt.letters,
        sheet=receipt.sheet,
        notes=receipt.notes,
        duplicate=receipt.duplicate,
    )


@router.post(
    "/preview",
    response_model=PreviewOut,
    responses=ROSTER_PROBLEMS,
    summary="Validate a roster and show its letters without sending anything",
)
async def preview(
    request: Request,
    file: RosterFile = None,
    limit: Annotated[int, Query(ge=0, le=1000)] = 20,
) -> PreviewOut:
    """Run the same checks and rendering as /send-emails; queue nothing.

    Answers 200 with the letters of the good rows and every row error, so
    one call shows both what would be sent and what must be fixed first.
    """
    services = request.app.state.services
    settings = services.settings
    data = await _roster_bytes(file, settings.roster_path, settings.max_upload_bytes)

    shown = Collect(limit)
    receipt = await ingest(
        data,
        publisher=shown,
        templates=services.templates,
        settings=settings,
        all_or_nothing=False,
    )
    return PreviewOut(
        batch_id=receipt.batch_id,
        letters=receipt.letters,
        sheet=receipt.sheet,
        notes=receipt.notes,
        errors=[row_error_out(e) for e in receipt.errors],
        preview=[
            LetterOut.model_validate(letter, from_attributes=True)
            for letter in shown.letters
        ],
    )


async def _roster_bytes(
    file: UploadFile | None, roster_path: Path | None, max_bytes: int
) -> bytes:
    """The uploaded roster, or the configured one; never more than the cap."""
    if file is not None:
        data = await file.read(max_bytes + 1)
    elif roster_path is not None:
        data = await asyncio.to_thread(_read_capped, roster_path, max_bytes)
    else:
        raise RosterMissing(
            "no roster was sent; upload it as the multipart field 'file'"
            " (curl -F file=@roster.xlsx), or set OFFERLETTERS_ROSTER_PATH on"
            " the server"
        )

    if len(data) > max_bytes:
        raise RosterTooLarge("bytes", max_bytes)
    return data


def _read_capped(path: Path, max_bytes: int) -> bytes:
    try:
        with path.open("rb") as roster:
            return roster.read(max_bytes + 1)
    except OSError as exc:
        # The server's own path stays out of the answer.
        raise RosterUnreadable(
            f"the configured roster could not be opened ({exc.strerror})"
        ) from exc
