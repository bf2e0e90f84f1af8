"""Who is asking, and what they may see.

:class:`Authenticator` turns a handshake or an HTTP request into a
:class:`Principal` or refuses it with :class:`AuthError` (an HTTP status and
a reason), always before a WebSocket is accepted. Auth mode ``none`` is for
local development: everyone is an anonymous principal with every scope.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from starlette.requests import HTTPConnection

from legalstream.settings import AuthSettings

SCOPES = frozenset({"query", "status", "admin"})


class AuthError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True, slots=True)
class Principal:
    user: str
    #: Case ids this principal may query; ``None`` means every case.
    cases: frozenset[int] | None = None
    scopes: frozenset[str] = field(default_factory=lambda: SCOPES)
    #: Epoch seconds after which the credentials are no longer valid.
    expires_at: float | None = None

    def may_query(self, case_id: int) -> bool:
        return self.cases is None or case_id in self.cases

    def has_scope(self, scope: str) -> bool:
        return scope in self.scopes or "admin" in self.scopes

    @property
    def is_admin(self) -> bool:
        return "admin" in self.scopes


ANONYMOUS = Principal("anonymous")


class Authenticator:
    def __init__(self, settings: AuthSettings) -> None:
        self.settings = settings

    async def authenticate(self, conn: HTTPConnection) -> tuple[Principal, str | None]:
        """The principal behind a request or handshake, and the subprotocol to accept."""
        if self.settings.mode == "none":
            return ANONYMOUS, None
        raise AuthError(401, f"auth mode {self.settings.mode!r} is not available")

    def check_origin(self, conn: HTTPConnection) -> None:
        allowed = self.settings.allowed_origins
        origin = conn.headers.get("origin")
        if allowed and origin is not None and origin not in allowed:
            raise AuthError(403, "origin not allowed")
