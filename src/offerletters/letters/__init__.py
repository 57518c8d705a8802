"""Letters: templates rendered per candidate, and the email message built from one.

`LetterTemplates.render` turns a candidate into a `Letter` (the Kafka payload);
`build_message` turns a letter into the MIME message the mailer sends, as
the bytes that go on the wire.
"""

from offerletters.letters.letter import (
    LETTER_ID_NAMESPACE,
    Letter,
    letter_id_for,
    message_id_for,
)
from offerletters.letters.message import OutgoingMessage, build_message
from offerletters.letters.templates import (
    CORE_VARIABLES,
    HTML_TEMPLATE,
    SUBJECT_TEMPLATE,
    TEXT_TEMPLATE,
    LetterTemplates,
)

__all__ = [
    "CORE_VARIABLES",
    "HTML_TEMPLATE",
    "LETTER_ID_NAMESPACE",
    "SUBJECT_TEMPLATE",
    "TEXT_TEMPLATE",
    "Letter",
    "LetterTemplates",
    "OutgoingMessage",
    "build_message",
    "letter_id_for",
    "message_id_for",
]
