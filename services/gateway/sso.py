"""Single sign-on per tenant (ADR 0021): OpenID Connect, authorization code flow with PKCE (RFC 7636, S256).

The tenant's owner configures the provider (issuer, client id, optional client secret) through the admin API; the
sign-in page on the tenant's host then offers it. The flow's state, nonce and code verifier travel in an
HMAC-signed, short-lived cookie (never in a URL); the ID token is verified against the provider's published keys
(issuer, audience, nonce, expiry) and its ``email`` must be an active staff member of the tenant.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from typing import Any
from urllib.parse import urlencode

import aiohttp
from authlib.common.security import generate_token
from authlib.oauth2.rfc7636 import create_s256_code_challenge
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet
from pydantic import BaseModel, ConfigDict, Field, field_validator

FLOW_TTL = 600  # seconds from "Sign in with SSO" to the provider's answer


class SsoError(Exception):
    """The flow failed; the message is safe to show."""


class SsoConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    issuer: str = Field(max_length=500)
    client_id: str = Field(min_length=1, max_length=300)
    client_secret: str | None = Field(default=None, max_length=500)

    @field_validator("issuer")
    @classmethod
    def _issuer(cls, v: str) -> str:
        if not v.startswith(("https://", "http://")):
            raise ValueError("must be an http(s) URL (the provider's issuer identifier)")
        return v.rstrip("/")


def sso_view(row: Any) -> dict[str, Any] | None:
    if row is None:
        return None
    return {"issuer": row.issuer, "client_id": row.client_id, "has_client_secret": bool(row.client_secret)}


class FlowCookie:
    """The flow's secrets in a cookie signed with a server key (the browser holds it, cannot change it)."""

    def __init__(self, secret: bytes):
        self._key = hashlib.sha256(b"learn-admin-sso\0" + secret).digest()

    def seal(self, flow: dict[str, Any]) -> str:
        body = base64.urlsafe_b64encode(json.dumps(flow, separators=(",", ":")).encode()).decode().rstrip("=")
        mac = hmac.new(self._key, body.encode(), hashlib.sha256).hexdigest()
        return f"{body}.{mac}"

    def open(self, value: str | None) -> dict[str, Any] | None:
        if not value or "." not in value or len(value) > 4096:
            return None
        body, mac = value.rsplit(".", 1)
        if not hmac.compare_digest(mac, hmac.new(self._key, body.encode(), hashlib.sha256).hexdigest()):
            return None
        flow = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
        return flow if isinstance(flow, dict) and flow.get("exp", 0) > time.time() else None


class OidcClient:
    def __init__(self, timeout: float = 10.0):
        self.timeout = aiohttp.ClientTimeout(total=timeout)
        self._discovered: dict[str, tuple[dict[str, Any], float]] = {}

    async def _json(self, method: str, url: str, **kw: Any) -> Any:
        try:
            async with aiohttp.ClientSession(timeout=self.timeout, trust_env=False) as http, \
                    http.request(method, url, **kw) as resp:
                body = await resp.json(content_type=None)
                if resp.status != 200:
                    raise SsoError(f"The identity provider refused ({resp.status}).")
                return body
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise SsoError("The identity provider could not be reached.") from exc

    async def discover(self, issuer: str) -> dict[str, Any]:
        cached = self._discovered.get(issuer)
        if cached and cached[1] > time.monotonic():
            return cached[0]
        meta = await self._json("GET", issuer + "/.well-known/openid-configuration")
        if not isinstance(meta, dict) or meta.get("issuer", "").rstrip("/") != issuer:
            raise SsoError("The identity provider's metadata names another issuer.")
        self._discovered[issuer] = (meta, time.monotonic() + 300)
        return meta

    async def start(self, config: Any, redirect_uri: str, tenant: str) -> tuple[str, dict[str, Any]]:
        """(the provider's authorization URL, the flow to keep in the signed cookie)."""
        meta = await self.discover(config.issuer)
        verifier = generate_token(64)
        flow = {"state": secrets.token_urlsafe(24), "nonce": secrets.token_urlsafe(24), "verifier": verifier,
                "tenant": tenant, "redirect_uri": redirect_uri, "exp": time.time() + FLOW_TTL}
        query = {"response_type": "code", "client_id": config.client_id, "redirect_uri": redirect_uri,
                 "scope": "openid email profile", "state": flow["state"], "nonce": flow["nonce"],
                 "code_challenge": create_s256_code_challenge(verifier), "code_challenge_method": "S256"}
        return f"{meta['authorization_endpoint']}?{urlencode(query)}", flow

    async def finish(self, config: Any, flow: dict[str, Any], code: str) -> str:
        """Exchange the code (with the PKCE verifier) and verify the ID token; the verified email."""
        meta = await self.discover(config.issuer)
        form = {"grant_type": "authorization_code", "code": code, "redirect_uri": flow["redirect_uri"],
                "client_id": config.client_id, "code_verifier": flow["verifier"]}
        if config.client_secret:
            form["client_secret"] = config.client_secret
        tokens = await self._json("POST", meta["token_endpoint"], data=form)
        raw = tokens.get("id_token") if isinstance(tokens, dict) else None
        if not isinstance(raw, str):
            raise SsoError("The identity provider gave no ID token.")
        keys = KeySet.import_key_set(await self._json("GET", meta["jwks_uri"]))
        try:
            token = jwt.decode(raw, keys, algorithms=["RS256", "ES256", "PS256"])
            jwt.JWTClaimsRegistry(
                iss={"essential": True, "value": config.issuer}, aud={"essential": True, "value": config.client_id},
                nonce={"essential": True, "value": flow["nonce"]}, exp={"essential": True},
            ).validate(token.claims)
        except (JoseError, ValueError) as exc:
            raise SsoError("The identity provider's ID token did not verify.") from exc
        email = token.claims.get("email")
        if not isinstance(email, str) or token.claims.get("email_verified") is False:
            raise SsoError("The identity provider gave no verified email.")
        return email
