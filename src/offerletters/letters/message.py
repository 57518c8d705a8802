"""The MIME message for a letter (`build_message`) and the email policies it uses."""

from __future__ import annotations

import email.policy
from datetime import UTC, datetime
from email.errors import MessageError
from email.headerregistry import Address, BaseHeader, HeaderRegistry
from email.message import EmailMessage

from offerletters.errors import DeliveryFailed
from offerletters.letters.letter import Letter

__all__ = ["MESSAGE_POLICY", "SMTPUTF8_POLICY", "build_message"]


class _HeaderClasses(HeaderRegistry):
    """A header registry that makes each header class once.

    The standard one creates a new class for every header of every message,
    about a quarter of the time it takes to build and flatten one.
    """

    def __init__(self) -> None:
        super().__init__()
        self._made: dict[str, type[BaseHeader]] = {}

    def __getitem__(self, name: str) -> type[BaseHeader]:
        key = name.lower()
        if key not in self._made:
            self._made[key] = super().__getitem__(key)

        return self._made[key]


# CRLF line ends and 78-column folding, ready for the SMTP wire as it is;
# 7bit so that non-ASCII bodies are encoded too and need no 8BITMIME server.
MESSAGE_POLICY = email.policy.SMTP.clone(
    cte_type="7bit", header_factory=_HeaderClasses()
)
# For an internationalised address (a non-ASCII mailbox): headers go as raw
# UTF-8, which only a server offering SMTPUTF8 (RFC 6531) may be given.
SMTPUTF8_POLICY = MESSAGE_POLICY.clone(utf8=True)


def build_message(
    letter: Letter,
    *,
    sender: Address,
    reply_to: str | None = None,
    date: datetime | None = None,
) -> EmailMessage:
    """The MIME message for a letter: plain text first, then HTML, as alternatives.

    Headers are RFC 2047 encoded where they are not ASCII, and bodies are
    quoted-printable or base64 whenever a line is long or not ASCII, so every
    line stays within 78 columns. Raises DeliveryFailed (permanent) when an
    address or the subject cannot be put in a header.
    """
    if date is not None and date.tzinfo is None:
        raise ValueError("the Date header needs a timezone-aware datetime")

    international = not (letter.recipient.isascii() and sender.addr_spec.isascii())
    message = EmailMessage(policy=SMTPUTF8_POLICY if international else MESSAGE_POLICY)
    try:
        message["From"] = sender
        message["To"] = _recipient(letter)
        if reply_to:
            message["Reply-To"] = reply_to
        message["Subject"] = letter.subject
    except (ValueError, IndexError, MessageError) as exc:
        # No address or subject in the message: logs must never carry one.
        raise DeliveryFailed(
            f"letter {letter.letter_id} has an address or subject that cannot"
            f" go in a mail header ({type(exc).__name__})",
            retriable=False,
        ) from exc

    message["Date"] = date or datetime.now(UTC)
    message["Message-ID"] = letter.message_id
    message.set_content(letter.text)
    message.add_alternative(letter.html, subtype="html")
    # A boundary of our own spares the generator its search for a safe one;
    # "=_" never occurs in quoted-printable or base64 bodies.
    message.set_boundary(f"=_offerletters_{letter.letter_id}")
    return message


def _recipient(letter: Letter) -> Address:
    """The To address; a non-ASCII mailbox is built from its parts, since the
    email package refuses to parse one even where SMTPUTF8 allows it."""
    if letter.recipient.isascii():
        return Address(display_name=letter.recipient_name, addr_spec=letter.recipient)

    mailbox, _, domain = letter.recipient.rpartition("@")
    if not mailbox or not domain or any(c.isspace() or c in '@<>"' for c in mailbox):
        raise ValueError("not a mailbox")
    return Address(display_name=letter.recipient_name, username=mailbox, domain=domain)
