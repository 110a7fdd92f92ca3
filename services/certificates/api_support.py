"""What every certificates HTTP handler shares: app keys, scope checks, remembering the caller's tenant."""

from __future__ import annotations

import asyncio

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncSession

from services.certificates.documents import Documents
from services.certificates.domain import KnownTenant
from services.certificates.readmodels import remember_tenant
from shared.db import utcnow
from shared.http import RequestContext

ADMIN = "/admin/v1"
API = "/api/v1/learn"


class Runtime:
    """What the service opens at startup (render pool, blob store), reachable from handlers and consumers.

    Created with the app and filled in at startup, so that nothing is added to the app once it is frozen.
    """

    def __init__(self) -> None:
        self._documents: Documents | None = None
        self.wake_regeneration = asyncio.Event()

    @property
    def documents(self) -> Documents:
        if self._documents is None:
            raise RuntimeError("the certificates runtime has not started")
        return self._documents

    def start(self, documents: Documents) -> None:
        self._documents = documents

    def stop(self) -> None:
        self._documents = None


RUNTIME_KEY = web.AppKey("certificates_runtime", Runtime)


def documents_of(request: web.Request) -> Documents:
    return request.app[RUNTIME_KEY].documents


async def note_tenant(session: AsyncSession, ctx: RequestContext) -> None:
    """Remember the tenant's slug and display name as the gateway forwards them (the issuer on certificates)."""
    name = (ctx.tenant_name or ctx.tenant_slug).strip()[:200] or ctx.tenant_slug
    await remember_tenant(session, KnownTenant(ctx.tenant_id, ctx.tenant_slug, name), utcnow())
