"""The directory's use cases: one function per command and query of the admin API's own resources.

Each opens and commits its own transaction (``async with uow:``), raises the domain exceptions of
``domain.py`` (the admin API maps them to the error envelope) and stages its events in the outbox. A command
on a tenant names it by slug; its events' :class:`Origin` is that tenant and the admin request behind it.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.exc import IntegrityError

from services.gateway import domain, events, store
from shared.bus.envelope import Origin
from shared.db import is_unique_violation
from shared.uow import UnitOfWork

#: the page a list asks for, once its tenant is known (the cursor is scoped to it): (after id, limit)
PageOf = Callable[[int], tuple[int | None, int]]


async def _tenant(uow: UnitOfWork, slug: str) -> Any:
    row = await store.tenant_by_slug(uow.session, slug) if domain.valid_slug(slug) else None
    if row is None:
        raise domain.TenantNotFound(slug)
    return row


# --- tenants -----------------------------------------------------------------------------------------------


async def create_tenant(uow: UnitOfWork, slug: str, name: str, plan: str) -> Any:
    now = datetime.now(UTC)
    try:
        async with uow:
            return await store.insert_tenant(uow.session, dict(slug=slug, name=name.strip(), plan=plan,
                                                               status="active", created_at=now, updated_at=now))
    except IntegrityError as exc:
        if is_unique_violation(exc):
            raise domain.SlugTaken(slug) from None
        raise


async def update_tenant(uow: UnitOfWork, slug: str, request_id: str, changes: dict[str, Any]) -> Any:
    """Apply ``changes`` (name, plan, status); a status change publishes ``tenant.updated`` (the scorm service
    ends a suspended tenant's launches)."""
    async with uow:
        row = await _tenant(uow, slug)
        if changes:
            before = row.status
            updated_at = datetime.now(UTC)
            row = await store.update_tenant(uow.session, row.id, {**changes, "updated_at": updated_at})
            if row.status != before:
                await uow.emit(events.tenant_updated(Origin(row.id, row.slug, request_id), row, updated_at))
    return row


async def tenant(uow: UnitOfWork, slug: str) -> Any:
    async with uow:
        return await _tenant(uow, slug)


async def list_tenants(uow: UnitOfWork, after_id: int | None, limit: int) -> list[Any]:
    async with uow:
        return await store.tenants_page(uow.session, after_id, limit)


# --- API keys ----------------------------------------------------------------------------------------------


async def create_key(uow: UnitOfWork, slug: str, pepper: bytes, *, name: str, scopes: list[str],
                     expires_at: datetime | None, created_by: int | None, mode: str,
                     course_ids: list[int] | None = None) -> tuple[Any, Any, str]:
    """A new key: (its tenant, its row, the key itself, which is stored only as its hash). With ``course_ids``
    the key is limited to those courses (ADR 0019)."""
    plain = domain.generate_key(mode)
    now = datetime.now(UTC)
    async with uow:
        owner = await _tenant(uow, slug)
        if created_by is not None and await store.user_of(uow.session, owner.id, created_by) is None:
            raise domain.UnknownCreator(created_by)
        row = await store.insert_key(uow.session, dict(
            tenant_id=owner.id, name=name.strip(), prefix=domain.display_prefix(plain),
            key_hash=domain.hash_key(pepper, plain), scopes=scopes, created_by=created_by, created_at=now,
            expires_at=expires_at, course_ids=course_ids,
        ))
    return owner, row, plain


async def revoke_key(uow: UnitOfWork, slug: str, request_id: str, key_id: int) -> tuple[Any, Any]:
    """Revoke (idempotent): the first call stamps ``revoked_at`` and publishes ``api_key.revoked``."""
    now = datetime.now(UTC)
    async with uow:
        owner = await _tenant(uow, slug)
        row = await store.revoke_key(uow.session, owner.id, key_id, now)
        if row is not None:
            await uow.emit(events.api_key_revoked(Origin(owner.id, owner.slug, request_id), row, now))
        else:
            row = await store.key_of(uow.session, owner.id, key_id)
            if row is None:
                raise domain.ApiKeyNotFound(key_id)
    return owner, row


async def key(uow: UnitOfWork, slug: str, key_id: int) -> tuple[Any, Any]:
    async with uow:
        owner = await _tenant(uow, slug)
        row = await store.key_of(uow.session, owner.id, key_id)
    if row is None:
        raise domain.ApiKeyNotFound(key_id)
    return owner, row


async def list_keys(uow: UnitOfWork, slug: str, page_of: PageOf) -> tuple[Any, list[Any]]:
    async with uow:
        owner = await _tenant(uow, slug)
        after_id, limit = page_of(owner.id)
        return owner, await store.keys_page(uow.session, owner.id, after_id, limit)


# --- directory users ---------------------------------------------------------------------------------------


async def upsert_user(uow: UnitOfWork, slug: str, request_id: str, user_id: int, name: str,
                      email: str) -> tuple[Any, bool]:
    """Create or change a directory user: (its row, created?). A change publishes ``user.upserted`` with the
    next revision; the same name and email again change nothing and publish nothing."""
    name, email = name.strip(), email.strip()
    now = datetime.now(UTC)
    async with uow:
        owner = await _tenant(uow, slug)
        created = await store.insert_user_if_new(uow.session, dict(
            tenant_id=owner.id, user_id=user_id, name=name, email=email, revision=1, created_at=now,
            updated_at=now,
        ))
        if not created:
            current = await store.user_for_update(uow.session, owner.id, user_id)
            if current.name == name and current.email == email:
                return current, False  # nothing changed: no event
            await store.update_user(uow.session, owner.id, user_id, name, email, now)
        row = await store.user_of(uow.session, owner.id, user_id)
        assert row is not None
        await uow.emit(events.user_upserted(Origin(owner.id, owner.slug, request_id), row, now))
    return row, created


async def user(uow: UnitOfWork, slug: str, user_id: int) -> Any:
    async with uow:
        owner = await _tenant(uow, slug)
        row = await store.user_of(uow.session, owner.id, user_id)
    if row is None:
        raise domain.UserNotFound(user_id)
    return row


async def list_users(uow: UnitOfWork, slug: str, page_of: PageOf) -> list[Any]:
    async with uow:
        owner = await _tenant(uow, slug)
        after_id, limit = page_of(owner.id)
        return await store.users_page(uow.session, owner.id, after_id, limit)
