"""Scorm tables and every query of the service (SQL only: the rules are in ``domain.py``).

- ``scorm_packages`` / ``scorm_scos``: uploaded packages (their import state) and the SCO list of ready ones;
- ``blobs`` / ``blob_chunks``: package files when the blob store is the database (shared.blobstore);
- ``enrollments``, ``courses``, ``course_activities``, ``users``, ``tenants``: read models from ``enrollment.*``,
  ``course.*``, ``user.upserted`` and ``tenant.updated``;
- ``runtime_sessions``: one row per launch (= attempt): what was launched and its CMI state.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from shared.blobstore import blob_tables
from shared.db import BigId, TenantScope, Timestamp, insert_ignoring_conflicts, upsert, utcnow

#: the service's clock (UTC, aware)
now = utcnow

metadata = sa.MetaData()

scorm_packages = sa.Table(
    "scorm_packages", metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("tenant_id", sa.BigInteger, nullable=False),
    sa.Column("tenant_slug", sa.String(63), nullable=False),
    sa.Column("title", sa.Text, nullable=False),
    sa.Column("title_given", sa.Boolean, nullable=False),
    sa.Column("scorm_version", sa.String(16), nullable=True),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("error", sa.Text, nullable=True),
    sa.Column("bytes", sa.BigInteger, nullable=False),
    sa.Column("sha256", sa.String(64), nullable=False),
    sa.Column("organization_identifier", sa.Text, nullable=True),
    sa.Column("warnings", sa.JSON, nullable=False),
    sa.Column("files", sa.Integer, nullable=True),
    sa.Column("upload_path", sa.Text, nullable=True),
    sa.Column("lease_owner", sa.String(200), nullable=True),
    sa.Column("lease_until", Timestamp, nullable=True),
    sa.Column("import_attempts", sa.Integer, nullable=False),
    sa.Column("request_id", sa.String(64), nullable=True),
    sa.Column("created_at", Timestamp, nullable=False),
    sa.Column("updated_at", Timestamp, nullable=False),
    #: versions (issue 20): a new version is a package row of its own pointing at the first one (``version_of``);
    #: activities name the first one and launch the newest ready version
    sa.Column("version_of", sa.BigInteger, nullable=True),
    sa.Column("version", sa.Integer, nullable=False, server_default="1"),
    sa.Column("archived_at", Timestamp, nullable=True),
    sa.Index("ix_scorm_packages_tenant", "tenant_id", "id"),
    sa.Index("ix_scorm_packages_version_of", "tenant_id", "version_of"),
    sa.Index("ix_scorm_packages_status", "status"),
    sa.Index("ix_scorm_packages_sha256", "tenant_id", "sha256"),
)

#: resumable uploads (tus 1.0.0): the part file holds the bytes so far (its size is the offset)
scorm_uploads = sa.Table(
    "scorm_uploads", metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("tenant_id", sa.BigInteger, nullable=False),
    sa.Column("tenant_slug", sa.String(63), nullable=False),
    sa.Column("length", sa.BigInteger, nullable=False),
    sa.Column("part_path", sa.Text, nullable=False),
    sa.Column("title", sa.Text, nullable=True),
    sa.Column("package_id", sa.BigInteger, nullable=True),
    sa.Column("created_at", Timestamp, nullable=False),
    sa.Column("expires_at", Timestamp, nullable=False),
    sa.Index("ix_scorm_uploads_tenant", "tenant_id", "id"),
)

scorm_scos = sa.Table(
    "scorm_scos", metadata,
    sa.Column("package_id", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("position", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("tenant_id", sa.BigInteger, nullable=False),
    sa.Column("identifier", sa.Text, nullable=False),
    sa.Column("title", sa.Text, nullable=False),
    sa.Column("launch_url", sa.Text, nullable=False),
    sa.Column("parameters", sa.Text, nullable=True),
    sa.Column("mastery_score", sa.Float, nullable=True),
    sa.Column("passing_score_scaled", sa.Float, nullable=True),
    sa.Column("parent_identifier", sa.Text, nullable=True),
    sa.Column("resource_identifier", sa.Text, nullable=False),
    sa.Column("objective_ids", sa.JSON, nullable=False),
    sa.Column("completion_threshold", sa.Float, nullable=True),
    sa.Column("launch_data", sa.Text, nullable=True),
    #: False for an item whose resource is an asset (issue 20): launchable as an untracked activity
    sa.Column("tracked", sa.Boolean, nullable=False, server_default=sa.true()),
    #: the manifest's time limit (issue 20): cmi.(student_data.)time_limit_action / max_time_allowed
    sa.Column("time_limit_action", sa.String(32), nullable=True),
    sa.Column("max_time_allowed", sa.String(64), nullable=True),
)

blobs, blob_chunks = blob_tables(metadata)

enrollments = sa.Table(
    "enrollments", metadata,
    sa.Column("tenant_id", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("enrollment_id", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("user_id", sa.BigInteger, nullable=False),
    sa.Column("course_id", sa.BigInteger, nullable=False),
    sa.Column("course_version", sa.Integer, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("expires_at", Timestamp, nullable=True),
    sa.Column("revision", sa.BigInteger, nullable=False),
    sa.Column("updated_at", Timestamp, nullable=False),
)

courses = sa.Table(
    "courses", metadata,
    sa.Column("tenant_id", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("course_id", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("title", sa.Text, nullable=False, server_default=""),
    sa.Column("revision", sa.BigInteger, nullable=False),
    sa.Column("updated_at", Timestamp, nullable=False),
)

course_activities = sa.Table(
    "course_activities", metadata,
    sa.Column("tenant_id", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("course_id", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("version_number", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("activity_id", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("title", sa.Text, nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("scorm_package_id", sa.BigInteger, nullable=True),
    sa.Column("sco_identifier", sa.Text, nullable=True),
    sa.Column("passing_score_scaled", sa.Float, nullable=True),
    #: an untracked item launched by this activity completes at launch unless this is false (issue 20)
    sa.Column("complete_on_launch", sa.Boolean, nullable=True),
)

#: the directory's names (``user.upserted``), for the learner name a launch hands the SCO; no email: unused here
users = sa.Table(
    "users", metadata,
    sa.Column("tenant_id", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("user_id", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("revision", sa.BigInteger, nullable=False),
    sa.Column("updated_at", Timestamp, nullable=False),
)

#: tenant status (``tenant.updated``): a suspended tenant's runtime tokens end (docs/scorm-runtime.md)
tenants = sa.Table(
    "tenants", metadata,
    sa.Column("tenant_id", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("updated_at", Timestamp, nullable=False),
)

runtime_sessions = sa.Table(
    "runtime_sessions", metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("tenant_id", sa.BigInteger, nullable=False),
    sa.Column("tenant_slug", sa.String(63), nullable=False),
    sa.Column("enrollment_id", sa.BigInteger, nullable=False),
    sa.Column("activity_id", sa.BigInteger, nullable=False),
    sa.Column("user_id", sa.BigInteger, nullable=False),
    sa.Column("course_id", sa.BigInteger, nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("package_id", sa.BigInteger, nullable=True),
    sa.Column("sco_identifier", sa.Text, nullable=True),
    sa.Column("standard", sa.String(8), nullable=False),
    sa.Column("launch_path", sa.Text, nullable=False),
    sa.Column("title", sa.Text, nullable=False),
    sa.Column("mastery_score", sa.Float, nullable=True),
    sa.Column("passing_score_scaled", sa.Float, nullable=True),
    sa.Column("completion_threshold", sa.Float, nullable=True),
    sa.Column("objective_ids", sa.JSON, nullable=False),
    sa.Column("launch_data", sa.Text, nullable=True),
    #: the manifest's time limit (issue 20): cmi.(student_data.)time_limit_action / max_time_allowed
    sa.Column("time_limit_action", sa.String(32), nullable=True),
    sa.Column("max_time_allowed", sa.String(64), nullable=True),
    #: an untracked launch (kind ``asset``): its attempt is completed (true) or stays incomplete (false)
    sa.Column("complete_on_launch", sa.Boolean, nullable=False, server_default=sa.true()),
    sa.Column("mode", sa.String(8), nullable=False),
    #: the learner's directory name when the launch started ("" when unknown); fixed for the whole launch
    sa.Column("learner_name", sa.Text, nullable=False, server_default=""),
    #: an admin's preview of a SCO: no enrollment behind it, so its commits send no events
    sa.Column("preview", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("cmi", sa.JSON, nullable=False),
    sa.Column("sequence", sa.Integer, nullable=False),
    sa.Column("reported_session_seconds", sa.Float, nullable=False),
    sa.Column("prior_total_seconds", sa.Float, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("started_at", Timestamp, nullable=False),
    sa.Column("finished_at", Timestamp, nullable=True),
    sa.Column("expires_at", Timestamp, nullable=False),
    sa.Column("request_id", sa.String(64), nullable=True),
    sa.Column("updated_at", Timestamp, nullable=False),
    sa.Index("ix_runtime_sessions_activity", "tenant_id", "enrollment_id", "activity_id", "id"),
)



# --- packages -----------------------------------------------------------------------------------------------

_p = scorm_packages.c


async def insert_package(session: AsyncSession, tenant_id: int, **values: Any) -> Any:
    return (await session.execute(
        TenantScope(tenant_id).insert(scorm_packages, **values).returning(*scorm_packages.c))).one()


async def package(session: AsyncSession, tenant_id: int, package_id: int) -> Any | None:
    return (await session.execute(
        TenantScope(tenant_id).select(scorm_packages).where(_p.id == package_id))).first()


async def package_by_sha256(session: AsyncSession, tenant_id: int, sha256: str) -> Any | None:
    """The tenant's newest package uploaded with these bytes that did not fail (``?dedupe=true``)."""
    return (await session.execute(
        TenantScope(tenant_id).select(scorm_packages)
        .where(_p.sha256 == sha256, _p.status != "failed", _p.archived_at.is_(None))
        .order_by(_p.id.desc()).limit(1))).first()


