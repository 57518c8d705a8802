"""Offer amounts and their currency: a number or typed text such as "$120,000",
"120 000 €" or "USD 95,000.50" read as a positive sum in whole cents, and the
ISO code a Currency cell or a currency sign names.
"""

from __future__ import annotations

import re
import unicodedata
from datetime import date, time, timedelta
from decimal import Decimal
from typing import Final

from babel.numbers import list_currencies

from offerletters.roster.cells import Cell, InvalidCell, cell_text

__all__ = ["CURRENCY_SYMBOLS", "parse_amount", "parse_currency_code"]

# Offer amounts are money: whole cents at most, and below a trillion.
CENT: Final = Decimal("0.01")
MAX_OFFER_AMOUNT: Final = Decimal(10) ** 12
# Formula results such as =A2*1.1 carry binary noise (132000.00000000001);
# a numeric cell this close to whole cents is read as those cents.
FLOAT_NOISE: Final = Decimal("1e-6")

# Currency signs that name exactly one currency; "$" and "¥" do not, so an
# amount written with them takes its currency from the Currency column, if any.
CURRENCY_SYMBOLS: Final[dict[str, str | None]] = {
    "€": "EUR",
    "£": "GBP",
    "₹": "INR",
    "Rs": "INR",
    "Rs.": "INR",
    "₩": "KRW",
    "₪": "ILS",
    "₱": "PHP",
    "₦": "NGN",
    "₺": "TRY",
    "₴": "UAH",
    "₫": "VND",
    "฿": "THB",
    "US$": "USD",
    "C$": "CAD",
    "CA$": "CAD",
    "A$": "AUD",
    "AU$": "AUD",
    "NZ$": "NZD",
    "S$": "SGD",
    "HK$": "HKD",
    "R$": "BRL",
    "$": None,
    "¥": None,
    "kr": None,
}

# The currency codes CLDR knows; anything else in a Currency cell is a typo.
_CURRENCY_CODES: Final = frozenset(list_currencies())


def parse_currency_code(text: str) -> str:
    """An ISO 4217 code from a Currency cell ("usd", "€" and "EUR" work)."""
    code = CURRENCY_SYMBOLS.get(text) or text.upper()
    if re.fullmatch(r"[A-Z]{3}", code) and code in _CURRENCY_CODES:
        return code
    raise InvalidCell(
        f"{text!r} is not a currency code",
        "write a three-letter ISO code, like USD or EUR",
    )


_AMOUNT_FIX: Final = "type the amount as a number, like 120000 or 120000.50"

# Currency marks, then the digits with their separators, then currency marks.
_AMOUNT_TEXT: Final = re.compile(
    r"(?P<prefix>\D*?)(?P<number>\d[\d.,']*(?:[eE][-+]?\d+)?)(?P<suffix>\D*)"
)


def parse_amount(cell: Cell) -> tuple[Decimal, str | None]:
    """A positive amount with at most two decimals, and the currency it names."""
    if isinstance(cell, bool | date | time | timedelta):
        raise InvalidCell(f"{cell_text(cell)} is not an amount", _AMOUNT_FIX)
    if isinstance(cell, int):
        return _checked_amount(Decimal(cell)), None
    if isinstance(cell, float):
        return _checked_amount(_float_amount(cell)), None

    value, currency = _amount_from_text(cell_text(cell))
    return _checked_amount(value), currency


def _float_amount(number: float) -> Decimal:
    """The decimal a float stands for: repr gives its shortest exact digits."""
    value = Decimal(repr(number))
    if not value.is_finite() or abs(value) >= MAX_OFFER_AMOUNT:
        return value
    cents = value.quantize(CENT)
    return cents if abs(value - cents) < FLOAT_NOISE else value


