"""Sealing: letters encrypted with AES-256-GCM while they wait in Kafka.

A keyring holds named keys from OFFERLETTERS_PAYLOAD_KEYS; the first seals,
every one opens, so keys can be rotated without a flag day. A sealed value
is bound to its key id and its letter id: moved to another letter, altered or
opened with the wrong key, it fails to open instead of yielding wrong bytes.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from offerletters.errors import OfferLettersError

__all__ = [
    "KEY_BYTES",
    "Keyring",
    "SealBroken",
    "SealError",
    "Sealed",
    "UnknownKeyId",
    "new_key",
]

# AES-256: a key is 32 random bytes, written in base64url in the settings.
KEY_BYTES = 32
# A fresh random nonce per letter; 96 bits is the size GCM is built around.
NONCE_BYTES = 12
# The first byte of every sealed value names its layout, so a later change
# of algorithm can live beside this one.
ENVELOPE_V1 = b"\x01"
# Key ids travel in a Kafka header and in logs: short, plain and unambiguous.
_KEY_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")
_FORMAT_HINT = (
    "write it as KID=KEY[,KID2=KEY2] where KID is letters, digits, '.', '_' or '-'"
    " and KEY is 32 random bytes in base64url; make a key with"
    " `python -c 'from offerletters.sealing import new_key; print(new_key())'`"
)


class SealError(OfferLettersError):
    """A sealed letter cannot be opened; says why and by which key, never what."""

    def __init__(self, reason: str, *, kid: str) -> None:
        super().__init__(reason)
        self.reason = reason
        self.kid = kid


class UnknownKeyId(SealError):
    """The letter was sealed with a key this process does not hold."""


class SealBroken(SealError):
    """The sealed bytes were altered, cut, moved to another letter or mislabelled."""


@dataclass(frozen=True, slots=True)
class Sealed:
    """A sealed value and the id of the key that sealed it."""

    kid: str
    value: bytes


class Keyring:
    """Named AES-256-GCM keys: the first seals, all of them open."""

    def __init__(self, keys: Mapping[str, bytes]) -> None:
        if not keys:
            raise ValueError("a keyring needs at least one key")

        for kid, key in keys.items():
            if not _KEY_ID.fullmatch(kid):
                raise ValueError(f"key id {kid!r} is not usable; {_FORMAT_HINT}")
            if len(key) != KEY_BYTES:
                raise ValueError(
                    f"key {kid!r} is {len(key)} bytes, not {KEY_BYTES}; {_FORMAT_HINT}"
                )

        self._ciphers = {kid: AESGCM(key) for kid, key in keys.items()}
        self.current_kid = next(iter(keys))

    @classmethod
    def parse(cls, text: str) -> Keyring:
        """Read `kid=base64url,kid2=base64url`; errors name the entry, never a key."""
        keys: dict[str, bytes] = {}
        for position, entry in enumerate(_entries(text), start=1):
            kid, equals, encoded = entry.partition("=")
            kid = kid.strip()
            if not equals or not kid:
                raise ValueError(f"entry {position} has no 'KID='; {_FORMAT_HINT}")
            if kid in keys:
                raise ValueError(f"key id {kid!r} appears twice; {_FORMAT_HINT}")

            keys[kid] = _decode_key(kid, encoded.strip())

        if not keys:
            raise ValueError(f"no key given; {_FORMAT_HINT}")
        return cls(keys)

    @property
    def kids(self) -> list[str]:
        """Every key id held, the sealing one first."""
        return list(self._ciphers)

    def seal(self, plain: bytes, *, letter_id: str) -> Sealed:
        """Encrypt with the first key, bound to that key's id and to the letter."""
        kid = self.current_kid
        nonce = os.urandom(NONCE_BYTES)
        sealed = self._ciphers[kid].encrypt(nonce, plain, _bound_to(kid, letter_id))
        return Sealed(kid, ENVELOPE_V1 + nonce + sealed)

    def open(self, sealed: Sealed, *, letter_id: str) -> bytes:
        """The plain bytes; UnknownKeyId or SealBroken when they cannot be had."""
        cipher = self._ciphers.get(sealed.kid)
        if cipher is None:
            raise UnknownKeyId(
                f"sealed with payload key {sealed.kid!r}, which this process does"
                f" not hold (it holds {', '.join(map(repr, self.kids))})",
                kid=sealed.kid,
            )

        envelope, nonce = sealed.value[:1], sealed.value[1 : 1 + NONCE_BYTES]
        if envelope != ENVELOPE_V1:
            raise SealBroken("not a sealed letter this version knows", kid=sealed.kid)

        try:
            return cipher.decrypt(
                nonce,
                sealed.value[1 + NONCE_BYTES :],
                _bound_to(sealed.kid, letter_id),
            )
        except (InvalidTag, ValueError) as exc:
            raise SealBroken(
                "altered, cut, or not sealed for this letter with this key",
                kid=sealed.kid,
            ) from exc


def new_key() -> str:
    """A fresh random key, base64url without padding, for OFFERLETTERS_PAYLOAD_KEYS."""
    return base64.urlsafe_b64encode(os.urandom(KEY_BYTES)).decode().rstrip("=")


def _entries(text: str) -> Iterator[str]:
    for entry in text.split(","):
        if entry.strip():
            yield entry


def _decode_key(kid: str, encoded: str) -> bytes:
    """Base64url with or without padding; the message never repeats the key."""
    padded = encoded + "=" * (-len(encoded) % 4)
    try:
        key = base64.b64decode(padded, altchars=b"-_", validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(
            f"key {kid!r} is not base64url; {_FORMAT_HINT}"
        ) from None  # the cause would quote the key

    if len(key) != KEY_BYTES:
        raise ValueError(
            f"key {kid!r} is {len(key)} bytes, not {KEY_BYTES}; {_FORMAT_HINT}"
        )
    return key


def _bound_to(kid: str, letter_id: str) -> bytes:
    """Associated data: authenticated with the letter but not encrypted."""
    return b"\x00".join(
        (b"offerletters-letter", ENVELOPE_V1, kid.encode(), letter_id.encode())
    )
