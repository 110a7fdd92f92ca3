"""Runtime tokens: the short-lived credential a learner's browser holds for one launch.

``r1.<session id>.<tenant id>.<expires, unix seconds>.<mac>``: the MAC is HMAC-SHA256 (truncated to 128 bits,
base64url) over the other parts, keyed with a secret derived from the internal secret, so every replica can
check a token without a lookup and no other credential is ever accepted in its place. The token is URL- and
path-safe: it sits in the player's, the content's and the runtime's paths, so a SCO's relative links stay
under its own launch.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from dataclasses import dataclass
from datetime import UTC, datetime

from services.scorm.domain import expired_token, invalid_token

_PREFIX = "r1"
_SHAPE = re.compile(r"r1\.([1-9][0-9]{0,17})\.([1-9][0-9]{0,17})\.([1-9][0-9]{0,11})\.([A-Za-z0-9_-]{22})")


@dataclass(frozen=True)
class RuntimeClaims:
    session_id: int
    tenant_id: int
    expires_at: datetime


class RuntimeTokens:
    def __init__(self, internal_secret: str) -> None:
        self._key = hashlib.sha256(b"learn-scorm-runtime:" + internal_secret.encode()).digest()

    def _mac(self, body: str) -> str:
        digest = hmac.new(self._key, body.encode(), "sha256").digest()[:16]
        return base64.urlsafe_b64encode(digest).decode().rstrip("=")

    def issue(self, session_id: int, tenant_id: int, expires_at: datetime) -> str:
        body = f"{_PREFIX}.{session_id}.{tenant_id}.{int(expires_at.timestamp())}"
        return f"{body}.{self._mac(body)}"

    def verify(self, token: str, now: datetime | None = None) -> RuntimeClaims:
        """The claims of a genuine, unexpired token; anything else is :class:`InvalidToken` (``401``)."""
        match = _SHAPE.fullmatch(token)
        if match is None or not hmac.compare_digest(match.group(4), self._mac(token.rsplit(".", 1)[0])):
            raise invalid_token()
        expires_at = datetime.fromtimestamp(int(match.group(3)), UTC)
        if expires_at <= (now or datetime.now(UTC)):
            raise expired_token()
        return RuntimeClaims(int(match.group(1)), int(match.group(2)), expires_at)

