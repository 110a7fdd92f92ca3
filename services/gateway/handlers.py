"""The directory's use cases: one function per command and query of the admin API's own resources.

Each opens and commits its own transaction (``async with uow:``), raises the domain exceptions of
``domain.py`` (the admin API maps them to the error envelope) and stages its events in the outbox. A command
on a tenant names it by slug; its events' :class:`Origin` is that tenant and the admin request behind it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.exc import IntegrityError

from services.gateway import domain, events, store
from shared.bus.envelope import Origin
from shared.db import as_utc, is_unique_violation
from shared.uow import UnitOfWork

#: the page a list asks for, once its tenant is known (the cursor is scoped to it): (after id, limit)
PageOf = Callable[[int], tuple[int | None, int]]
PageQuery = Callable[[Any, int, int | None, int], Awaitable[list[Any]]]
RowQuery = Callable[[Any, int, int], Awaitable[Any]]


async def _tenant(uow: UnitOfWork, slug: str) -> Any:
    row = await store.tenant_by_slug(uow.session, slug) if domain.valid_slug(slug) else None
    if row is None:
        raise domain.TenantNotFound(slug)
    return row


async def _tenant_row(uow: UnitOfWork, slug: str, query: RowQuery, row_id: int,
                      missing: type[domain.NotFound]) -> tuple[Any, Any]:
    """The tenant and one of its rows, ``query(session, tenant id, row id)``; ``missing(row_id)`` if none."""
    async with uow:
        owner = await _tenant(uow, slug)
        row = await query(uow.session, owner.id, row_id)
    if row is None:
        raise missing(row_id)
    return owner, row


async def _tenant_page(uow: UnitOfWork, slug: str, page_of: PageOf, query: PageQuery) -> tuple[Any, list[Any]]:
    """The tenant and one page of its rows: ``query(session, tenant id, after id, limit)``."""
    async with uow:
        owner = await _tenant(uow, slug)
        after_id, limit = page_of(owner.id)
        return owner, await query(uow.session, owner.id, after_id, limit)


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
    return await _tenant_row(uow, slug, store.key_of, key_id, domain.ApiKeyNotFound)


async def list_keys(uow: UnitOfWork, slug: str, page_of: PageOf) -> tuple[Any, list[Any]]:
    return await _tenant_page(uow, slug, page_of, store.keys_page)


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
    return (await _tenant_row(uow, slug, store.user_of, user_id, domain.UserNotFound))[1]


async def list_users(uow: UnitOfWork, slug: str, page_of: PageOf) -> list[Any]:
    return (await _tenant_page(uow, slug, page_of, store.users_page))[1]


# --- tenant staff (ADR 0021) -------------------------------------------------------------------------------


def _link(staff_id: int, purpose: str, now: datetime, ttl: float) -> tuple[str, dict[str, Any]]:
    token = domain.new_secret()
    return token, dict(token_hash=domain.sha256_hex(token), staff_id=staff_id, purpose=purpose, created_at=now,
                       expires_at=now + timedelta(seconds=ttl))


async def invite_staff(uow: UnitOfWork, slug: str, request_id: str, *, email: str, name: str, role: str,
                       link_ttl: float) -> tuple[Any, Any, str]:
    """A new staff member (status ``invited``) and their single-use invitation link's token."""
    now = datetime.now(UTC)
    try:
        async with uow:
            owner = await _tenant(uow, slug)
            row = await store.insert_staff(uow.session, dict(
                tenant_id=owner.id, email=domain.normal_email(email), name=name.strip(), role=role,
                status="invited", password_hash=None, revision=1, created_at=now, updated_at=now))
            token, link = _link(row.id, "invite", now, link_ttl)
            await store.insert_link(uow.session, link)
            await uow.emit(events.staff_changed(Origin(owner.id, owner.slug, request_id), row, invited=True))
    except IntegrityError as exc:
        if is_unique_violation(exc):
            raise domain.EmailTaken(domain.normal_email(email)) from None
        raise
    return owner, row, token


async def list_staff(uow: UnitOfWork, slug: str, page_of: PageOf) -> list[Any]:
    return (await _tenant_page(uow, slug, page_of, store.staff_page))[1]


async def staff_member(uow: UnitOfWork, slug: str, staff_id: int) -> Any:
    return (await _tenant_row(uow, slug, store.staff_of, staff_id, domain.StaffNotFound))[1]


async def _locked_staff(uow: UnitOfWork, slug: str, staff_id: int) -> tuple[Any, Any]:
    """In an open unit of work: the tenant and its staff member, locked for an update; StaffNotFound if none."""
    owner = await _tenant(uow, slug)
    row = await store.staff_of(uow.session, owner.id, staff_id, for_update=True)
    if row is None:
        raise domain.StaffNotFound(staff_id)
    return owner, row