def _amount_from_text(text: str) -> tuple[Decimal, str | None]:
    """An amount typed as text: "$120,000", "120 000 €", "USD 95,000.50", "1.2e5"."""
    compact = "".join(text.split()).replace("\u2212", "-")
    match = _AMOUNT_TEXT.fullmatch(compact)
    if match is None:
        raise InvalidCell(f"{text!r} is not an amount", _AMOUNT_FIX)

    prefix, number, suffix = match.group("prefix", "number", "suffix")
    negative = "-" in prefix + suffix or ("(" in prefix and ")" in suffix)
    codes = {_currency_mark(prefix, text), _currency_mark(suffix, text)} - {None}
    if len(codes) > 1:
        raise InvalidCell(f"{text!r} names two currencies", _AMOUNT_FIX)

    value = Decimal(_plain_number(number, text))
    return (-value if negative else value), (codes.pop() if codes else None)


def _currency_mark(affix: str, text: str) -> str | None:
    """The currency an amount's prefix or suffix names; raises on other words."""
    mark = affix.strip("()+-")
    if not mark:
        return None
    if mark in CURRENCY_SYMBOLS:
        return CURRENCY_SYMBOLS[mark]
    if re.fullmatch(r"[A-Za-z]{3}", mark) and mark.upper() in _CURRENCY_CODES:
        return mark.upper()
    if all(unicodedata.category(char) == "Sc" for char in mark):
        return None
    raise InvalidCell(f"{text!r} is not an amount", _AMOUNT_FIX)


def _plain_number(number: str, text: str) -> str:
    """Digits with thousands separators removed and a "." decimal point."""
    mantissa, _, exponent = number.replace("'", "").replace("E", "e").partition("e")
    dots, commas = mantissa.count("."), mantissa.count(",")
    if dots and commas:
        point = "." if mantissa.rfind(".") > mantissa.rfind(",") else ","
        whole, _, fraction = mantissa.rpartition(point)
        whole = _ungrouped(whole, "," if point == "." else ".", text)
    elif commas == 1 and len(mantissa) - mantissa.rfind(",") - 1 in (1, 2):
        whole, _, fraction = mantissa.partition(",")
    elif commas or dots > 1:
        whole, fraction = _ungrouped(mantissa, "," if commas else ".", text), ""
    elif dots == 1 and len(mantissa) - mantissa.rfind(".") - 1 == 3 and not exponent:
        raise InvalidCell(
            f"{text!r} is ambiguous: the dot may separate thousands or decimals",
            "write the amount without a thousands separator, like 120000 or 120.50",
        )
    else:
        whole, _, fraction = mantissa.partition(".")

    if not whole.isdigit() or (fraction and not fraction.isdigit()):
        raise InvalidCell(f"{text!r} is not an amount", _AMOUNT_FIX)
    return f"{whole}.{fraction or 0}e{exponent or 0}"


def _ungrouped(whole: str, separator: str, text: str) -> str:
    """1,234,567 -> 1234567; Indian grouping (12,34,567) is accepted too."""
    first, *groups = whole.split(separator)
    western = all(len(group) == 3 for group in groups)
    indian = len(groups[-1]) == 3 and all(len(group) == 2 for group in groups[:-1])
    if not (1 <= len(first) <= 3 and (western or indian)):
        raise InvalidCell(f"{text!r} has misplaced thousands separators", _AMOUNT_FIX)
    return first + "".join(groups)


def _checked_amount(value: Decimal) -> Decimal:
    """The amount in plain form, once it is a positive sum in whole cents."""
    if not value.is_finite():
        raise InvalidCell("not an amount", _AMOUNT_FIX)
    if value < 0:
        raise InvalidCell(
            "the amount is negative", "type the offer as a positive number"
        )
    if value == 0:
        raise InvalidCell("the amount is zero", "type the offered amount")
    if value >= MAX_OFFER_AMOUNT:
        raise InvalidCell("the amount is implausibly large", _AMOUNT_FIX)
    if value != value.quantize(CENT):
        raise InvalidCell(
            "the amount has more than two decimal places", "round the amount to cents"
        )

    value = value.normalize()
    return value.quantize(Decimal(1)) if value == value.to_integral_value() else value
