"""API keys: every route but the probes and the docs needs `Authorization: Bearer`.

Keys come from OFFERLETTERS_API_KEYS, comma-separated, so a new key can be
added before an old one is withdrawn. The check is ASGI middleware, so a
request without a valid key is answered before a byte of its body is read;
a route dependency documents the scheme on the OpenAPI page and refuses any
request the middleware did not pass. OFFERLETTERS_DEV_MODE turns keys off.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence
from typing import Annotated, Final

import structlog
from fastapi import HTTPException, Request, Security, status
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from offerletters.config import Settings
from offerletters.errors import ConfigError

__all__ = [
    "PUBLIC_PATHS",
    "ApiKeys",
    "RequireApiKey",
    "is_public",
    "require_api_key",
]

log = structlog.get_logger(__name__)

# Answered without a key: liveness, readiness and metrics for the platform,
# and the OpenAPI page (the schema says which routes need a key, nothing more).
PUBLIC_PATHS: Final = frozenset(
    {
        "/healthz",
        "/readyz",
        "/metrics",
        "/docs",
        "/docs/oauth2-redirect",
        "/redoc",
        "/openapi.json",
    }
)
# Shorter keys are refused at start-up: they can be guessed.
MIN_KEY_CHARS: Final = 16

# Set in the ASGI scope by RequireApiKey: "key" or "dev_mode".
AUTH_SCOPE_KEY: Final = "offerletters.auth"

CHALLENGE: Final = {"WWW-Authenticate": "Bearer"}
MISSING_KEY: Final = (
    "this route needs an API key: send the header 'Authorization: Bearer <key>'"
)
INVALID_KEY: Final = "the API key is not valid"

bearer = HTTPBearer(
    auto_error=False,
    scheme_name="apiKey",
    description="One of the keys in the server's OFFERLETTERS_API_KEYS.",
)


class ApiKeys:
    """The configured keys, held as digests and compared in constant time."""

    def __init__(self, keys: Sequence[str], *, dev_mode: bool) -> None:
        self.dev_mode = dev_mode
        # Digests have one length, so comparing them tells nothing about a
        # key's length either.
        self._digests = [_digest(key) for key in keys]

    @classmethod
    def from_settings(cls, settings: Settings) -> ApiKeys:
        """The keys of OFFERLETTERS_API_KEYS; ConfigError when none can be used."""
        raw = settings.api_keys.get_secret_value() if settings.api_keys else ""
        keys = [key.strip() for key in raw.split(",") if key.strip()]
        if not keys and not settings.dev_mode:
            raise ConfigError(
                "the API has no keys: set OFFERLETTERS_API_KEYS to one or more"
                " keys, comma-separated (for example from `openssl rand -hex 32`),"
                " or set OFFERLETTERS_DEV_MODE=true to run without keys on a"
                " development machine"
            )

        for number, key in enumerate(keys, start=1):
            if len(key) < MIN_KEY_CHARS or not _is_token(key):
                # The key itself is never echoed, only where it sits in the list.
                raise ConfigError(
                    f"key {number} of OFFERLETTERS_API_KEYS is not usable: a key"
                    f" needs at least {MIN_KEY_CHARS} characters, printable ASCII"
                    " without spaces (for example from `openssl rand -hex 32`)"
                )

        return cls(keys, dev_mode=settings.dev_mode)

    def accepts(self, token: str) -> bool:
        """True when the token is one of the keys.

        Every key is compared, even after a match, so the time taken does not
        tell which key matched or how many there are before it.
        """
        given = _digest(token)
        matched = False
        for digest in self._digests:
            matched |= hmac.compare_digest(given, digest)
        return matched

    def refusal(self, authorization: str | None) -> str | None:
        """Why a request with this Authorization header is refused, or None."""
        scheme, _, token = (authorization or "").partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            return MISSING_KEY
        if not self.accepts(token):
            return INVALID_KEY
        return None


class RequireApiKey:
    """ASGI middleware: answer 401 before the app (and its body parsing) runs."""

    def __init__(self, app: ASGIApp, keys: ApiKeys) -> None:
        self.app = app
        self._keys = keys

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or is_public(_route_path(scope)):
            await self.app(scope, receive, send)
            return

        if self._keys.dev_mode:
            scope[AUTH_SCOPE_KEY] = "dev_mode"
            await self.app(scope, receive, send)
            return

        refusal = self._keys.refusal(Headers(scope=scope).get("authorization"))
        if refusal is not None:
            log.warning(
                "api_key_refused",
                reason="missing" if refusal == MISSING_KEY else "invalid",
                method=scope["method"],
                path=scope["path"],
            )
            response = JSONResponse(
                {"detail": refusal}, status_code=401, headers=CHALLENGE
            )
            await response(scope, receive, send)
            return

        scope[AUTH_SCOPE_KEY] = "key"
        await self.app(scope, receive, send)


async def require_api_key(
    request: Request,
    _credentials: Annotated[HTTPAuthorizationCredentials | None, Security(bearer)],
) -> None:
    """Route dependency: documents the bearer scheme; the middleware checks it.

    Refuses any request RequireApiKey did not let through, so a route can
    never be served without a key by a slip in the list of public paths.
    """
    if request.scope.get(AUTH_SCOPE_KEY) is None:
        raise HTTPException(
            status_code=status.HTTP_401_UNAUTHORIZED,
            detail=MISSING_KEY,
            headers=CHALLENGE,
        )


def is_public(path: str) -> bool:
    """True for the paths that answer without a key."""
    return path in PUBLIC_PATHS


def _route_path(scope: Scope) -> str:
    """The path as the app routes it: without the prefix of a proxy's root_path."""
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    return path[len(root) :] if root and path.startswith(root) else path


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8", "surrogateescape")).digest()


def _is_token(key: str) -> bool:
    return key.isascii() and key.isprintable() and " " not in key
