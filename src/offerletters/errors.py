"""The exceptions offerletters raises: one base class, data on every subclass.

Third-party errors (calamine, aiokafka, aiosmtplib) are translated into these
once, at the edge where they happen, so the rest of the code and the API only
ever see our own types.
"""

from __future__ import annotations


class OfferLettersError(Exception):
    """Base of every error offerletters raises on purpose.

    `retriable` tells callers whether trying the same thing again later may
    succeed (a dropped connection) or never will (a refused address).
    """

    retriable: bool = False


class ConfigError(OfferLettersError):
    """The settings cannot work together; the message names the fix."""


class RosterUnreadable(OfferLettersError):
    """The upload is not a spreadsheet we can read (wrong type, empty, damaged)."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"could not read this file as a spreadsheet: {reason}")
        self.reason = reason


class RosterMissing(OfferLettersError):
    """No roster to read: none was uploaded, or its file is not there."""


class RosterTooLarge(OfferLettersError):
    """The upload exceeds a configured byte or row cap."""

    def __init__(self, what: str, limit: int) -> None:
        super().__init__(f"the roster has more than {limit:,} {what}; split it")
        self.what = what
        self.limit = limit


class TemplateProblem(OfferLettersError):
    """A letter template cannot be loaded or uses a value the roster lacks."""


class QueueUnavailable(OfferLettersError):
    """Kafka could not be reached or refused the batch."""

    retriable = True


class LedgerError(OfferLettersError):
    """The ledger refused an operation; trying it again will not help."""


class LedgerUnavailable(LedgerError):
    """The ledger's database cannot be reached or is not migrated yet."""

    retriable = True


class DeliveryFailed(OfferLettersError):
    """The mailer could not deliver one letter.

    `reply` is the SMTP server's answer (or the connection fault), kept for
    the record of who got what.
    """

    def __init__(self, reply: str, *, retriable: bool) -> None:
        super().__init__(reply)
        self.reply = reply
        self.retriable = retriable