async def update_staff(uow: UnitOfWork, slug: str, request_id: str, staff_id: int,
                       changes: dict[str, Any]) -> Any:
    """Change a member's name, role or status (``active`` | ``suspended``); publishes ``staff.updated``. A
    suspension ends their sessions at once; the tenant keeps one active owner at least."""
    now = datetime.now(UTC)
    async with uow:
        owner, row = await _locked_staff(uow, slug, staff_id)
        wanted = dict(changes)
        if wanted.get("status") == "active" and row.password_hash is None:
            wanted["status"] = "invited"  # lifting a suspension before the invitation was accepted
        wanted = {k: v for k, v in wanted.items() if getattr(row, k) != v}
        if not wanted:
            return row
        was_owner = row.role == "owner" and row.status != "suspended"
        still_owner = wanted.get("role", row.role) == "owner" and wanted.get("status", row.status) != "suspended"
        if was_owner and not still_owner and await store.count_owners(uow.session, owner.id) <= 1:
            raise domain.LastOwner()
        row = await store.update_staff(uow.session, row.id, {**wanted, "updated_at": now})
        if row.status == "suspended":
            await store.delete_staff_sessions(uow.session, row.id)
            await store.expire_links(uow.session, row.id, now)
        await uow.emit(events.staff_changed(Origin(owner.id, owner.slug, request_id), row))
    return row


async def reset_link(uow: UnitOfWork, slug: str, staff_id: int, link_ttl: float) -> tuple[Any, Any, str]:
    """A new single-use link to set a password (an invitation again while the member has none); older open
    links of the member stop working."""
    now = datetime.now(UTC)
    async with uow:
        owner, row = await _locked_staff(uow, slug, staff_id)
        if row.status == "suspended":
            raise domain.StaffSuspended()
        await store.expire_links(uow.session, row.id, now)
        token, link = _link(row.id, "invite" if row.password_hash is None else "reset", now, link_ttl)
        await store.insert_link(uow.session, link)
    return owner, row, token


async def link_target(uow: UnitOfWork, token: str) -> tuple[Any, Any, str]:
    """(tenant, staff member, purpose) of an open link; LinkInvalid otherwise."""
    now = datetime.now(UTC)
    async with uow:
        link = await store.link_of(uow.session, domain.sha256_hex(token)) if token else None
        if link is None or link.used_at is not None or as_utc(link.expires_at) <= now:
            raise domain.LinkInvalid()
        member = await store.staff_by_id(uow.session, link.staff_id)
        assert member is not None
        tenant_row = await store.tenant_by_id(uow.session, member.tenant_id)
        return tenant_row, member, link.purpose


async def use_link(uow: UnitOfWork, token: str, password_hash: str, request_id: str) -> tuple[Any, Any]:
    """Spend the link and set the password (an invited member becomes ``active``); ends the member's other
    sessions. (tenant, member)."""
    now = datetime.now(UTC)
    async with uow:
        link = await store.spend_link(uow.session, domain.sha256_hex(token), now) if token else None
        if link is None:
            raise domain.LinkInvalid()
        member = await store.staff_by_id(uow.session, link.staff_id)
        assert member is not None
        if member.status == "suspended":
            raise domain.LinkInvalid()
        tenant_row = await store.tenant_by_id(uow.session, member.tenant_id)
        assert tenant_row is not None
        status = "active"
        member = await store.update_staff(uow.session, member.id, dict(password_hash=password_hash, status=status,
                                                                       updated_at=now))
        await store.delete_staff_sessions(uow.session, member.id)
        await uow.emit(events.staff_changed(Origin(tenant_row.id, tenant_row.slug, request_id), member))
    return tenant_row, member


async def staff_for_sign_in(uow: UnitOfWork, slug: str, email: str) -> tuple[Any, Any | None]:
    """(tenant, the member with this email, or None)."""
    async with uow:
        owner = await _tenant(uow, slug)
        return owner, await store.staff_by_email(uow.session, owner.id, domain.normal_email(email))


# --- sessions (the UI's and the staff's bearer sessions), sign-in failures -----------------------------------


