"""Who is asking, and what they may see.

:class:`Authenticator` turns a handshake or an HTTP request into a
:class:`Principal` or refuses it with :class:`AuthError` (an HTTP status and
a reason), always before a WebSocket is accepted. Auth mode ``none`` is for
local development: everyone is an anonymous principal with every scope.

Auth mode ``jwt`` verifies bearer tokens with PyJWT: HS256 with a shared
secret, or RS256/ES256 (any asymmetric algorithm PyJWT knows) with a PEM
public key or a JWKS file. ``exp`` and ``sub`` are required; ``aud`` and
``iss`` are checked when configured. The claims that matter:

``sub``
    the user; runs belong to it.
``cases``
    ``"*"`` or a list of integer case ids the user may query (missing: none).
``scope`` / ``scopes``
    ``"query status"`` or ``["query", "status"]`` (also ``documents``: case file
    writes); ``admin`` implies all.

Where a WebSocket client may put its credentials, most preferred first
(docs/security.md):

1. ``Authorization: Bearer <jwt>`` on the handshake (server-side clients);
2. ``Sec-WebSocket-Protocol: legalstream.v1, bearer.<jwt>`` or
   ``legalstream.v1, ticket.<ticket>`` (browsers); the server accepts
   ``legalstream.v1`` and never echoes the credential;
3. ``?ticket=<ticket>`` or ``?token=<jwt>`` (least preferred: URLs are logged
   by proxies; our own access log redacts them, see :mod:`legalstream.audit`).

HTTP endpoints take ``Authorization: Bearer`` only.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

import jwt
from starlette.requests import HTTPConnection

from legalstream.server.tickets import MemoryTicketStore, RedisTicketStore, TicketStore, plausible
from legalstream.settings import AuthSettings, Settings

log = logging.getLogger("legalstream.auth")

#: ``documents``: create and delete cases, upload and delete their documents.
SCOPES = frozenset({"query", "status", "documents", "admin"})

#: The application subprotocol a browser offers next to its credential.
PROTOCOL = "legalstream.v1"
BEARER_PREFIX = "bearer."
TICKET_PREFIX = "ticket."

#: Tokens longer than this are refused unparsed (a JWT is a few hundred bytes).
MAX_TOKEN_CHARS = 8192

_SYMMETRIC = ("HS256", "HS384", "HS512")


class AuthError(Exception):
    def __init__(self, status: int, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.retry_after = retry_after

    @property
    def headers(self) -> dict[str, str]:
        headers: dict[str, str] = {}
        if self.status == 401:
            headers["WWW-Authenticate"] = "Bearer"
        if self.retry_after is not None:
            headers["Retry-After"] = str(max(1, int(self.retry_after + 0.999)))
        return headers


@dataclass(frozen=True, slots=True)
class Principal:
    user: str
    #: Case ids this principal may query; ``None`` means every case.
    cases: frozenset[int] | None = None
    scopes: frozenset[str] = field(default_factory=lambda: SCOPES)
    #: Epoch seconds after which the credentials are no longer valid.
    expires_at: float | None = None

    def may_query(self, case_id: Any) -> bool:
        return self.cases is None or case_id in self.cases

    def has_scope(self, scope: str) -> bool:
        return scope in self.scopes or "admin" in self.scopes

    @property
    def is_admin(self) -> bool:
        return "admin" in self.scopes

    def to_claims(self) -> dict[str, Any]:
        return {
            "user": self.user,
            "cases": None if self.cases is None else sorted(self.cases),
            "scopes": sorted(self.scopes),
            "expires_at": self.expires_at,
        }

    @classmethod
    def from_claims(cls, claims: dict[str, Any]) -> Principal:
        cases = claims.get("cases")
        return cls(
            user=str(claims["user"]),
            cases=None if cases is None else frozenset(int(c) for c in cases),
            scopes=frozenset(claims.get("scopes") or ()),
            expires_at=claims.get("expires_at"),
        )


ANONYMOUS = Principal("anonymous")


class Authenticator:
    def __init__(self, settings: AuthSettings, *, tickets: TicketStore | None = None) -> None:
        self.settings = settings
        self.tickets: TicketStore = tickets or MemoryTicketStore()
        self._secret: str | None = settings.secret
        self._public_key: str | None = None
        self._jwks: jwt.PyJWKSet | None = None
        if settings.mode == "jwt":
            self._load_keys()

    @classmethod
    def from_settings(cls, settings: Settings) -> Authenticator:
        """Tickets go to Redis when the bus does, so any worker can redeem them."""
        tickets: TicketStore
        if settings.bus.backend == "redis":
            tickets = RedisTicketStore(settings.bus.redis_url, settings.bus.redis_prefix)
        else:
            tickets = MemoryTicketStore()
        return cls(settings.auth, tickets=tickets)

    async def aclose(self) -> None:
        await self.tickets.aclose()

    # -- configuration ------------------------------------------------------

    def _load_keys(self) -> None:
        s = self.settings
        algorithms = set(s.algorithms)
        if not algorithms:
            raise ValueError("auth.algorithms is empty")
        if "none" in {a.lower() for a in algorithms}:
            raise ValueError("auth.algorithms must not contain 'none'")
        unknown = algorithms - set(jwt.algorithms.get_default_algorithms())
        if unknown:
            raise ValueError(f"auth.algorithms: unknown algorithms {sorted(unknown)}")
        if algorithms & set(_SYMMETRIC):
            if not s.secret:
                raise ValueError("auth mode 'jwt' with HS* algorithms needs auth.secret")
            if len(s.secret.encode()) < 32:
                log.warning("auth.secret is shorter than 32 bytes; use a long random secret")
        if algorithms - set(_SYMMETRIC):
            if s.public_key_file is not None:
                self._public_key = s.public_key_file.read_text()
            if s.jwks_file is not None:
                self._jwks = jwt.PyJWKSet.from_json(s.jwks_file.read_text())
            if self._public_key is None and self._jwks is None:
                raise ValueError(
                    "auth mode 'jwt' with asymmetric algorithms needs auth.public_key_file "
                    "or auth.jwks_file"
                )

    # -- entry points -------------------------------------------------------

    async def authenticate(self, conn: HTTPConnection) -> tuple[Principal, str | None]:
        """The principal behind a request or handshake, and the subprotocol to accept.

        WebSocket handshakes also need the ``query`` scope (403 otherwise).
        """
        is_ws = conn.scope.get("type") == "websocket"
        offered: list[str] = list(conn.scope.get("subprotocols") or []) if is_ws else []
        subprotocol = PROTOCOL if PROTOCOL in offered else None
        if self.settings.mode == "none":
            return ANONYMOUS, subprotocol
        kind, value = self._credential(conn, offered, is_ws)
        if kind == "ticket":
            principal = await self.redeem_ticket(value)
        else:
            principal = self.verify(value)
        if is_ws and not principal.has_scope("query"):
            raise AuthError(403, "token lacks the 'query' scope")
        return principal, subprotocol

    def _credential(self, conn: HTTPConnection, offered: list[str], is_ws: bool) -> tuple[str, str]:
        header = conn.headers.get("authorization")
        if header is not None:
            scheme, _, value = header.strip().partition(" ")
            if scheme.lower() != "bearer" or not value.strip():
                raise AuthError(401, "Authorization header must be 'Bearer <token>'")
            return "token", value.strip()
        if not is_ws:
            raise AuthError(401, "missing bearer token")
        for item in offered:
            if item.startswith(BEARER_PREFIX):
                return "token", item[len(BEARER_PREFIX) :]
            if item.startswith(TICKET_PREFIX):
                return "ticket", item[len(TICKET_PREFIX) :]
        params = conn.query_params
        if "ticket" in params:
            return "ticket", params["ticket"]
        if "token" in params:
            if not self.settings.allow_query_token:
                raise AuthError(
                    401, "?token= is disabled; use a ticket or the Authorization header"
                )
            return "token", params["token"]
        raise AuthError(401, "missing credentials: send a bearer token or a ticket")

    def verify(self, token: str) -> Principal:
        """Check a JWT and turn its claims into a :class:`Principal`."""
        if self.settings.mode == "none":
            return ANONYMOUS
        if not token or len(token) > MAX_TOKEN_CHARS:
            raise AuthError(401, "malformed token")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise AuthError(401, "malformed token") from None
        alg = header.get("alg")
        if not isinstance(alg, str) or alg not in self.settings.algorithms:
            raise AuthError(401, "token algorithm not allowed")
        key = self._key_for(alg, header.get("kid"))
        s = self.settings
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=[alg],
                audience=s.audience,
                issuer=s.issuer,
                leeway=s.leeway_seconds,
                options={"require": ["exp", "sub"]},
            )
        except jwt.ExpiredSignatureError:
            raise AuthError(401, "token expired") from None
        except jwt.PyJWTError as exc:
            raise AuthError(401, f"invalid token: {exc}") from None
        except (TypeError, ValueError):
            raise AuthError(401, "invalid token") from None
        return self._principal(claims)

    def _key_for(self, alg: str, kid: Any) -> Any:
        # The key is chosen by algorithm family, never by what the token says
        # about itself, so an RS256 public key can never act as an HS256 secret.
        if alg in _SYMMETRIC:
            if not self._secret:
                raise AuthError(401, "token algorithm not allowed")
            return self._secret
        if self._jwks is not None:
            keys = self._jwks.keys
            if kid is not None:
                for jwk in keys:
                    if jwk.key_id == kid:
                        return jwk.key
                if self._public_key is None:
                    raise AuthError(401, "unknown signing key")
            elif len(keys) == 1:
                return keys[0].key
            elif self._public_key is None:
                raise AuthError(401, "token has no 'kid' and the JWKS has several keys")
        if self._public_key is not None:
            return self._public_key
        raise AuthError(401, "token algorithm not allowed")

    def _principal(self, claims: dict[str, Any]) -> Principal:
        sub = claims.get("sub")
        if not isinstance(sub, str) or not sub or len(sub) > 256:
            raise AuthError(401, "invalid token: 'sub' must be a non-empty string")
        raw_cases = claims.get("cases", [])
        cases: frozenset[int] | None
        if raw_cases == "*":
            cases = None
        elif isinstance(raw_cases, list) and all(
            isinstance(c, int) and not isinstance(c, bool) for c in raw_cases
        ):
            cases = frozenset(raw_cases)
        else:
            raise AuthError(401, "invalid token: 'cases' must be \"*\" or a list of integers")
        raw_scopes = claims.get("scopes", claims.get("scope"))
        if raw_scopes is None:
            scopes = frozenset(self.settings.default_scopes)
        elif isinstance(raw_scopes, str):
            scopes = frozenset(raw_scopes.split())
        elif isinstance(raw_scopes, list) and all(isinstance(x, str) for x in raw_scopes):
            scopes = frozenset(raw_scopes)
        else:
            raise AuthError(401, "invalid token: 'scope' must be a string or a list of strings")
        exp = claims.get("exp")
        return Principal(
            user=sub,
            cases=cases,
            scopes=scopes & SCOPES,
            expires_at=float(exp) if isinstance(exp, int | float) else None,
        )

    # -- tickets ------------------------------------------------------------

    async def issue_ticket(self, principal: Principal) -> str:
        return await self.tickets.issue(principal.to_claims(), self.settings.ticket_ttl_seconds)

    async def redeem_ticket(self, ticket: str) -> Principal:
        if not plausible(ticket):
            raise AuthError(401, "invalid or expired ticket")
        claims = await self.tickets.redeem(ticket)
        if claims is None:
            raise AuthError(401, "invalid or expired ticket")
        principal = Principal.from_claims(claims)
        if principal.expires_at is not None and time.time() > principal.expires_at:
            raise AuthError(401, "token expired")
        return principal

    # -- origin -------------------------------------------------------------

    def check_origin(self, conn: HTTPConnection) -> None:
        """Exact-match ``Origin`` allowlist; clients that send no Origin (not browsers) pass."""
        allowed = self.settings.allowed_origins
        origin = conn.headers.get("origin")
        if allowed and origin is not None and origin not in allowed:
            raise AuthError(403, "origin not allowed")
