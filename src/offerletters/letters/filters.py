"""The `money` and `longdate` template filters, formatted by Babel for one locale.

`parse_locale` turns the configured locale name into that Babel locale.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from functools import lru_cache

from babel import Locale, UnknownLocaleError
from babel.dates import format_date
from babel.numbers import get_currency_precision
from jinja2 import pass_context
from jinja2.runtime import Context

from offerletters.errors import ConfigError

__all__ = ["FilterInputError", "longdate_filter", "money_filter", "parse_locale"]

# English CLDR's long date is US-style ("January 15, 2027"); letters read
# "15 January 2027" in every English locale.
ENGLISH_DATE_PATTERN = "d MMMM y"

# Amounts and dates repeat across a roster, so formatting each once pays off.
FORMAT_CACHE_SIZE = 4096


class FilterInputError(ValueError):
    """A filter was given a value it cannot format; the message names no value."""


def parse_locale(locale: str) -> Locale:
    try:
        return Locale.parse(locale)
    except (UnknownLocaleError, ValueError) as exc:
        raise ConfigError(
            f"locale {locale!r} is not one Babel knows (OFFERLETTERS_LOCALE);"
            " write it like en_US or de_DE"
        ) from exc


def money_filter(locale: Locale) -> Callable[..., str]:
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


def longdate_filter(locale: Locale) -> Callable[[object], str]:
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
        raise FilterInputError("the money filter needs a number")

    try:
        amount = Decimal(str(value).strip())
    except InvalidOperation:
        raise FilterInputError(
            "the money filter needs a plain number like 5000 or 5000.50"
        ) from None

    if not amount.is_finite():
        raise FilterInputError("the money filter needs a finite number")

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
            raise FilterInputError(
                "the longdate filter needs a date like 2027-01-15"
            ) from None

    raise FilterInputError("the longdate filter needs a date")
