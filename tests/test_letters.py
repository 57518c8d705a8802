"""Tests for letters: template loading and checking, rendering, message building."""

from __future__ import annotations

import dataclasses
import email
import email.policy
import uuid
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from email.headerregistry import Address
from email.message import EmailMessage, MIMEPart
from pathlib import Path
from typing import Any

import pytest

from offerletters.errors import ConfigError, DeliveryFailed, TemplateProblem
from offerletters.letters import (
    Letter,
    LetterTemplates,
    OutgoingMessage,
    build_message,
    letter_id_for,
    message_id_for,
)
from offerletters.roster import Candidate

DEFAULT_TEMPLATES = Path(__file__).resolve().parents[1] / "templates"
SENDER = Address(display_name="Acme Talent", addr_spec="talent@acme.example")
BATCH_ID = "batch-7f3a"
SMTP_LINE_LIMIT = 998
FOLDED_LINE_LIMIT = 78

JANE = Candidate(
    row=2,
    name="Jane Doe",
    email="jane@example.com",
    role="Data Engineer",
    offer_amount=Decimal("120000"),
    start_date=date(2027, 1, 15),
    location="Berlin",
)


def candidate(**changes: Any) -> Candidate:
    """Jane's row with some fields changed."""
    return dataclasses.replace(JANE, **changes)


def template_set(
    directory: Path,
    *,
    subject: str = "Offer: {{ role }}",
    text: str = "Dear {{ name }}",
    html: str = "<p>Dear {{ name }}</p>",
    **others: str,
) -> Path:
    """Write a template set (and any other named files) into a folder."""
    files = {"subject.txt": subject, "letter.txt": text, "letter.html": html}
    for name, source in {**files, **others}.items():
        (directory / name).write_text(source, encoding="utf-8")

    return directory


@pytest.fixture(scope="module")
def templates() -> LetterTemplates:
    """The default template set in en_US with USD."""
    return LetterTemplates.load(DEFAULT_TEMPLATES)


@pytest.fixture
def letter(templates: LetterTemplates) -> Letter:
    """Jane's letter from the default templates."""
    return templates.render(JANE, batch_id=BATCH_ID, sender=SENDER)


def wire(message: OutgoingMessage) -> bytes:
    """The message as the SMTP server receives it."""
    return message.data


def body(part: MIMEPart) -> str:
    """A part's decoded text, with the wire's CRLF line ends back to LF."""
    content = part.get_content()
    assert isinstance(content, str)
    return content.replace("\r\n", "\n")


def raw_header(raw: bytes, name: bytes) -> bytes:
    """One header's value as sent, with its folded lines joined again."""
    head = raw.split(b"\r\n\r\n", 1)[0].replace(b"\r\n ", b" ")
    for line in head.split(b"\r\n"):
        if line.startswith(name + b": "):
            return line.removeprefix(name + b": ")

    raise AssertionError(f"no {name!r} header")


def parsed(message: OutgoingMessage) -> EmailMessage:
    """The message as a mail client reads it back from the wire."""
    result = email.message_from_bytes(wire(message), policy=email.policy.default)
    assert isinstance(result, EmailMessage)
    return result


# Rendering ---------------------------------------------------------------------


def test_default_letter_states_the_offer(letter: Letter) -> None:
    """The default letter shows amount, date, name, role and location exactly."""
    assert letter.subject == "Your offer to join Acme Talent as Data Engineer"
    for body in (letter.text, letter.html):
        assert "Dear Jane," in body
        assert "Data Engineer" in body
        assert "Berlin" in body
        assert "$120,000 per year" in body
        assert "15 January 2027" in body
        assert "120000" not in body
        assert "2027-01-15" not in body
    assert letter.recipient == "jane@example.com"
    assert letter.recipient_name == "Jane Doe"


def test_fractional_amount_keeps_its_cents(templates: LetterTemplates) -> None:
    """An amount with cents is shown with them, to the currency's precision."""
    letter = templates.render(
        candidate(offer_amount=Decimal("120000.5")), batch_id=BATCH_ID, sender=SENDER
    )

    assert "$120,000.50 per year" in letter.text


