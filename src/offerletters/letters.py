"""Letters: templates rendered per candidate, and the email message built from one.

A template set is three files in one folder, compiled once in a Jinja2 sandbox.
`LetterTemplates.render` turns a candidate into a `Letter` (the Kafka payload);
`build_message` turns a letter into the MIME message the mailer sends.
"""

from __future__ import annotations

import copy
import email.policy
import re
import traceback
import uuid
from collections.abc import Callable, Collection, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from email.errors import MessageError
from email.headerregistry import Address, BaseHeader, HeaderRegistry
from email.message import EmailMessage
from functools import lru_cache
from pathlib import Path

from babel import Locale, UnknownLocaleError
from babel.dates import format_date
from babel.numbers import get_currency_precision, is_currency
from jinja2 import (
    FileSystemLoader,
    StrictUndefined,
    Template,
    TemplateError,
    TemplateNotFound,
    TemplateSyntaxError,
    meta,
    nodes,
    pass_context,
    select_autoescape,
)
from jinja2.runtime import Context
from jinja2.sandbox import SandboxedEnvironment
from pydantic import BaseModel, ConfigDict

from offerletters.errors import ConfigError, DeliveryFailed, TemplateProblem
from offerletters.roster import Candidate

__all__ = [
    "CORE_VARIABLES",
    "HTML_TEMPLATE",
    "SUBJECT_TEMPLATE",
    "TEXT_TEMPLATE",
    "Letter",
    "LetterTemplates",
    "build_message",
    "letter_id_for",
    "message_id_for",
]

SUBJECT_TEMPLATE = "subject.txt"
TEXT_TEMPLATE = "letter.txt"
HTML_TEMPLATE = "letter.html"

# What every letter's context holds, whatever extra columns the roster has.
CORE_VARIABLES = frozenset(
    {
        "name",
        "first_name",
        "email",
        "role",
        "offer_amount",
        "start_date",
        "location",
        "currency",
        "company",
        "sender_email",
    }
)

# Fixed for good: changing it would give a re-published batch new letter ids,
# and so new Message-IDs, and the ledger would no longer recognise its letters.
LETTER_ID_NAMESPACE = uuid.UUID("1ab64271-6ad7-4990-a0bf-cab19a589eca")

# English CLDR's long date is US-style ("January 15, 2027"); letters read
# "15 January 2027" in every English locale.
ENGLISH_DATE_PATTERN = "d MMMM y"

# Amounts and dates repeat across a roster, so formatting each once pays off.
FORMAT_CACHE_SIZE = 4096


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

# Any run of whitespace, including CR, LF and the Unicode line separators.
_WHITESPACE = re.compile(r"\s+")


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


class _FilterInputError(ValueError):
    """A filter was given a value it cannot format; the message names no value."""


@dataclass(frozen=True, slots=True)
class _Use:
    """Where a template first reads a variable and whether a guard protects it."""

    where: str
    guarded: bool


