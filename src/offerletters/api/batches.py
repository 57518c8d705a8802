"""The batch routes: progress, letters by state, and retrying failed letters."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, Request

from offerletters.api.schemas import BatchOut, LetterStatusOut, Problem, RetryOut
from offerletters.ledger import BatchRecord, Ledger, LetterState

router = APIRouter(prefix="/batches", tags=["batches"])

NOT_FOUND: dict[int | str, dict[str, object]] = {
    404: {"model": Problem, "description": "No batch with this id."}
}


@router.get("/{batch_id}", response_model=BatchOut, responses=NOT_FOUND)
async def batch_status(request: Request, batch_id: str) -> BatchOut:
    """How many letters of the batch are queued, retrying, sent and failed."""
    ledger: Ledger = request.app.state.services.ledger
    batch = await _known(ledger, batch_id)

    progress = await ledger.batch_progress(batch_id)
    open_letters = progress[LetterState.QUEUED] + progress[LetterState.RETRYING]
    return BatchOut(
        batch_id=batch_id,
        created_at=batch.created_at,
        published=batch.published,
        letters=batch.letters,
        states={state.value: count for state, count in progress.items()},
        done=batch.published and open_letters == 0,
    )


@router.get(
    "/{batch_id}/letters", response_model=list[LetterStatusOut], responses=NOT_FOUND
)
async def batch_letters(
    request: Request,
    batch_id: str,
    state: LetterState | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> list[LetterStatusOut]:
    """The batch's letters, optionally of one state, with the server's last reply."""
    ledger: Ledger = request.app.state.services.ledger
    await _known(ledger, batch_id)

    records = await ledger.letters_in(batch_id, state, limit=limit, offset=offset)
    return [
        LetterStatusOut(
            letter_id=r.letter_id,
            row=r.row,
            recipient=r.recipient_masked,
            state=r.state.value,
            attempts=r.attempts,
            last_reply=r.last_reply,
            message_id=r.message_id,
            updated_at=r.updated_at,
            sent_at=r.sent_at,
        )
        for r in records
    ]


@router.post("/{batch_id}/retry", response_model=RetryOut, responses=NOT_FOUND)
async def retry_failed(request: Request, batch_id: str) -> RetryOut:
    """Queue the batch's failed letters again; sent letters are never touched."""
    services = request.app.state.services
    ledger: Ledger = services.ledger
    await _known(ledger, batch_id)

    failed = await ledger.failed_letter_ids(batch_id)
    letters = await services.dead_letters.find(failed) if failed else []
    if letters:
        async with services.publisher.batch() as writer:
            for letter in letters:
                await writer.put(letter)
        await ledger.requeue([letter.letter_id for letter in letters])

    return RetryOut(
        batch_id=batch_id, requeued=len(letters), missing=len(failed) - len(letters)
    )


async def _known(ledger: Ledger, batch_id: str) -> BatchRecord:
    batch = await ledger.find_batch(batch_id)
    if batch is None:
        raise HTTPException(status_code=404, detail=f"no batch {batch_id}")
    return batch