async def insert_upload(session: AsyncSession, tenant_id: int, **values: Any) -> Any:
    return (await session.execute(
        TenantScope(tenant_id).insert(scorm_uploads, **values).returning(*scorm_uploads.c))).one()


async def upload(session: AsyncSession, tenant_id: int, upload_id: int) -> Any | None:
    return (await session.execute(
        TenantScope(tenant_id).select(scorm_uploads).where(scorm_uploads.c.id == upload_id))).first()


async def upload_completed(session: AsyncSession, upload_id: int, package_id: int) -> None:
    await session.execute(sa.update(scorm_uploads).where(scorm_uploads.c.id == upload_id)
                          .values(package_id=package_id))


async def delete_upload(session: AsyncSession, upload_id: int) -> None:
    await session.execute(sa.delete(scorm_uploads).where(scorm_uploads.c.id == upload_id))


async def package_family(session: AsyncSession, tenant_id: int, root_id: int) -> list[Any]:
    """A package and all its versions, newest version first."""
    return list((await session.execute(
        TenantScope(tenant_id).select(scorm_packages)
        .where(sa.or_(_p.id == root_id, _p.version_of == root_id)).order_by(_p.version.desc(), _p.id.desc())
    )).all())


async def lock_package(session: AsyncSession, tenant_id: int, package_id: int) -> Any | None:
    """The package row, locked for this transaction (versions are numbered and archived one at a time)."""
    return (await session.execute(
        TenantScope(tenant_id).select(scorm_packages).where(_p.id == package_id).with_for_update())).first()