def test_candidate_currency_beats_the_setting(templates: LetterTemplates) -> None:
    """A candidate's own currency is used instead of the configured one."""
    letter = templates.render(
        candidate(currency="EUR"), batch_id=BATCH_ID, sender=SENDER
    )

    assert "€120,000 per year" in letter.text


def test_locale_formats_money_and_dates() -> None:
    """In de_DE, euros read "120.000 €" and months are German."""
    templates = LetterTemplates.load(DEFAULT_TEMPLATES, locale="de_DE", currency="EUR")

    letter = templates.render(JANE, batch_id=BATCH_ID, sender=SENDER)

    assert "120.000\xa0€" in letter.text
    assert "15. Januar 2027" in letter.text


def test_en_gb_reads_day_month_year() -> None:
    """British English gets the same "15 January 2027" as American English."""
    templates = LetterTemplates.load(DEFAULT_TEMPLATES, locale="en_GB")

    letter = templates.render(JANE, batch_id=BATCH_ID, sender=SENDER)

    assert "15 January 2027" in letter.text


def test_html_escapes_the_name_and_text_does_not(tmp_path: Path) -> None:
    """Markup in a cell is escaped in the HTML body and kept as typed in the text."""
    templates = LetterTemplates.load(template_set(tmp_path))
    name = "<script>alert(1)</script> Doe"

    letter = templates.render(candidate(name=name), batch_id=BATCH_ID, sender=SENDER)

    assert "<script>" not in letter.html
    assert "&lt;script&gt;alert(1)&lt;/script&gt; Doe" in letter.html
    assert letter.text == f"Dear {name}"


def test_company_falls_back_to_sender_domain(tmp_path: Path) -> None:
    """A sender without a display name gives its domain as the company."""
    templates = LetterTemplates.load(template_set(tmp_path, subject="{{ company }}"))
    sender = Address(addr_spec="offers@acme.example")

    letter = templates.render(JANE, batch_id=BATCH_ID, sender=sender)

    assert letter.subject == "acme.example"


def test_extras_appear_only_when_present(templates: LetterTemplates) -> None:
    """The default letter mentions the hiring manager only when the roster has one."""
    extra = {"hiring_manager": "Ana Lima", "respond_by": "2026-12-01"}

    with_extras = templates.render(
        candidate(extra=extra), batch_id=BATCH_ID, sender=SENDER
    )
    without = templates.render(JANE, batch_id=BATCH_ID, sender=SENDER)

    assert "Reporting to:   Ana Lima" in with_extras.text
    assert "by 1 December 2026" in with_extras.text
    assert "Ana Lima" in with_extras.html
    assert "Reporting to" not in without.text
    assert "Reporting to" not in without.html


def test_custom_templates_use_an_extra_column(tmp_path: Path) -> None:
    """A custom template set reads an extra column by its snake_case name."""
    directory = template_set(
        tmp_path,
        text="{{ first_name }} joins {{ team_name }}, bonus {{ signing_bonus|money }}",
    )
    templates = LetterTemplates.load(directory)
    extra = {"team_name": "Platform", "signing_bonus": "5000"}
    templates.check(extra)

    letter = templates.render(candidate(extra=extra), batch_id=BATCH_ID, sender=SENDER)

    assert letter.text == "Jane joins Platform, bonus $5,000"


def test_core_fields_win_over_extra_columns(tmp_path: Path) -> None:
    """An extra column named like a core field is ignored; first_name may be given."""
    templates = LetterTemplates.load(
        template_set(tmp_path, text="{{ first_name }}, {{ role }}")
    )
    extra = {"role": "Intern", "first_name": "Janie"}

    letter = templates.render(candidate(extra=extra), batch_id=BATCH_ID, sender=SENDER)

    assert letter.text == "Janie, Data Engineer"


def test_name_without_spaces_is_its_own_first_name(templates: LetterTemplates) -> None:
    """A name written without spaces is used whole in the greeting."""
    letter = templates.render(candidate(name="李雷"), batch_id=BATCH_ID, sender=SENDER)

    assert "Dear 李雷," in letter.text


