"""The HTTP routes: upload a roster to send its letters, and a health check."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, File, Request, UploadFile, status

from offerletters.api.schemas import (
    BatchAccepted,
    Health,
    Problem,
    RosterRejectedOut,
)
from offerletters.errors import RosterTooLarge, RosterUnreadable
from offerletters.ingest import ingest

router = APIRouter()


@router.post(
    "/send-emails",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=BatchAccepted,
    responses={
        400: {"model": Problem, "description": "The file is not a readable roster."},
        413: {"model": Problem, "description": "The roster is over a size limit."},
        422: {
            "model": RosterRejectedOut,
            "description": "Row errors; nothing was queued.",
        },
        503: {"model": Problem, "description": "The queue cannot be reached."},
    },
    summary="Queue one offer letter per candidate in a roster",
)
async def send_emails(
    request: Request,
    file: Annotated[
        UploadFile | None,
        File(description="The roster: xlsx, xlsm, xlsb, xls, ods or csv."),
    ] = None,
) -> BatchAccepted:
    """Validate the roster, render every letter and queue them all, or none.

    Without a `file` field, the roster at OFFERLETTERS_ROSTER_PATH is used.
    """
    services = request.app.state.services
    settings = services.settings
    data = await _roster_bytes(file, settings.roster_path, settings.max_upload_bytes)

    receipt = await ingest(
        data,
        publisher=services.publisher,
        templates=services.templates,
        settings=settings,
    )
    return BatchAccepted(
        batch_id=receipt.batch_id,
        letters=receipt.letters,
        sheet=receipt.sheet,
        notes=receipt.notes,
    )


@router.get("/healthz", response_model=Health, summary="Is the API process alive")
async def healthz(request: Request) -> Health:
    settings = request.app.state.services.settings
    return Health(mode="embedded" if settings.embedded else "kafka")


async def _roster_bytes(
    file: UploadFile | None, roster_path: Path | None, max_bytes: int
) -> bytes:
    """The uploaded roster, or the configured one; never more than the cap."""
    if file is not None:
        data = await file.read(max_bytes + 1)
    elif roster_path is not None:
        data = await asyncio.to_thread(_read_capped, roster_path, max_bytes)
    else:
        raise RosterUnreadable(
            "no file was sent; upload the roster as the multipart field 'file'"
            " or set OFFERLETTERS_ROSTER_PATH on the server"
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
