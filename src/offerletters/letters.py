"""Letters: templates rendered per candidate, and the email message built from one.

OWNED BY THE LETTERS HELPER: `Letter` is the contract (it is the Kafka payload);
keep its fields, fill in the rest.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Letter(BaseModel):
    """One rendered offer letter, ready to send; the whole Kafka message."""

    model_config = ConfigDict(frozen=True)

    letter_id: str
    batch_id: str
    row: int
    recipient: str
    recipient_name: str
    subject: str
    text: str
    html: str
    message_id: str