@pytest.mark.parametrize(
    ("name", "greeting"),
    [
        ("Smith, John", "Dear John,"),
        ("van der Berg, Anna", "Dear Anna,"),
        ("Garcia Lopez, Ana", "Dear Ana,"),
        ("Smith, John, Jr.", "Dear John,"),
        ("John Smith, Ph.D.", "Dear John,"),
        ("Jane Doe, MBA", "Dear Jane,"),
        ("John Smith, Jr.", "Dear John,"),
        (", John", "Dear John,"),
        ("Madonna,", "Dear Madonna,"),
        ("李, 雷", "Dear 雷,"),
        ("Jane Doe", "Dear Jane,"),
    ],
)
def test_a_family_name_first_before_a_comma_is_not_the_greeting(
    templates: LetterTemplates, name: str, greeting: str
) -> None:
    """ "Smith, John", as HR systems export names, is greeted as John."""
    letter = templates.render(candidate(name=name), batch_id=BATCH_ID, sender=SENDER)

    assert greeting in letter.text


def test_a_first_name_column_greets_without_a_doubled_comma(
    templates: LetterTemplates,
) -> None:
    """A First Name typed as "Johnny," still reads "Dear Johnny,"."""
    letter = templates.render(
        candidate(extra={"first_name": "Johnny,"}), batch_id=BATCH_ID, sender=SENDER
    )

    assert "Dear Johnny,\n" in letter.text


def test_newline_in_a_cell_folds_to_a_space(templates: LetterTemplates) -> None:
    """CR/LF from a cell become one space in the subject and the recipient name."""
    letter = templates.render(
        candidate(role="Data\r\nEngineer", name="Jane\nDoe"),
        batch_id=BATCH_ID,
        sender=SENDER,
    )

    assert letter.subject == "Your offer to join Acme Talent as Data Engineer"
    assert letter.recipient_name == "Jane Doe"
    raw = wire(build_message(letter, sender=SENDER))
    assert raw_header(raw, b"Subject") == letter.subject.encode("ascii")


def test_bad_value_for_a_filter_names_row_and_line(tmp_path: Path) -> None:
    """A filter given text it cannot read fails with row and line, not the value."""
    templates = LetterTemplates.load(
        template_set(tmp_path, text="Hello\n{{ signing_bonus | money }}")
    )
    bad = candidate(extra={"signing_bonus": "lots-of-money"})

    with pytest.raises(TemplateProblem) as problem:
        templates.render(bad, batch_id=BATCH_ID, sender=SENDER)

    message = str(problem.value)
    assert "row 2: letter.txt line 2" in message
    assert "plain number" in message
    assert "lots-of-money" not in message


# Loading and checking ----------------------------------------------------------


def test_default_templates_need_no_extra_columns(templates: LetterTemplates) -> None:
    """The default set passes check() for a roster with only the core columns."""
    templates.check([])

    assert {"hiring_manager", "department", "respond_by"} <= templates.optional
    assert {"role", "offer_amount", "start_date"} <= templates.required


def test_check_names_unknown_variables_and_available_ones(tmp_path: Path) -> None:
    """check() names each unknown variable, where it is used, and what exists."""
    directory = template_set(
        tmp_path,
        text="Dear {{ name }},\nyour manager is {{ hiring_managr }}.",
        html="<p>{{ bonus }}</p>",
    )
    templates = LetterTemplates.load(directory)

    with pytest.raises(TemplateProblem) as problem:
        templates.check(["hiring_manager"])

    message = str(problem.value)
    assert "hiring_managr (letter.txt line 2)" in message
    assert "bonus (letter.html line 1)" in message
    assert "available: company, currency, email, first_name, hiring_manager" in message


def test_guard_covers_only_its_own_branch(tmp_path: Path) -> None:
    """A variable also used outside its `is defined` guard is still required."""
    directory = template_set(
        tmp_path,
        text=(
            "{% if team is defined %}{{ team }}{% endif %}\n"
            "{{ team_lead if team_lead is defined else '' }}\n"
            "{{ desk | default('tbd') }}\n"
            "{{ team }}"
        ),
    )
    templates = LetterTemplates.load(directory)

    assert templates.optional == {"team_lead", "desk"}
    with pytest.raises(TemplateProblem, match=r"team \(letter.txt line 4\)"):
        templates.check([])


