"""`Letter`, one rendered offer letter and the whole Kafka payload, and its ids.

Both ids are derived, never random, so a re-published batch keeps them.
"""

from __future__ import annotations

import uuid

from pydantic import BaseModel, ConfigDict

__all__ = ["LETTER_ID_NAMESPACE", "Letter", "letter_id_for", "message_id_for"]

# Fixed for good: changing it would give a re-published batch new letter ids,
# and so new Message-IDs, and the ledger would no longer recognise its letters.
LETTER_ID_NAMESPACE = uuid.UUID("1ab64271-6ad7-4990-a0bf-cab19a589eca")


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


def letter_id_for(batch_id: str, row: int) -> str:
    """The id of a batch's letter for one row; the same inputs give the same id."""
    return str(uuid.uuid5(LETTER_ID_NAMESPACE, f"{batch_id}:{row}"))


def message_id_for(letter_id: str, sender_domain: str) -> str:
    """The Message-ID of a letter, so every copy of it carries the same one."""
    domain = sender_domain.strip().lower()
    if not domain.isascii():
        # A header must be ASCII; IDNA is how a domain is written in one.
        domain = domain.encode("idna").decode("ascii")

    return f"<{letter_id}@{domain}>"