@dataclass(frozen=True, slots=True, eq=False)
class LetterTemplates:
    """A compiled template set: subject, plain-text and HTML body.

    Build it with `load`. `variables` is every name the templates read;
    `optional` those read only behind `is defined` or `| default(...)`, which
    a roster may therefore lack.
    """

    directory: Path
    currency: str
    variables: frozenset[str]
    optional: frozenset[str]
    _subject: Template = field(repr=False)
    _text: Template = field(repr=False)
    _html: Template = field(repr=False)
    _uses: Mapping[str, _Use] = field(repr=False)
    _files: frozenset[str] = field(repr=False)
    _globals: Mapping[str, object] = field(repr=False)

    @classmethod
    def load(
        cls, directory: Path, *, locale: str = "en_US", currency: str = "USD"
    ) -> LetterTemplates:
        """Read and compile subject.txt, letter.txt and letter.html from a folder.

        Raises TemplateProblem naming the file and line of a missing or
        invalid template, and ConfigError for an unknown locale or currency.
        """
        babel_locale = _parse_locale(locale)
        if not is_currency(currency):
            raise ConfigError(
                f"currency {currency!r} is not an ISO 4217 code Babel knows"
                " (OFFERLETTERS_CURRENCY); write it like USD or EUR"
            )

        loader = FileSystemLoader(directory, encoding="utf-8")
        env = _environment(loader, babel_locale)
        names = (SUBJECT_TEMPLATE, TEXT_TEMPLATE, HTML_TEMPLATE)
        subject, text, html = (_compile(env, directory, name) for name in names)
        uses, files = _analyse(env, loader, directory, names)

        return cls(
            directory=directory,
            currency=currency,
            variables=frozenset(uses),
            optional=frozenset(name for name, use in uses.items() if use.guarded),
            _subject=subject,
            _text=text,
            _html=html,
            _uses=uses,
            _files=files,
            _globals=dict(env.globals),
        )

    @property
    def required(self) -> frozenset[str]:
        """The variables a letter cannot be rendered without."""
        return self.variables - self.optional

    def check(self, available: Collection[str]) -> None:
        """Raise TemplateProblem if the templates need a variable a roster lacks.

        `available` is the roster's extra column names (snake_case); the core
        variables are always available and may be included or not.
        """
        known = CORE_VARIABLES | frozenset(available)
        unknown = sorted(self.required - known)
        if not unknown:
            return

        listed = ", ".join(f"{name} ({self._uses[name].where})" for name in unknown)
        raise TemplateProblem(
            f"the templates in {self.directory} use {listed}, which the roster"
            f" does not have; available: {', '.join(sorted(known))}. Add the"
            " column, fix the name, or wrap its use in"
            " {% if ... is defined %}"
        )

    def render(self, candidate: Candidate, *, batch_id: str, sender: Address) -> Letter:
        """Render one candidate's letter; raise TemplateProblem naming the row."""
        context = self._context(candidate, sender)
        subject = _one_line(self._render(self._subject, context, candidate.row))
        if not subject:
            raise TemplateProblem(
                f"row {candidate.row}: {SUBJECT_TEMPLATE} rendered an empty subject"
            )

        letter_id = letter_id_for(batch_id, candidate.row)
        return Letter(
            letter_id=letter_id,
            batch_id=batch_id,
            row=candidate.row,
            recipient=candidate.email,
            recipient_name=_one_line(candidate.name),
            subject=subject,
            text=self._render(self._text, context, candidate.row),
            html=self._render(self._html, context, candidate.row),
            message_id=message_id_for(letter_id, sender.domain),
        )

    def _context(self, candidate: Candidate, sender: Address) -> dict[str, object]:
        """Extra columns first, so a core field of the same name replaces them.

        A roster's own first_name column beats the derived one: only a person
        knows which of their names comes first. Jinja's globals (range,
        namespace, ...) come first of all, since `_run` does not add them.
        """
        context: dict[str, object] = {
            **self._globals,
            "first_name": _first_name(candidate.name),
        }
        context.update(candidate.extra)
        context.update(
            name=candidate.name,
            email=candidate.email,
            role=candidate.role,
            offer_amount=candidate.offer_amount,
            start_date=candidate.start_date,
            location=candidate.location,
            currency=candidate.currency or self.currency,
            company=sender.display_name or sender.domain,
            sender_email=sender.addr_spec,
        )
        return context

    def _render(self, template: Template, context: dict[str, object], row: int) -> str:
        # A template is code the uploader wrote: whatever it raises is a
        # problem with the template or the row, never with us.
        try:
            return _run(template, context)
        except Exception as exc:
            where = self._where(exc, template)
            reason = _reason(exc)
            raise TemplateProblem(f"row {row}: {where}: {reason}") from exc

    def _where(self, exc: BaseException, template: Template) -> str:
        """The innermost template file and line in the traceback of a failure."""
        where = Path(template.filename or "?").name
        for frame, line in traceback.walk_tb(exc.__traceback__):
            if frame.f_code.co_filename in self._files:
                where = f"{Path(frame.f_code.co_filename).name} line {line}"

        return where


def _run(template: Template, context: dict[str, object]) -> str:
    """`Template.render`, minus copying the context and globals for each template.

    That copy costs a quarter of the render time, and one letter renders three
    templates from the same context.
    """
    try:
        return "".join(
            template.root_render_func(template.new_context(context, shared=True))
        )
    except Exception:
        # Raises it again with the template's own file and lines in the traceback.
        template.environment.handle_exception()


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


def _parse_locale(locale: str) -> Locale:
    try:
        return Locale.parse(locale)
    except (UnknownLocaleError, ValueError) as exc:
        raise ConfigError(
            f"locale {locale!r} is not one Babel knows (OFFERLETTERS_LOCALE);"
            " write it like en_US or de_DE"
        ) from exc


def _environment(loader: FileSystemLoader, locale: Locale) -> SandboxedEnvironment:
    """A sandbox that escapes HTML files only and fails on any missing value."""
    env = SandboxedEnvironment(
        loader=loader,
        autoescape=select_autoescape(
            enabled_extensions=("html", "htm"), default_for_string=False
        ),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        # The compiled templates are kept by LetterTemplates; never re-read.
        auto_reload=False,
    )
    env.filters["money"] = _money_filter(locale)
    env.filters["longdate"] = _longdate_filter(locale)
    return env


