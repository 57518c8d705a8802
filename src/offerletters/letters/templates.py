"""`LetterTemplates`: three template files in one folder, compiled in a Jinja2 sandbox.

It checks a roster's columns against what the templates read, and renders one
`Letter` per candidate.
"""

from __future__ import annotations

import re
import traceback
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from email.headerregistry import Address
from pathlib import Path

from babel import Locale
from babel.numbers import is_currency
from jinja2 import (
    FileSystemLoader,
    StrictUndefined,
    Template,
    TemplateError,
    TemplateNotFound,
    TemplateSyntaxError,
    select_autoescape,
)
from jinja2.sandbox import SandboxedEnvironment

from offerletters.errors import ConfigError, TemplateProblem
from offerletters.letters.analysis import Use, analyse
from offerletters.letters.filters import (
    FilterInputError,
    longdate_filter,
    money_filter,
    parse_locale,
)
from offerletters.letters.letter import Letter, letter_id_for, message_id_for
from offerletters.roster import FIRST_NAME_KEY, Candidate

__all__ = [
    "CORE_VARIABLES",
    "HTML_TEMPLATE",
    "SUBJECT_TEMPLATE",
    "TEXT_TEMPLATE",
    "LetterTemplates",
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

# Any run of whitespace, including CR, LF and the Unicode line separators.
_WHITESPACE = re.compile(r"\s+")


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
    _uses: Mapping[str, Use] = field(repr=False)
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
        babel_locale = parse_locale(locale)
        if not is_currency(currency):
            raise ConfigError(
                f"currency {currency!r} is not an ISO 4217 code Babel knows"
                " (OFFERLETTERS_CURRENCY); write it like USD or EUR"
            )

        loader = FileSystemLoader(directory, encoding="utf-8")
        env = _environment(loader, babel_locale)
        names = (SUBJECT_TEMPLATE, TEXT_TEMPLATE, HTML_TEMPLATE)
        subject, text, html = (_compile(env, directory, name) for name in names)
        uses, files = analyse(env, loader, directory, names)

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
            # The folder's name only: the server's paths stay out of answers.
            f"the templates in {self.directory.name}/ use {listed}, which the roster"
            f" does not have; available: {', '.join(sorted(known))}. Add the"
            " column, fix the name, or wrap its use in"
            " {% if ... is defined %}"
        )

    def first_use(self, name: str) -> str:
        """Where the templates first read a variable, as "letter.txt line 17"."""
        return self._uses[name].where

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
        given = candidate.extra.get(FIRST_NAME_KEY)
        context: dict[str, object] = {**self._globals, **candidate.extra}
        # The greeting ends in its own comma: "Dear Johnny,", never "Johnny,,".
        context["first_name"] = _bare(given) if given else _first_name(candidate.name)
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
    env.filters["money"] = money_filter(locale)
    env.filters["longdate"] = longdate_filter(locale)
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


# Words after a comma that end a name rather than begin one ("Smith, Jr.").
# Compared without dots, so "Ph.D." is "phd".
_NAME_SUFFIXES = frozenset(
    {"jr", "sr", "ii", "iii", "iv", "phd", "md", "esq", "mba", "cpa", "dds", "rn"}
)


def _first_name(name: str) -> str:
    """The first word of a name, or the whole name when it has no spaces.

    Names written without spaces (李雷) are addressed in full rather than cut.
    A comma puts the family name first, as HR systems export names: "Smith,
    John" and "van der Berg, Anna" are addressed as John and Anna; unless a
    suffix follows it, as in "John Smith, Jr.".
    """
    _family, comma, given = name.partition(",")
    words_after = _words(given) if comma else []
    after_comma = _bare(words_after[0]) if words_after else ""
    if after_comma and after_comma.replace(".", "").casefold() not in _NAME_SUFFIXES:
        return after_comma

    words = _words(name)
    return _bare(words[0]) if words else name


def _words(text: str) -> list[str]:
    """Words of a name, without stray punctuation standing on its own."""
    return [word for word in text.split() if _bare(word)]


def _bare(word: str) -> str:
    return word.strip(",;")


def _one_line(value: str) -> str:
    """A header value: every run of whitespace, line breaks included, one space."""
    return _WHITESPACE.sub(" ", value).strip()


def _reason(exc: Exception) -> str:
    """Why a render failed, without echoing values: they may be salaries."""
    if isinstance(exc, TemplateError | FilterInputError):
        return str(exc)

    return type(exc).__name__