def test_included_templates_are_checked_too(tmp_path: Path) -> None:
    """A variable used in an included file is reported like any other."""
    directory = template_set(
        tmp_path,
        html="<p>Hi</p>\n{% include 'footer.html' %}",
        **{"footer.html": "<p>{{ signature }}</p>"},
    )
    templates = LetterTemplates.load(directory)

    with pytest.raises(TemplateProblem, match=r"signature \(footer.html line 1\)"):
        templates.check([])


def test_render_without_check_fails_on_unknown_variable(tmp_path: Path) -> None:
    """StrictUndefined makes a missing value an error naming the row and line."""
    templates = LetterTemplates.load(template_set(tmp_path, text="Hi\n\n{{ bonus }}"))

    with pytest.raises(TemplateProblem) as problem:
        templates.render(JANE, batch_id=BATCH_ID, sender=SENDER)

    assert "row 2: letter.txt line 3: 'bonus' is undefined" in str(problem.value)


def test_missing_template_is_named(tmp_path: Path) -> None:
    """A folder without letter.html is refused with the missing file's path."""
    directory = template_set(tmp_path)
    (directory / "letter.html").unlink()

    with pytest.raises(TemplateProblem, match=r"letter\.html: the template is missing"):
        LetterTemplates.load(directory)


def test_syntax_error_names_file_and_line(tmp_path: Path) -> None:
    """A template that does not parse is refused with its file and line."""
    directory = template_set(tmp_path, text="Dear {{ name }},\n\n{% if role %}oops")

    with pytest.raises(TemplateProblem, match=r"letter\.txt, line 3"):
        LetterTemplates.load(directory)


def test_unknown_locale_is_a_config_error() -> None:
    """A locale Babel does not know is refused at load time."""
    with pytest.raises(ConfigError, match="xx_YY"):
        LetterTemplates.load(DEFAULT_TEMPLATES, locale="xx_YY")


def test_unknown_currency_is_a_config_error() -> None:
    """A currency code that is not ISO 4217 is refused at load time."""
    with pytest.raises(ConfigError, match="DOLLARS"):
        LetterTemplates.load(DEFAULT_TEMPLATES, currency="DOLLARS")


# Identity ----------------------------------------------------------------------


def test_letter_id_is_deterministic() -> None:
    """The same batch and row always give the same UUIDv5; others differ."""
    letter_id = letter_id_for(BATCH_ID, 2)

    assert letter_id == letter_id_for(BATCH_ID, 2)
    assert uuid.UUID(letter_id).version == 5
    assert letter_id != letter_id_for(BATCH_ID, 3)
    assert letter_id != letter_id_for("another-batch", 2)


def test_message_id_derives_from_letter_id_and_is_stable(
    templates: LetterTemplates, letter: Letter
) -> None:
    """Rendering a row again gives the same letter id and Message-ID header."""
    again = templates.render(JANE, batch_id=BATCH_ID, sender=SENDER)

    assert again.letter_id == letter.letter_id == letter_id_for(BATCH_ID, 2)
    assert letter.message_id == f"<{letter.letter_id}@acme.example>"
    assert letter.message_id == message_id_for(letter.letter_id, "Acme.Example")
    assert parsed(build_message(letter, sender=SENDER))["Message-ID"] == (
        letter.message_id
    )


def test_message_id_encodes_an_international_domain() -> None:
    """A non-ASCII sender domain is written in its ASCII (IDNA) form."""
    assert message_id_for("abc", "bücher.example") == "<abc@xn--bcher-kva.example>"


# Messages ----------------------------------------------------------------------