async def archive_package(session: AsyncSession, tenant_id: int, root_id: int, stamp: datetime) -> None:
    await session.execute(sa.update(scorm_packages).where(
        _p.tenant_id == tenant_id, sa.or_(_p.id == root_id, _p.version_of == root_id), _p.archived_at.is_(None),
    ).values(archived_at=stamp, updated_at=stamp))


async def published_courses_using(session: AsyncSession, tenant_id: int, package_ids: Sequence[int]) -> list[Any]:
    """Published courses of the tenant with an activity (in any published version) on one of these packages (a
    family: the first package and its versions)."""
    a, c = course_activities.c, courses.c
    return list((await session.execute(
        sa.select(c.course_id, c.title).distinct()
        .select_from(courses.join(course_activities, sa.and_(a.tenant_id == c.tenant_id,
                                                             a.course_id == c.course_id)))
        .where(c.tenant_id == tenant_id, c.status == "published", a.scorm_package_id.in_(list(package_ids)))
        .order_by(c.course_id)
    )).all())


async def sco_identifiers_in_use(session: AsyncSession, tenant_id: int, root_id: int) -> list[Any]:
    """The SCO identifiers activities of published course versions launch on this package."""
    a = course_activities.c
    return list((await session.execute(
        sa.select(a.sco_identifier, a.course_id, a.activity_id)
        .where(a.tenant_id == tenant_id, a.scorm_package_id == root_id, a.sco_identifier.is_not(None))
        .order_by(a.course_id, a.activity_id)
    )).all())