async def create_session(uow: UnitOfWork, *, kind: str, ttl: float, tenant_id: int | None = None,
                         staff_id: int | None = None, current_tenant: str | None = None) -> tuple[str, Any]:
    """A new session: (its secret, its row). The secret is stored only as its SHA-256."""
    now = datetime.now(UTC)
    secret = domain.SESSION_PREFIX + domain.new_secret()
    values: dict[str, Any] = dict(id_hash=domain.sha256_hex(secret), kind=kind, tenant_id=tenant_id, staff_id=staff_id,
                  csrf_token=domain.new_secret(), current_tenant=current_tenant, flashes=[], created_at=now,
                  expires_at=now + timedelta(seconds=ttl))
    async with uow:
        await store.purge_sessions(uow.session, now)
        await store.insert_session(uow.session, values)
        row = await store.session_of(uow.session, values["id_hash"], now)
    return secret, row


async def session(uow: UnitOfWork, secret: str | None) -> tuple[Any, Any, Any] | None:
    """(session, staff member or None, tenant or None) of a live session whose member (if staff) is active in an
    active tenant; None otherwise."""
    if not secret or len(secret) > 128 or not secret.startswith(domain.SESSION_PREFIX):
        return None
    async with uow:
        row = await store.session_of(uow.session, domain.sha256_hex(secret), datetime.now(UTC))
        if row is None:
            return None
        if row.kind != "staff":
            return row, None, None
        member = await store.staff_by_id(uow.session, row.staff_id)
        tenant_row = await store.tenant_by_id(uow.session, row.tenant_id)
    if (member is None or tenant_row is None or member.status != "active" or tenant_row.status != "active"
            or member.tenant_id != tenant_row.id):
        return None
    return row, member, tenant_row


async def save_session(uow: UnitOfWork, secret: str, changes: dict[str, Any]) -> None:
    async with uow:
        await store.save_session(uow.session, domain.sha256_hex(secret), changes)


async def end_session(uow: UnitOfWork, secret: str) -> None:
    async with uow:
        await store.delete_session(uow.session, domain.sha256_hex(secret))


async def failure_wait(uow: UnitOfWork, key: str, max_failures: int, window: float) -> float | None:
    """Seconds until ``key`` may try again, or None (fewer than ``max_failures`` failures in the window)."""
    now = datetime.now(UTC)
    async with uow:
        count, oldest = await store.failures_since(uow.session, key, now - timedelta(seconds=window))
    if count < max_failures or oldest is None:
        return None
    return max(1.0, (as_utc(oldest) + timedelta(seconds=window) - now).total_seconds())


async def sign_in_failed(uow: UnitOfWork, keys: list[str], window: float) -> None:
    now = datetime.now(UTC)
    async with uow:
        for key in keys:
            await store.record_failure(uow.session, key, now, now - timedelta(seconds=window))


async def sign_in_succeeded(uow: UnitOfWork, key: str) -> None:
    async with uow:
        await store.clear_failures(uow.session, key)


# --- the audit log -----------------------------------------------------------------------------------------


async def record_audit(uow: UnitOfWork, slug: str, request_id: str, actor: domain.Actor, *, method: str,
                       path: str, status: int, before: str | None, after: str | None) -> Any:
    """One line of the tenant's audit log, exported as ``audit.recorded`` through the outbox."""
    now = datetime.now(UTC)
    async with uow:
        owner = await _tenant(uow, slug)
        row = await store.insert_audit(uow.session, dict(
            tenant_id=owner.id, actor=actor.kind, staff_id=actor.staff_id, actor_email=actor.email,
            method=method, path=path[:1000], status=status, request_id=request_id, before_digest=before,
            after_digest=after, at=now))
        await uow.emit(events.audit_recorded(Origin(owner.id, owner.slug, request_id), row))
    return row


async def list_audit(uow: UnitOfWork, slug: str, page_of: PageOf) -> list[Any]:
    return (await _tenant_page(uow, slug, page_of, store.audit_page))[1]


# --- single sign-on per tenant -------------------------------------------------------------------------------


async def sso_config(uow: UnitOfWork, slug: str) -> tuple[Any, Any | None]:
    """(tenant, its OIDC configuration or None)."""
    async with uow:
        owner = await _tenant(uow, slug)
        return owner, await store.sso_of(uow.session, owner.id)


async def set_sso(uow: UnitOfWork, slug: str, issuer: str | None, client_id: str | None,
                  client_secret: str | None) -> tuple[Any, Any | None]:
    """Configure (``issuer`` set) or remove (None) the tenant's OIDC provider."""
    async with uow:
        owner = await _tenant(uow, slug)
        if issuer is None or client_id is None:
            await store.delete_sso(uow.session, owner.id)
        else:
            await store.put_sso(uow.session, dict(tenant_id=owner.id, issuer=issuer, client_id=client_id,
                                                  client_secret=client_secret, updated_at=datetime.now(UTC)))
        return owner, await store.sso_of(uow.session, owner.id)
