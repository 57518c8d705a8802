"""Letters: templates rendered per candidate, and the email message built from one.

`LetterTemplates.render` turns a candidate into a `Letter` (the Kafka payload);
`build_message` turns a letter into the MIME message the mailer sends.
"""

from offerletters.letters.letter import (
    LETTER_ID_NAMESPACE,
    Letter,
    letter_id_for,
    message_id_for,
)
from offerletters.letters.message import MESSAGE_POLICY, SMTPUTF8_POLICY, build_message
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
    "MESSAGE_POLICY",
    "SMTPUTF8_POLICY",
    "SUBJECT_TEMPLATE",
    "TEXT_TEMPLATE",
    "Letter",
    "LetterTemplates",
    "build_message",
    "letter_id_for",
    "message_id_for",
]
