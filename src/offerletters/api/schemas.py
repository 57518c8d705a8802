"""The shapes of the API's answers, as the OpenAPI page documents them."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from offerletters.roster import RowError


class BatchAccepted(BaseModel):
    """The roster was valid and every letter is queued for delivery."""

    batch_id: str = Field(description="Names the batch in later requests and logs.")
    letters: int = Field(description="How many letters were queued.")
    sheet: str | None = Field(
        description="The sheet the roster was read from (null for a duplicate)."
    )
    notes: list[str] = Field(
        default_factory=list,
        description="Things worth a look that did not stop the batch.",
    )
    duplicate: bool = Field(
        default=False,
        description="True when this batch was sent before and nothing new was queued.",
    )


class LetterOut(BaseModel):
    """One rendered letter, exactly as it would be sent."""

    row: int
    recipient: str
    recipient_name: str
    subject: str
    text: str
    html: str


class PreviewOut(BaseModel):
    """The letters of the roster's good rows and its row errors; nothing queued."""

    batch_id: str
    letters: int = Field(description="How many good rows have a letter.")
    sheet: str | None
    notes: list[str] = Field(default_factory=list)
    preview: list[LetterOut] = Field(description="The first `limit` letters.")
    errors: list[RowErrorOut] = Field(
        default_factory=list,
        description="Row errors; /send-emails would queue nothing until fixed.",
    )


class RowErrorOut(BaseModel):
    """Why one roster row (or the header, or a template) cannot be used."""

    row: int | None = Field(description="The row number the spreadsheet shows.")
    column: str | None
    message: str
    value: str | None = None
    fix: str | None = None


def row_error_out(error: RowError) -> RowErrorOut:
    return RowErrorOut(
        row=error.row,
        column=error.column,
        message=error.message,
        value=error.value,
        fix=error.fix,
    )


class RosterRejectedOut(BaseModel):
    """Nothing was queued: every problem found in the roster is listed."""

    detail: str
    errors: list[RowErrorOut]


class Problem(BaseModel):
    """A request that could not be served, and why."""

    detail: str
    request_id: str | None = Field(
        default=None,
        description="Names the request in the server's logs; on 5xx answers.",
    )


class BatchOut(BaseModel):
    """A batch and how far its delivery has come."""

    batch_id: str
    created_at: datetime
    published: bool = Field(description="False while (or if) queueing never finished.")
    letters: int | None
    states: dict[str, int] = Field(description="Letters per state.")
    done: bool = Field(description="True when every letter is sent or failed.")


class LetterStatusOut(BaseModel):
    """One letter's delivery state; the address is masked."""

    letter_id: str
    row: int
    recipient: str
    state: str
    attempts: int
    last_reply: str | None
    message_id: str
    updated_at: datetime
    sent_at: datetime | None


class RetryOut(BaseModel):
    """Failed letters put back on the queue."""

    batch_id: str
    requeued: int
    missing: int = Field(
        description="Failed letters whose copy was no longer kept; re-upload for those."
    )


class Health(BaseModel):
    status: str = "ok"
    mode: str = Field(description="'kafka' or 'embedded'.")


class Ready(BaseModel):
    """Every check passed: the API can take uploads now."""

    status: str = "ready"
    mode: str = Field(description="'kafka' or 'embedded'.")
    checks: list[str] = Field(description="The checks that passed.")


class CheckFailed(BaseModel):
    """One readiness check that failed, and why."""

    check: str = Field(description="'ledger' or 'kafka'.")
    reason: str


class NotReady(BaseModel):
    """At least one check failed: send no uploads here until it passes."""

    detail: str
    problems: list[CheckFailed]