async def package_scos(session: AsyncSession, tenant_id: int, package_id: int) -> list[Any]:
    return list((await session.execute(
        TenantScope(tenant_id).select(scorm_scos).where(scorm_scos.c.package_id == package_id)
        .order_by(scorm_scos.c.position)
    )).all())


async def packages_page(session: AsyncSession, tenant_id: int, limit: int, after_id: int | None) -> list[Any]:
    """Up to ``limit`` packages, id descending, after ``after_id`` (keyset)."""
    stmt = TenantScope(tenant_id).select(scorm_packages).order_by(_p.id.desc()).limit(limit)
    if after_id is not None:
        stmt = stmt.where(_p.id < after_id)
    return list((await session.execute(stmt)).all())


async def upload_paths(session: AsyncSession) -> set[str]:
    """The upload files packages still point to."""
    return set((await session.execute(sa.select(_p.upload_path).where(_p.upload_path.is_not(None)))).scalars())


async def claim_package(session: AsyncSession, worker_id: str, stamp: datetime, lease: timedelta) -> Any | None:
    """Lease the oldest ``processing`` package nobody holds (``SKIP LOCKED``: replicas share the work)."""
    free = sa.and_(_p.status == "processing", sa.or_(_p.lease_until.is_(None), _p.lease_until < stamp))
    candidate = (await session.execute(
        sa.select(_p.id).where(free).order_by(_p.id).limit(1).with_for_update(skip_locked=True)
    )).first()
    if candidate is None:
        return None
    return (await session.execute(
        sa.update(scorm_packages).where(_p.id == candidate.id, free)
        .values(lease_owner=worker_id, lease_until=stamp + lease, import_attempts=_p.import_attempts + 1,
                updated_at=stamp)
        .returning(*scorm_packages.c)
    )).first()


async def renew_lease(session: AsyncSession, package_id: int, worker_id: str, until: datetime) -> None:
    await session.execute(sa.update(scorm_packages).where(_p.id == package_id, _p.lease_owner == worker_id)
                          .values(lease_until=until))


def _held(package_id: int, worker_id: str) -> sa.ColumnElement[bool]:
    return sa.and_(_p.id == package_id, _p.status == "processing", _p.lease_owner == worker_id)


async def update_held_package(session: AsyncSession, package_id: int, worker_id: str, **values: Any) -> bool:
    """Update a package this worker still holds; False when its lease was lost."""
    updated = await session.execute(sa.update(scorm_packages).where(_held(package_id, worker_id)).values(**values))
    return bool(updated.rowcount == 1)  # type: ignore[attr-defined]


async def replace_scos(session: AsyncSession, package_id: int, scos: Sequence[Mapping[str, Any]]) -> None:
    await session.execute(sa.delete(scorm_scos).where(scorm_scos.c.package_id == package_id))
    if scos:
        await session.execute(sa.insert(scorm_scos), list(scos))


# --- launches -----------------------------------------------------------------------------------------------


async def enrollment(session: AsyncSession, tenant_id: int, enrollment_id: int, *,
                     course_ids: frozenset[int] | None = None) -> Any | None:
    """With ``course_ids`` (a per-course key's, ADR 0019) an enrollment of another course is not found."""
    return (await session.execute(TenantScope(tenant_id, course_ids).select(enrollments)
                                  .where(enrollments.c.enrollment_id == enrollment_id))).first()


async def course(session: AsyncSession, tenant_id: int, course_id: int) -> Any | None:
    return (await session.execute(TenantScope(tenant_id).select(courses)
                                  .where(courses.c.course_id == course_id))).first()


async def course_activity(session: AsyncSession, tenant_id: int, course_id: int, version_number: int,
                          activity_id: int) -> Any | None:
    return (await session.execute(TenantScope(tenant_id).select(course_activities).where(
        course_activities.c.course_id == course_id,
        course_activities.c.version_number == version_number,
        course_activities.c.activity_id == activity_id,
    ))).first()


