"""In-process caches of what the enrollment service reads on every request or event (one set per app).

- **Published versions** never change once stored (``course_versions`` rows are insert-only), so what enrolling and
  completion need of one ``(tenant, course, version)`` — rule, activities, title, credit, template — is kept
  without expiry, in a bounded LRU. The highest published version still comes from the database every time.
- **Tenant slug and name** as last confirmed in the ``tenants`` row: a request forwarding the same pair skips the
  read-compare-write for ``TENANT_TTL`` seconds. Only a read that found the row equal fills the cache (never a
  write, which may still roll back); another replica writing a different pair is noticed within the TTL.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from services.enrollment import domain
from services.enrollment.store import course_versions
from shared.events.base import Credit

VERSIONS_KEPT = 4096
TENANT_TTL = 60.0


@dataclass(frozen=True)
class PinnedVersion:
    """One published course version, as far as enrolling and completing care."""

    version_number: int
    title: str
    rule: domain.CompletionRule
    activities: tuple[domain.Activity, ...]
    credit: Credit
    certificate_template_id: int | None

    @classmethod
    def of(cls, row: Any) -> PinnedVersion:
        return cls(version_number=row.version_number, title=row.title,
                   rule=domain.completion_rule(row.completion_rule),
                   activities=tuple(domain.activities_of(row.modules)), credit=Credit.model_validate(row.credit),
                   certificate_template_id=row.certificate_template_id)

    def progress(self, results: list[domain.AttemptResult]) -> domain.Progress:
        return domain.evaluate(self.rule, self.activities, results)


_VERSION = sa.select(course_versions).where(
    course_versions.c.tenant_id == sa.bindparam("tenant_id"),
    course_versions.c.course_id == sa.bindparam("course_id"),
    course_versions.c.version_number == sa.bindparam("version"),
)


class Caches:
    def __init__(self, versions_kept: int = VERSIONS_KEPT, tenant_ttl: float = TENANT_TTL):
        self.versions_kept = versions_kept
        self.tenant_ttl = tenant_ttl
        self._versions: OrderedDict[tuple[int, int, int], PinnedVersion] = OrderedDict()
        self._tenants: dict[int, tuple[str, str | None, float]] = {}

    async def version(self, db: AsyncSession | AsyncConnection, tenant_id: int, course_id: int,
                      version: int) -> PinnedVersion | None:
        """A published version of a course (``None`` if this service has not received it)."""
        key = (tenant_id, course_id, version)
        found = self._versions.get(key)
        if found is not None:
            self._versions.move_to_end(key)
            return found
        row = (await db.execute(_VERSION, {"tenant_id": tenant_id, "course_id": course_id,
                                           "version": version})).first()
        if row is None:
            return None  # not cached: it may arrive any moment
        found = self._versions[key] = PinnedVersion.of(row)
        if len(self._versions) > self.versions_kept:
            self._versions.popitem(last=False)
        return found

    def tenant_confirmed(self, tenant_id: int, slug: str, name: str | None) -> bool:
        """True if the stored row was recently seen holding this slug (and this name, when one is given)."""
        known = self._tenants.get(tenant_id)
        if known is None or time.monotonic() - known[2] > self.tenant_ttl:
            return False
        return known[0] == slug and (name is None or known[1] == name)

    def confirm_tenant(self, tenant_id: int, slug: str, name: str | None) -> None:
        """The stored row was just read and holds these values."""
        self._tenants[tenant_id] = (slug, name, time.monotonic())


CACHES_KEY = web.AppKey("enrollment_caches", Caches)