def test_message_is_text_then_html_alternative(letter: Letter) -> None:
    """The message is multipart/alternative with plain text first, then HTML."""
    message = parsed(build_message(letter, sender=SENDER))

    assert message.get_content_type() == "multipart/alternative"
    parts = list(message.iter_parts())
    assert [part.get_content_type() for part in parts] == ["text/plain", "text/html"]
    assert body(parts[0]) == letter.text + "\n"
    assert body(parts[1]) == letter.html + "\n"
    assert str(message["From"]) == "Acme Talent <talent@acme.example>"
    assert str(message["To"]) == "Jane Doe <jane@example.com>"


@pytest.mark.parametrize("name", ["Zoë Müller", "李雷"])
def test_non_ascii_name_and_subject_round_trip(tmp_path: Path, name: str) -> None:
    """Non-ASCII names and subjects go out RFC 2047 encoded and come back intact."""
    templates = LetterTemplates.load(
        template_set(tmp_path, subject="Ihr Angebot, {{ name }}: {{ role }}")
    )
    sender = Address(display_name="Zoë's Café GmbH", addr_spec="hr@cafe.example")
    letter = templates.render(candidate(name=name), batch_id=BATCH_ID, sender=sender)

    message = build_message(letter, sender=sender)
    raw = wire(message)
    back = parsed(message)

    raw.decode("ascii")  # nothing unencoded on the wire
    assert raw_header(raw, b"To").startswith(b"=?utf-8?")
    assert b"=?utf-8?" in raw_header(raw, b"Subject")
    assert back["To"].addresses[0].display_name == name
    assert back["To"].addresses[0].addr_spec == "jane@example.com"
    assert back["From"].addresses[0].display_name == "Zoë's Café GmbH"
    assert back["Subject"] == f"Ihr Angebot, {name}: Data Engineer"


def test_long_lines_are_wrapped_on_the_wire(tmp_path: Path) -> None:
    """A 5,000-character line in any template still gives lines of 78 or fewer."""
    long_line = "{{ name }} " + "x" * 5000
    directory = template_set(
        tmp_path,
        subject=long_line,
        text=long_line + "\n" + "é" * 3000,
        html=f"<p>{long_line}</p>",
    )
    letter = LetterTemplates.load(directory).render(
        JANE, batch_id=BATCH_ID, sender=SENDER
    )

    message = build_message(letter, sender=SENDER)
    lines = wire(message).split(b"\r\n")

    assert max(len(line) for line in lines) <= FOLDED_LINE_LIMIT < SMTP_LINE_LIMIT
    assert b"\n" not in b"".join(lines)  # CRLF everywhere, no bare LF
    back = parsed(message)
    assert back["Subject"] == letter.subject
    text, html = back.iter_parts()
    assert body(text) == letter.text + "\n"
    assert body(html) == letter.html + "\n"


def test_reply_to_only_when_given(letter: Letter) -> None:
    """Reply-To is set from the argument, and absent without one."""
    with_reply = build_message(letter, sender=SENDER, reply_to="HR <hr@acme.example>")
    without = build_message(letter, sender=SENDER)

    assert str(parsed(with_reply)["Reply-To"]) == "HR <hr@acme.example>"
    assert "Reply-To" not in parsed(without)


def test_date_is_given_or_now_with_timezone(letter: Letter) -> None:
    """The Date header is the given moment, or now, and always has a timezone."""
    berlin = timezone(timedelta(hours=1))
    given = datetime(2027, 1, 2, 9, 30, tzinfo=berlin)

    dated = parsed(build_message(letter, sender=SENDER, date=given))
    now = parsed(build_message(letter, sender=SENDER))

    assert dated["Date"].datetime == given
    assert str(dated["Date"]).endswith("+0100")
    assert now["Date"].datetime.tzinfo is not None
    assert abs(now["Date"].datetime - datetime.now(UTC)) < timedelta(minutes=1)


def test_naive_date_is_refused(letter: Letter) -> None:
    """A Date without a timezone is a programming error, not a guess."""
    with pytest.raises(ValueError, match="timezone"):
        build_message(letter, sender=SENDER, date=datetime(2027, 1, 2, 9, 30))