def _compile(env: SandboxedEnvironment, directory: Path, name: str) -> Template:
    try:
        return env.get_template(name)
    except TemplateNotFound as exc:
        raise TemplateProblem(
            f"{directory / name}: the template is missing; a template set needs"
            f" {SUBJECT_TEMPLATE}, {TEXT_TEMPLATE} and {HTML_TEMPLATE}"
        ) from exc
    except TemplateSyntaxError as exc:
        raise TemplateProblem(
            f"{exc.filename or directory / name}, line {exc.lineno}: {exc.message}"
        ) from exc
    except UnicodeDecodeError as exc:
        raise TemplateProblem(f"{directory / name}: not UTF-8 text") from exc


def _analyse(
    env: SandboxedEnvironment,
    loader: FileSystemLoader,
    directory: Path,
    names: Collection[str],
) -> tuple[dict[str, _Use], frozenset[str]]:
    """Every variable the templates (and what they include) read from the context.

    Returns each variable's first use, guarded only if every use is, and the
    paths of all template files involved.
    """
    uses: dict[str, _Use] = {}
    files: set[str] = set()
    pending = list(names)
    seen = set(pending)
    while pending:
        name = pending.pop(0)
        try:
            source, filename, _ = loader.get_source(env, name)
            ast = env.parse(source, name, filename)
            undeclared = meta.find_undeclared_variables(ast)
        except TemplateNotFound as exc:
            raise TemplateProblem(
                f"{directory}: {name} is included but missing"
            ) from exc
        except TemplateSyntaxError as exc:
            raise TemplateProblem(
                f"{exc.filename or name}, line {exc.lineno}: {exc.message}"
            ) from exc
        except UnicodeDecodeError as exc:
            raise TemplateProblem(f"{directory / name}: not UTF-8 text") from exc

        files.add(filename or name)
        for variable, use in _name_uses(ast, name):
            if variable in undeclared:
                uses[variable] = _merged(uses.get(variable), use)

        for referenced in meta.find_referenced_templates(ast):
            if referenced is None:
                raise TemplateProblem(
                    f"{name}: includes a template chosen at render time;"
                    " name it literally so it can be checked"
                )
            if referenced not in seen:
                seen.add(referenced)
                pending.append(referenced)

    return uses, frozenset(files)


def _merged(earlier: _Use | None, later: _Use) -> _Use:
    """A variable is optional only if no use of it is unguarded."""
    if earlier is None or (earlier.guarded and not later.guarded):
        return later

    return earlier


def _name_uses(
    node: nodes.Node, file: str, safe: frozenset[str] = frozenset()
) -> Iterator[tuple[str, _Use]]:
    """Each read of a name in a template, with whether a guard makes it safe.

    `safe` holds the names known to be defined where `node` runs: inside
    `{% if x is defined %}`, the right of `x is defined and ...`, and the like.
    """
    if isinstance(node, nodes.Name):
        if node.ctx == "load":
            where = f"{file} line {node.lineno}"
            yield node.name, _Use(where, guarded=node.name in safe)
        return

    guarded = _tested_name(node) or _defaulted_name(node)
    if guarded is not None:
        yield guarded.name, _Use(f"{file} line {guarded.lineno}", guarded=True)
        for child in node.iter_child_nodes(exclude=("node",)):
            yield from _name_uses(child, file, safe)
        return

    if isinstance(node, nodes.If | nodes.CondExpr):
        when_true, when_false = _guards(node.test)
        yield from _name_uses(node.test, file, safe)
        for child in _branches(node, taken=True):
            yield from _name_uses(child, file, safe | when_true)
        for child in _branches(node, taken=False):
            yield from _name_uses(child, file, safe | when_false)
        return

    if isinstance(node, nodes.And | nodes.Or):
        when_true, when_false = _guards(node.left)
        # The right side only runs when the left was true (and) or false (or).
        right_safe = when_true if isinstance(node, nodes.And) else when_false
        yield from _name_uses(node.left, file, safe)
        yield from _name_uses(node.right, file, safe | right_safe)
        return

    for child in node.iter_child_nodes():
        yield from _name_uses(child, file, safe)


def _branches(node: nodes.If | nodes.CondExpr, *, taken: bool) -> list[nodes.Node]:
    """The nodes that run when the test is true (taken) or false."""
    if isinstance(node, nodes.If):
        return list(node.body) if taken else [*node.elif_, *node.else_]

    branch = node.expr1 if taken else node.expr2
    return [] if branch is None else [branch]


