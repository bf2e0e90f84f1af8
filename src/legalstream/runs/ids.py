"""Run ids this deployment can recognise as its own, even after their history is gone.

A run id is a random UUID (32 hex digits) followed by 16 hex digits of an
HMAC of it under the deployment's secret. A resume of an id that verifies
but whose record and history are gone (Redis restarted without persistence,
retention expired) is a lost history — ``resume_failed`` — not an unknown run.

The secret is ``runs.id_secret`` when set (every worker and machine of one
deployment must share it); otherwise it is derived from the JWT secret when
there is one, or kept in ``<rag.data_dir>/run-id.key`` (made on first use).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import uuid
from pathlib import Path

TAG_HEX = 16


class RunIds:
    def __init__(self, secret: bytes) -> None:
        self._key = hashlib.sha256(b"legalstream run ids\0" + secret).digest()

    def new(self) -> str:
        base = uuid.uuid4().hex
        return base + self._tag(base)

    def issued(self, run_id: str) -> bool:
        """Whether ``run_id`` was made by this deployment (constant-time)."""
        if len(run_id) != 32 + TAG_HEX:
            return False
        base, tag = run_id[:32], run_id[32:]
        return hmac.compare_digest(self._tag(base), tag)

    def _tag(self, base: str) -> str:
        return hmac.new(self._key, base.encode(), hashlib.sha256).hexdigest()[:TAG_HEX]


def deployment_secret(configured: str | None, jwt_secret: str | None, data_dir: Path) -> bytes:
    """The secret run ids are signed with (see the module docstring)."""
    if configured:
        return configured.encode()
    if jwt_secret:
        return b"jwt\0" + jwt_secret.encode()
    path = Path(data_dir) / "run-id.key"
    try:
        return path.read_bytes()
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        # Exclusive create: of two processes starting together, one writes it.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_bytes()
    with os.fdopen(fd, "wb") as out:
        out.write(secrets.token_bytes(32))
    return path.read_bytes()