async def previous_session(session: AsyncSession, tenant_id: int, enrollment_id: int, activity_id: int) -> Any:
    """The latest launch of this activity by this enrollment, or None."""
    return (await session.execute(TenantScope(tenant_id).select(runtime_sessions).where(
        runtime_sessions.c.enrollment_id == enrollment_id, runtime_sessions.c.activity_id == activity_id,
    ).order_by(runtime_sessions.c.id.desc()).limit(1))).first()


async def learner_name(session: AsyncSession, tenant_id: int, user_id: int) -> str:
    """The directory name a launch hands the SCO; "" for a user no ``user.upserted`` told us about."""
    name = (await session.execute(sa.select(users.c.name).where(
        users.c.tenant_id == tenant_id, users.c.user_id == user_id))).scalar()
    return (name or "").strip()


async def insert_session(session: AsyncSession, tenant_id: int, *returning: Any, **values: Any) -> Any:
    """A new runtime session (a launch); ``returning`` columns (all of them by default)."""
    return (await session.execute(TenantScope(tenant_id).insert(runtime_sessions, **values)
                                  .returning(*(returning or runtime_sessions.c)))).one()


# --- the runtime --------------------------------------------------------------------------------------------

_s = runtime_sessions.c
_e = enrollments.c
# Every column but the snapshot: content requests (one per file) and commits never parse it on the event loop.
_COLUMNS = [c for c in runtime_sessions.c if c.name != "cmi"]
# The snapshot as stored text, parsed off the event loop when needed (a snapshot may be close to 1 MiB).
_CMI_TEXT = sa.cast(_s.cmi, sa.Text).label("cmi_text")
# The session with what decides whether it is still live: its enrollment (read model) and tenant status.
_SESSION = (
    sa.select(*_COLUMNS, _e.status.label("enrollment_status"),
              _e.expires_at.label("enrollment_expires_at"), tenants.c.status.label("tenant_status"))
    .select_from(runtime_sessions
                 .outerjoin(enrollments, sa.and_(_e.tenant_id == _s.tenant_id, _e.enrollment_id == _s.enrollment_id))
                 .outerjoin(tenants, tenants.c.tenant_id == _s.tenant_id))
    .where(_s.id == sa.bindparam("session_id"), _s.tenant_id == sa.bindparam("tenant_id"))
)
_SESSION_WITH_CMI = _SESSION.add_columns(_CMI_TEXT)
_STANDARD = sa.select(_s.standard).where(_s.id == sa.bindparam("session_id"),
                                         _s.tenant_id == sa.bindparam("tenant_id"))
# What decides whether a launch is still live, read with the claim (below) in the same statement: its enrollment
# (read model) and its tenant's status, as scalar subqueries on the claimed row.
_ENROLLMENT_OF_SESSION = sa.and_(_e.tenant_id == _s.tenant_id, _e.enrollment_id == _s.enrollment_id)
_CLAIM_LIVENESS = (
    sa.select(_e.status).where(_ENROLLMENT_OF_SESSION).correlate(runtime_sessions)
    .scalar_subquery().label("enrollment_status"),
    sa.select(_e.expires_at).where(_ENROLLMENT_OF_SESSION).correlate(runtime_sessions)
    .scalar_subquery().label("enrollment_expires_at"),
    sa.select(tenants.c.status).where(tenants.c.tenant_id == _s.tenant_id).correlate(runtime_sessions)
    .scalar_subquery().label("tenant_status"),
)
# Claims the next sequence of a live launch and takes its write lock (docs/scorm-runtime.md, "Ordering"); returns
# the launch with its liveness columns (one round trip, not the claim and a read after it).
_CLAIM = (
    sa.update(runtime_sessions)
    .where(_s.id == sa.bindparam("claim_id"), _s.tenant_id == sa.bindparam("claim_tenant_id"),
           _s.finished_at.is_(None))
    .values(sequence=_s.sequence + 1)
    .returning(*_COLUMNS, *_CLAIM_LIVENESS)
)
_STORED_CMI = sa.select(_CMI_TEXT).where(_s.id == sa.bindparam("session_id"))