def test_unusable_address_is_a_permanent_failure(letter: Letter) -> None:
    """A recipient that cannot go in a header fails for good, without the address."""
    broken = letter.model_copy(update={"recipient": "jane@exa mple@com"})

    with pytest.raises(DeliveryFailed) as failure:
        build_message(broken, sender=SENDER)

    assert failure.value.retriable is False
    assert "exa mple" not in str(failure.value)


@pytest.mark.parametrize(
    "name",
    ['Doe, Jane "JD"', "J. R. R. Tolkien", "Back\\slash", "N" * 120, "=?utf-8?q?x?="],
)
def test_awkward_display_names_round_trip(letter: Letter, name: str) -> None:
    """Names with specials, quotes, great length or a look of RFC 2047 come back.

    A long name stays on one line rather than being split into encoded words,
    which readers (the email package among them) join with spaces.
    """
    named = letter.model_copy(update={"recipient_name": name})

    message = build_message(named, sender=SENDER)
    back = parsed(message)

    assert back["To"].addresses[0].display_name == name
    assert back["To"].addresses[0].addr_spec == "jane@example.com"
    assert max(len(line) for line in wire(message).split(b"\r\n")) <= SMTP_LINE_LIMIT


def test_subject_that_looks_encoded_stays_literal(letter: Letter) -> None:
    """A subject a reader would decode as RFC 2047 is encoded, so it reads as typed."""
    subject = "Offer =?utf-8?q?caf=C3=A9?= inside"
    message = build_message(
        letter.model_copy(update={"subject": subject}), sender=SENDER
    )

    assert parsed(message)["Subject"] == subject


@pytest.mark.parametrize("field", ["subject", "recipient_name"])
def test_line_break_in_a_header_is_a_permanent_failure(
    letter: Letter, field: str
) -> None:
    """No value can add a header: a CR or LF fails the letter for good."""
    injected = letter.model_copy(update={field: "Offer\r\nBcc: x@evil.example"})

    with pytest.raises(DeliveryFailed) as failure:
        build_message(injected, sender=SENDER)

    assert failure.value.retriable is False


def test_body_holding_the_boundary_is_encoded(letter: Letter) -> None:
    """A body that contains the boundary line is encoded, so the parts stay whole."""
    boundary = f"=_offerletters_{letter.letter_id}"
    text = f"before\n--{boundary}--\nafter"
    message = build_message(letter.model_copy(update={"text": text}), sender=SENDER)

    plain, html = parsed(message).iter_parts()
    assert body(plain) == text + "\n"
    assert body(html) == letter.html + "\n"


def test_international_address_needs_smtputf8(letter: Letter) -> None:
    """A non-ASCII mailbox goes raw in UTF-8 and asks for SMTPUTF8; others do not."""
    josé = letter.model_copy(update={"recipient": "josé@example.com"})

    international = build_message(josé, sender=SENDER)
    plain = build_message(letter, sender=SENDER)

    assert international.mail_options == ["SMTPUTF8"]
    assert plain.mail_options == []
    assert "josé@example.com".encode() in raw_header(international.data, b"To")
    assert international.recipient == "josé@example.com"
    assert international.sender == "talent@acme.example"


def test_cjk_letter_goes_base64_and_comes_back(letter: Letter) -> None:
    """Text mostly outside ASCII takes the shorter base64 and decodes intact."""
    text = "李雷先生您好。" * 200
    message = build_message(letter.model_copy(update={"text": text}), sender=SENDER)

    assert b"Content-Transfer-Encoding: base64" in message.data
    plain, _html = parsed(message).iter_parts()
    assert body(plain) == text + "\n"


@pytest.mark.parametrize("subject", ["é" * 200, "李" * 100, "Offer 🎉 " * 40])
def test_long_non_ascii_subject_is_split_into_whole_characters(
    letter: Letter, subject: str
) -> None:
    """A long non-ASCII subject becomes encoded words that fit and decode intact."""
    message = build_message(
        letter.model_copy(update={"subject": subject}), sender=SENDER
    )

    assert max(len(line) for line in wire(message).split(b"\r\n")) <= FOLDED_LINE_LIMIT
    assert parsed(message)["Subject"] == subject
