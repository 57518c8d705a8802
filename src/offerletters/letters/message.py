"""The MIME message for a letter (`build_message`), written straight to wire bytes.

A letter always has the same shape: a few headers and a multipart/alternative
body of plain text then HTML. Writing that text directly costs a thirtieth of
building an `EmailMessage` and flattening it, which was most of a worker's
CPU time per letter (see docs/benchmarks.md). The rules the email package
would apply are kept: CRLF line ends, every line within 78 columns, headers
RFC 2047 encoded where they are not plain ASCII, bodies 7bit when they can
be and otherwise quoted-printable or base64, whichever is shorter. The tests
read every message back with the email package's own parser.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from datetime import UTC, datetime
from email.header import Header
from email.headerregistry import Address
from email.utils import format_datetime, parseaddr, quote

from offerletters.errors import DeliveryFailed
from offerletters.letters.letter import Letter

__all__ = ["OutgoingMessage", "build_message"]

# Folded header and body lines stay within this many columns (RFC 5322 2.1.1).
LINE_COLUMNS = 78
# No line may be longer than this, CRLF not counted (RFC 5321 4.5.3.1.6).
SMTP_LINE_LIMIT = 998
# UTF-8 bytes per encoded word: 56 base64 columns, 68 with "=?utf-8?b?" and
# "?=", which leaves 10 for "Reply-To: " on the first line.
WORD_BYTES = 42
# Characters that make a display name a quoted string (RFC 5322 3.2.3).
_SPECIALS = frozenset('()<>[]:;@\\,."')
_NO_BREAKS = str.maketrans("", "", "\r\n")
_ASCII_BYTES = bytes(range(128))


@dataclass(frozen=True, slots=True)
class OutgoingMessage:
    """A letter as it goes on the wire, with its SMTP envelope."""

    data: bytes
    sender: str
    recipient: str
    # An address is not ASCII: only a server offering SMTPUTF8 may take it.
    smtputf8: bool

    @property
    def mail_options(self) -> list[str]:
        """The MAIL FROM options this message needs."""
        return ["SMTPUTF8"] if self.smtputf8 else []


def build_message(
    letter: Letter,
    *,
    sender: Address,
    reply_to: str | None = None,
    date: datetime | None = None,
) -> OutgoingMessage:
    """The MIME message for a letter: plain text first, then HTML, as alternatives.

    Raises DeliveryFailed (permanent) when an address, a name or the subject
    cannot be put in a header; the message never says which, so that no
    address reaches the logs.
    """
    if date is not None and date.tzinfo is None:
        raise ValueError("the Date header needs a timezone-aware datetime")

    boundary = f"=_offerletters_{letter.letter_id}"
    try:
        headers = [
            ("From", _mailbox(sender.display_name, sender.addr_spec, "From")),
            ("To", _mailbox(letter.recipient_name, letter.recipient, "To")),
            *_reply_to(reply_to),
            ("Subject", _unstructured(letter.subject, "Subject")),
        ]
    except ValueError as exc:
        raise DeliveryFailed(
            f"letter {letter.letter_id} has an address, name or subject that"
            " cannot go in a mail header",
            retriable=False,
        ) from exc

    headers += [
        ("Date", format_datetime(date or datetime.now(UTC))),
        ("Message-ID", letter.message_id),
        ("MIME-Version", "1.0"),
        ("Content-Type", f'multipart/alternative;\r\n boundary="{boundary}"'),
    ]
    head = "".join(f"{name}: {value}\r\n" for name, value in headers)
    parts = (
        _part("plain", letter.text, boundary),
        _part("html", letter.html, boundary),
    )
    body = "".join(f"--{boundary}\r\n{part}\r\n" for part in parts)
    return OutgoingMessage(
        data=f"{head}\r\n{body}--{boundary}--\r\n".encode(),
        sender=sender.addr_spec,
        recipient=letter.recipient,
        smtputf8=not (letter.recipient.isascii() and sender.addr_spec.isascii()),
    )


def _reply_to(value: str | None) -> list[tuple[str, str]]:
    """The Reply-To header, when one is configured ("Name <address>" or address)."""
    if not value:
        return []

    name, address = parseaddr(value)
    return [("Reply-To", _mailbox(name, address, "Reply-To"))]


def _mailbox(name: str, address: str, header: str) -> str:
    """`Name <address>`, the name quoted or encoded as it needs; ValueError when
    the address is not a single mailbox."""
    _check_address(address)
    if not name:
        return address

    if not _needs_encoding(name):
        plain = f'"{quote(name)}"' if _SPECIALS.intersection(name) else name
        # Readers join a long name's encoded words with spaces, so an ASCII
        # name stays plain on one line, as long as the SMTP limit allows.
        if len(f"{header}: {plain} <{address}>") <= SMTP_LINE_LIMIT:
            return f"{plain} <{address}>"
    return f"{_encoded_words(name, header)} <{address}>"


def _check_address(address: str) -> None:
    """Refuse anything but local@domain with no spaces, brackets or line breaks.

    Rosters are validated long before this, but a header is the last place
    where a stray character could turn into a second header or recipient.
    """
    local, _, domain = address.rpartition("@")
    if not local or not domain or "@" in local:
        raise ValueError("not a mailbox")
    if any(c.isspace() or c in '<>"()[]\\,;:' for c in address):
        raise ValueError("not a mailbox")


def _unstructured(text: str, header: str) -> str:
    """A free-text header value, folded at spaces or encoded to fit 78 columns."""
    if _needs_encoding(text):
        return _encoded_words(text, header)
    if len(header) + 2 + len(text) <= LINE_COLUMNS:
        return text  # the usual case: fits as it is

    longest_word = max(map(len, text.split()), default=0)
    if len(header) + 2 + longest_word > LINE_COLUMNS:
        return _encoded_words(text, header)
    return Header(text, "us-ascii", header_name=header).encode(linesep="\r\n")


def _needs_encoding(text: str) -> bool:
    """Non-ASCII text, line breaks, or text a reader would decode as RFC 2047."""
    if text != text.translate(_NO_BREAKS):
        raise ValueError("a line break in a header")

    return not text.isascii() or "=?" in text


def _encoded_words(text: str, header: str) -> str:
    """RFC 2047 encoded words ("=?utf-8?b?...?="), one per folded line.

    Each word carries whole characters, at most WORD_BYTES of UTF-8, so the
    longest header name plus one word stays within 78 columns.
    """
    words: list[str] = []
    chunk: list[str] = []
    size = 0
    for char in text:
        width = len(char.encode())
        if size + width > WORD_BYTES:
            words.append(_b_word("".join(chunk)))
            chunk, size = [], 0
        chunk.append(char)
        size += width
    words.append(_b_word("".join(chunk)))
    return "\r\n ".join(words)


def _b_word(text: str) -> str:
    return f"=?utf-8?b?{base64.b64encode(text.encode()).decode('ascii')}?="


def _part(subtype: str, text: str, boundary: str) -> str:
    """One body part: 7bit when plain and short, else the shorter of QP and base64.

    The text ends with a line break, as the email package gives it, so a
    reader gets back exactly the rendered text plus that newline.
    """
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    if not text.endswith("\n"):
        text += "\n"

    if _fits_7bit(text, boundary):
        encoding, payload = "7bit", text
    else:
        encoding, payload = _encoded_body(text)
    return (
        f'Content-Type: text/{subtype}; charset="utf-8"\r\n'
        f"Content-Transfer-Encoding: {encoding}\r\n\r\n" + payload.replace("\n", "\r\n")
    )


def _encoded_body(text: str) -> tuple[str, str]:
    """Quoted-printable for text that is mostly ASCII, base64 for the rest.

    QP spends three columns on each byte outside ASCII, base64 four on every
    three bytes; counting those bytes picks the shorter without encoding twice.
    """
    data = text.encode()
    high_bytes = len(data.translate(None, _ASCII_BYTES))
    if 6 * high_bytes < len(data):
        return "quoted-printable", binascii.b2a_qp(data).decode("ascii")
    return "base64", base64.encodebytes(data).decode("ascii")


def _fits_7bit(text: str, boundary: str) -> bool:
    """ASCII, no line over 78 columns, and nothing that could read as a boundary."""
    if not text.isascii() or boundary in text:
        return False

    return all(len(line) <= LINE_COLUMNS for line in text.split("\n"))