def _guards(test: nodes.Node) -> tuple[frozenset[str], frozenset[str]]:
    """The names a test proves defined when it is true, and when it is false."""
    name = _tested_name(test)
    if name is not None:
        proved = frozenset({name.name})
        nothing: frozenset[str] = frozenset()
        is_defined = isinstance(test, nodes.Test) and test.name == "defined"
        return (proved, nothing) if is_defined else (nothing, proved)

    if isinstance(test, nodes.Not):
        when_true, when_false = _guards(test.node)
        return when_false, when_true

    if isinstance(test, nodes.And):
        return _guards(test.left)[0] | _guards(test.right)[0], frozenset()

    if isinstance(test, nodes.Or):
        return frozenset(), _guards(test.left)[1] | _guards(test.right)[1]

    return frozenset(), frozenset()


def _tested_name(node: nodes.Node) -> nodes.Name | None:
    """The name in `name is defined` or `name is undefined`, if that is the node."""
    if (
        isinstance(node, nodes.Test)
        and node.name in ("defined", "undefined")
        and isinstance(node.node, nodes.Name)
    ):
        return node.node

    return None


def _defaulted_name(node: nodes.Node) -> nodes.Name | None:
    """The name in `name | default(...)`, which never fails when it is missing."""
    if (
        isinstance(node, nodes.Filter)
        and node.name in ("default", "d")
        and isinstance(node.node, nodes.Name)
    ):
        return node.node

    return None


def _money_filter(locale: Locale) -> Callable[..., str]:
    """`money`: "$120,000" for a whole amount, "$120,000.50" otherwise.

    The currency is the filter's argument, else the letter's `currency`.
    """
    standard = locale.currency_formats["standard"]
    whole = copy.copy(standard)
    whole.frac_prec = (0, 0)

    @lru_cache(maxsize=FORMAT_CACHE_SIZE)
    def formatted(amount: Decimal, currency: str) -> str:
        rounded = round(amount, get_currency_precision(currency))
        if rounded == rounded.to_integral_value():
            return str(
                whole.apply(rounded, locale, currency=currency, currency_digits=False)
            )

        return str(standard.apply(rounded, locale, currency=currency))

    @pass_context
    def money(context: Context, amount: object, currency: str | None = None) -> str:
        return formatted(_as_decimal(amount), currency or context["currency"])

    return money


def _longdate_filter(locale: Locale) -> Callable[[object], str]:
    """`longdate`: "15 January 2027" in English, the locale's long date elsewhere."""
    pattern = ENGLISH_DATE_PATTERN if locale.language == "en" else "long"

    @lru_cache(maxsize=FORMAT_CACHE_SIZE)
    def formatted(day: date) -> str:
        return str(format_date(day, pattern, locale=locale))

    def longdate(value: object) -> str:
        return formatted(_as_date(value))

    return longdate


def _as_decimal(value: object) -> Decimal:
    """An amount from a core field (Decimal) or an extra column (text)."""
    if isinstance(value, bool) or not isinstance(value, Decimal | int | float | str):
        raise _FilterInputError("the money filter needs a number")

    try:
        amount = Decimal(str(value).strip())
    except InvalidOperation:
        raise _FilterInputError(
            "the money filter needs a plain number like 5000 or 5000.50"
        ) from None

    if not amount.is_finite():
        raise _FilterInputError("the money filter needs a finite number")

    return amount


def _as_date(value: object) -> date:
    """A date from a core field (date) or an extra column (ISO text)."""
    if isinstance(value, datetime):
        return value.date()

    if isinstance(value, date):
        return value

    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value.strip()).date()
        except ValueError:
            raise _FilterInputError(
                "the longdate filter needs a date like 2027-01-15"
            ) from None

    raise _FilterInputError("the longdate filter needs a date")


def _first_name(name: str) -> str:
    """The first word of a name, or the whole name when it has no spaces.

    Names written without spaces (李雷) are addressed in full rather than cut.
    """
    words = name.split(maxsplit=1)
    return words[0] if words else name


def _one_line(value: str) -> str:
    """A header value: every run of whitespace, line breaks included, one space."""
    return _WHITESPACE.sub(" ", value).strip()


def _reason(exc: Exception) -> str:
    """Why a render failed, without echoing values: they may be salaries."""
    if isinstance(exc, TemplateError | _FilterInputError):
        return str(exc)

    return type(exc).__name__