def _param(name: str, column: sa.Column[Any]) -> sa.BindParameter[Any]:
    """A parameter typed like ``column`` (a SET cannot reuse a column's own name for its parameter)."""
    return sa.bindparam(name, type_=column.type)


# A commit's write, built once (building and compiling it per call cost more CPU than running it).
_WRITE_COMMIT = sa.update(runtime_sessions).where(_s.id == sa.bindparam("session_id")).values(
    cmi=_param("new_cmi", _s.cmi), status=_param("new_status", _s.status),
    updated_at=_param("new_updated_at", _s.updated_at), finished_at=_param("new_finished_at", _s.finished_at),
    reported_session_seconds=_param("new_reported_session_seconds", _s.reported_session_seconds),
)


async def runtime_session(session: AsyncSession, session_id: int, tenant_id: int, *,
                          with_cmi: bool = False) -> Any | None:
    """A session with its liveness columns; ``with_cmi``: also its snapshot as text (``cmi_text``)."""
    return (await session.execute(_SESSION_WITH_CMI if with_cmi else _SESSION,
                                  {"session_id": session_id, "tenant_id": tenant_id})).first()


async def session_standard(session: AsyncSession, session_id: int, tenant_id: int) -> str | None:
    return (await session.execute(_STANDARD, {"session_id": session_id, "tenant_id": tenant_id})).scalar()


async def claim_sequence(session: AsyncSession, session_id: int, tenant_id: int) -> Any | None:
    """``UPDATE ... SET sequence = sequence + 1 WHERE finished_at IS NULL RETURNING ...``: the claimed row (None
    once finished), with ``enrollment_status``, ``enrollment_expires_at`` and ``tenant_status`` as the read models
    have them. As the first statement of a transaction it takes the launch's write lock until the end."""
    return (await session.execute(_CLAIM, {"claim_id": session_id, "claim_tenant_id": tenant_id})).first()


async def stored_cmi(session: AsyncSession, session_id: int) -> str | None:
    return (await session.execute(_STORED_CMI, {"session_id": session_id})).scalar()


async def write_commit(session: AsyncSession, session_id: int, *, cmi: Mapping[str, str], status: str,
                       updated_at: datetime, finished_at: datetime | None, reported_session_seconds: float) -> None:
    """Store a commit: its snapshot, the derived status, the finish time (None: not a finish) and the session time."""
    await session.execute(_WRITE_COMMIT, {
        "session_id": session_id, "new_cmi": cmi, "new_status": status, "new_updated_at": updated_at,
        "new_finished_at": finished_at, "new_reported_session_seconds": reported_session_seconds})


# --- read models --------------------------------------------------------------------------------------------


async def record_enrollment(session: AsyncSession, tenant_id: int, enrollment_id: int, revision: int,
                            values: Mapping[str, Any]) -> None:
    """The enrollment, unless a newer revision is already recorded."""
    await session.execute(upsert(
        session, enrollments, {"tenant_id": tenant_id, "enrollment_id": enrollment_id, **values},
        ["tenant_id", "enrollment_id"], values, where=enrollments.c.revision < revision,
    ))


async def record_activities(session: AsyncSession, rows: Sequence[Mapping[str, Any]]) -> None:
    """Activities of a published version: kept once (a published tree never changes)."""
    await session.execute(insert_ignoring_conflicts(session, course_activities, list(rows)))


async def record_course(session: AsyncSession, tenant_id: int, course_id: int, revision: int,
                        values: Mapping[str, Any]) -> None:
    await session.execute(upsert(
        session, courses, {"tenant_id": tenant_id, "course_id": course_id, **values},
        ["tenant_id", "course_id"], values, where=courses.c.revision < revision,
    ))


async def record_user(session: AsyncSession, tenant_id: int, user_id: int, revision: int,
                      values: Mapping[str, Any]) -> None:
    await session.execute(upsert(
        session, users, {"tenant_id": tenant_id, "user_id": user_id, **values},
        ["tenant_id", "user_id"], values, where=users.c.revision < revision,
    ))


async def record_tenant(session: AsyncSession, tenant_id: int, updated_at: datetime,
                        values: Mapping[str, Any]) -> None:
    await session.execute(upsert(
        session, tenants, {"tenant_id": tenant_id, **values}, ["tenant_id"], values,
        where=tenants.c.updated_at < updated_at,
    ))
