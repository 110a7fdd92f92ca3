"""The scorm service's use cases: one function per command and per event.

Command handlers take a :class:`~shared.uow.UnitOfWork` whose ``deps`` is the service's
:class:`~services.scorm.context.ScormContext`, open and commit their own transactions, and raise the domain
exceptions of ``domain.py``. Event handlers (wired in ``app.EVENT_HANDLERS``) run in the consumer's transaction
and keep the read models a launch needs:

- ``enrollment.created/cancelled/expired/completed`` → who may launch (applied by ``revision``: a late or
  repeated event never takes an enrollment back);
- ``course.published`` → every activity of that version (a published tree never changes, so it is kept once,
  whatever order versions arrive in: a learner keeps launching the version they enrolled in);
- ``course.published/unpublished/archived`` → the course's status, by ``revision``;
- ``user.upserted`` → the learner's name a launch hands the SCO, by ``revision``;
- ``tenant.updated`` → the tenant's status (a suspended tenant's launches end), by ``updated_at``.

**Runtime ordering** (docs/scorm-runtime.md, "Ordering"): a commit or finish first claims its sequence with one
``UPDATE runtime_sessions SET sequence = sequence + 1 ... WHERE finished_at IS NULL RETURNING ...``. That
statement takes the launch's write lock on both databases (PostgreSQL: the row; SQLite: the database's one
writer lock, taken by the first statement of the transaction, so no stale read can precede it) and holds it
until the transaction ends, so the writes of one launch are totally ordered, each gets its own sequence, and
nothing is accepted once a finish has committed (the ``finished_at IS NULL`` condition is evaluated on the row
as the previous writer left it). Every body is the SCO's whole CMI snapshot, so a commit replaces the stored
one; the attempt fields are derived from it and sent as ``runtime.committed`` with the claimed ``sequence``.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import structlog
from structlog.contextvars import bind_contextvars

from services.scorm import domain, events, store
from services.scorm.context import ScormContext, package_prefix
from services.scorm.domain import Committed, Invalid, LaunchEnded, LeaseLost, NotFound
from services.scorm.manifest.items import ItemLaunchData
from services.scorm.manifest.zip_safety import ImportResult
from services.scorm.packages import resumable
from services.scorm.packages.upload import ReceivedUpload
from services.scorm.runtime.cmi import CmiError, CmiLimits, derive_attempt, validate_commit
from services.scorm.runtime.tokens import RuntimeClaims
from shared.bus.consumer import PermanentError
from shared.bus.envelope import CloudEvent, Origin
from shared.db import as_utc
from shared.events.catalog import CoursePublished, CourseSnapshot
from shared.events.directory import TenantUpdated, UserUpserted
from shared.events.enrollment import EnrollmentSnapshot
from shared.uow import UnitOfWork

log = structlog.get_logger("scorm.handlers")


def _scorm(uow: UnitOfWork) -> ScormContext:
    scorm: ScormContext = uow.deps
    return scorm


# --- packages -----------------------------------------------------------------------------------------------


async def upload_package(uow: UnitOfWork, origin: Origin, upload: ReceivedUpload, title: str | None,
                         *, version_of: int | None = None) -> Any:
    """Record a received upload as a ``processing`` package and wake the importer.

    ``version_of``: the upload is a new version of that package (or of the package it is itself a version of)."""
    stamp = store.now()
    try:
        async with uow:
            version, root_id = 1, None
            if version_of is not None:
                root_id, version = await _next_version(uow, origin, version_of)
            row = await store.insert_package(
                uow.session, origin.tenant_id, tenant_slug=origin.tenant_slug, title=title or domain.UNTITLED,
                title_given=title is not None,
                scorm_version=None, status="processing", error=None, bytes=upload.bytes, sha256=upload.sha256,
                organization_identifier=None, warnings=[], files=None, upload_path=str(upload.path),
                lease_owner=None, lease_until=None, import_attempts=0, request_id=origin.request_id,
                created_at=stamp, updated_at=stamp, version_of=root_id, version=version, archived_at=None,
            )
    except BaseException:
        with contextlib.suppress(OSError):
            upload.path.unlink()
        raise
    log.info("scorm_package_uploaded", package_id=row.id, bytes=upload.bytes, sha256=upload.sha256,
             version_of=root_id, version=version)
    _scorm(uow).import_wanted.set()
    return row


async def _next_version(uow: UnitOfWork, origin: Origin, package_id: int) -> tuple[int, int]:
    """(the first package's id, the next version number) for a new version of ``package_id``; locks the first
    package's row so two uploads at once get distinct numbers."""
    row = await store.package(uow.session, origin.tenant_id, package_id)
    if row is None:
        raise NotFound("scorm_package")
    root_id = int(row.version_of or row.id)
    root = await store.lock_package(uow.session, origin.tenant_id, root_id)
    if root is None:
        raise NotFound("scorm_package")
    if root.archived_at is not None:
        raise Invalid(f"The SCORM package {root_id} is archived: upload a new package instead of a version.")
    family = await store.package_family(uow.session, origin.tenant_id, root_id)
    return root_id, max(int(p.version) for p in family) + 1


async def archive_package(uow: UnitOfWork, origin: Origin, package_id: int) -> Any:
    """Archive a package and its versions; refused (InUse, naming them) while a published course uses it."""
    async with uow:
        row = await store.package(uow.session, origin.tenant_id, package_id)
        if row is None:
            raise NotFound("scorm_package")
        root_id = int(row.version_of or row.id)
        root = await store.lock_package(uow.session, origin.tenant_id, root_id)
        family = await store.package_family(uow.session, origin.tenant_id, root_id)
        using = await store.published_courses_using(uow.session, origin.tenant_id, [int(p.id) for p in family])
        if using:
            raise domain.InUse(domain.in_use_message(root_id, using))
        if row.archived_at is None:
            stamp = store.now()
            await store.archive_package(uow.session, origin.tenant_id, root_id, stamp)
            # The catalog learns it: a course can no longer be published with the package (issue 20).
            await uow.emit(events.package_archived(root, family, stamp, origin.request_id))
        archived = await store.package(uow.session, origin.tenant_id, package_id)
    log.info("scorm_package_archived", package_id=package_id, root_id=root_id)
    return archived


async def current_version(uow: UnitOfWork, tenant_id: int, package: Any) -> Any:
    """The version a new launch of ``package`` (what an activity names) runs: the newest ready version of its
    family, else the package itself (whose state then explains why it cannot launch)."""
    root_id = int(package.version_of or package.id)
    family = await store.package_family(uow.session, tenant_id, root_id)
    return next((p for p in family if p.status == "ready"), package)


async def duplicate_of(uow: UnitOfWork, origin: Origin, sha256: str) -> Any | None:
    """The package an upload of the same bytes made before (not failed), for ``?dedupe=true``."""
    async with uow:
        return await store.package_by_sha256(uow.session, origin.tenant_id, sha256)


async def get_package(uow: UnitOfWork, origin: Origin, package_id: int) -> tuple[Any, list[Any]]:
    """A package and its SCOs."""
    async with uow:
        row = await store.package(uow.session, origin.tenant_id, package_id)
        if row is None:
            raise NotFound("scorm_package")
        scos = await store.package_scos(uow.session, origin.tenant_id, package_id)
    return row, scos


async def list_packages(uow: UnitOfWork, origin: Origin, limit: int, after_id: int | None) -> list[Any]:
    async with uow:
        return await store.packages_page(uow.session, origin.tenant_id, limit, after_id)


async def upload_paths(uow: UnitOfWork) -> set[str]:
    """The upload files packages still point to (the importer sweeps the others)."""
    async with uow:
        return await store.upload_paths(uow.session)


async def claim_package(uow: UnitOfWork, worker_id: str) -> Any | None:
    """Lease the oldest ``processing`` package nobody holds; None when there is none."""
    lease = timedelta(seconds=_scorm(uow).settings.import_lease_seconds)
    async with uow:
        return await store.claim_package(uow.session, worker_id, store.now(), lease)


async def renew_lease(uow: UnitOfWork, package_id: int, worker_id: str) -> None:
    lease = _scorm(uow).settings.import_lease_seconds
    async with uow:
        await store.renew_lease(uow.session, package_id, worker_id, store.now() + timedelta(seconds=lease))


async def package_imported(uow: UnitOfWork, row: Any, worker_id: str, result: ImportResult,
                           extras: dict[str, ItemLaunchData]) -> None:
    """End a held package ``ready`` with its SCO list and ``scorm_package.ready``; LeaseLost if no longer held."""
    manifest = result.manifest
    if row.version_of is not None:
        async with uow:
            in_use = await store.sco_identifiers_in_use(uow.session, row.tenant_id, int(row.version_of))
        missing = domain.missing_scos(in_use, {sco.identifier for sco in manifest.scos})
        if missing:
            await package_refused(uow, row, worker_id, missing)
            return
    title = domain.package_title(row, manifest.title)
    stamp = store.now()
    scos = [
        {
            "package_id": row.id, "position": sco.position, "tenant_id": row.tenant_id,
            "identifier": sco.identifier, "title": sco.title, "launch_url": sco.launch_url,
            "parameters": sco.parameters, "mastery_score": sco.mastery_score,
            "passing_score_scaled": sco.passing_score_scaled, "parent_identifier": sco.parent_identifier,
            "resource_identifier": sco.resource_identifier,
            "objective_ids": extras.get(sco.identifier, ItemLaunchData()).objective_ids,
            "completion_threshold": extras.get(sco.identifier, ItemLaunchData()).completion_threshold,
            "launch_data": extras.get(sco.identifier, ItemLaunchData()).launch_data,
            "time_limit_action": extras.get(sco.identifier, ItemLaunchData()).time_limit_action,
            "max_time_allowed": extras.get(sco.identifier, ItemLaunchData()).max_time_allowed,
            "tracked": True,
        }
        for sco in manifest.scos
    ]
    # Items whose resource is an asset with a page to open: launchable as untracked activities (issue 20)
    scos += [
        {
            "package_id": row.id, "position": item.position, "tenant_id": row.tenant_id,
            "identifier": item.identifier, "title": item.title, "launch_url": item.launch_url,
            "parameters": None, "mastery_score": None, "passing_score_scaled": None,
            "parent_identifier": item.parent_identifier, "resource_identifier": item.resource_identifier or "",
            "objective_ids": [], "completion_threshold": None, "launch_data": None, "time_limit_action": None,
            "max_time_allowed": None, "tracked": False,
        }
        for item in manifest.items if not item.is_sco and item.launch_url is not None
    ]
    scos.sort(key=lambda sco: int(sco["position"]))
    event = events.package_ready(row, title=title, scorm_version=manifest.scorm_version, scos=scos)
    async with uow:
        held = await store.update_held_package(
            uow.session, row.id, worker_id,
            status="ready", title=title, scorm_version=manifest.scorm_version, error=None,
            organization_identifier=manifest.organization_identifier, warnings=result.warnings,
            files=len(result.files), upload_path=None, lease_owner=None, lease_until=None, updated_at=stamp,
        )
        if not held:
            raise LeaseLost()
        await store.replace_scos(uow.session, row.id, scos)
        await uow.emit(event)


async def package_refused(uow: UnitOfWork, row: Any, worker_id: str, error: str) -> None:
    """End a held package ``failed`` (no files kept) with ``scorm_package.failed``; LeaseLost if no longer held."""
    scorm = _scorm(uow)
    assert uow.db is not None
    # A crashed earlier attempt may have left files behind: a failed package keeps none.
    await scorm.blob_store(uow.db).delete_prefix(package_prefix(row.tenant_id, row.id))
    async with uow:
        held = await store.update_held_package(
            uow.session, row.id, worker_id,
            status="failed", error=error, upload_path=None, lease_owner=None, lease_until=None,
            updated_at=store.now(),
        )
        if not held:
            raise LeaseLost()
        await uow.emit(events.package_failed(row, error))
    log.info("scorm_import_failed", package_id=row.id, error=error)


async def release_package(uow: UnitOfWork, row: Any, worker_id: str) -> None:
    """Give a held package back after an unexpected error; it is retried after a pause."""
    async with uow:
        await store.update_held_package(uow.session, row.id, worker_id, lease_owner=None,
                                        lease_until=store.now() + domain.retry_pause(row.import_attempts))


# --- launches -----------------------------------------------------------------------------------------------


async def _sco_target(uow: UnitOfWork, tenant_id: int, package: Any, wanted: str | None,
                      passing: float | None) -> domain.LaunchTarget:
    domain.check_package_ready(package)
    scos = await store.package_scos(uow.session, tenant_id, package.id)
    return domain.sco_target(package, scos, wanted, passing)


def _answer(scorm: ScormContext, origin: Origin, session_id: int, expires_at: Any) -> dict[str, Any]:
    token = scorm.tokens.issue(session_id, origin.tenant_id, expires_at)
    return {
        "launch_url": f"{scorm.settings.common.content_url_for(origin.tenant_slug)}/learn/player/{token}",
        "runtime_token": token,
        "expires_at": expires_at,
    }


async def launch(uow: UnitOfWork, origin: Origin, enrollment_id: int, activity_id: int) -> dict[str, Any]:
    """A launch of an activity by an enrollment: a runtime session, its token and ``runtime.committed`` 0."""
    scorm = _scorm(uow)
    tenant_id = origin.tenant_id
    stamp = store.now()
    expires_at = domain.token_expiry(stamp, scorm.settings.token_ttl)
    async with uow:
        session = uow.session
        enrollment = await store.enrollment(session, tenant_id, enrollment_id, course_ids=origin.course_ids)
        if enrollment is None:
            raise NotFound("enrollment")
        mode = domain.launch_mode(enrollment, stamp)
        domain.check_course_launchable(await store.course(session, tenant_id, enrollment.course_id))
        activity = await store.course_activity(session, tenant_id, enrollment.course_id, enrollment.course_version,
                                               activity_id)
        if activity is None:
            raise NotFound("activity")
        family_root: int | None = None
        if activity.kind != "scorm":
            target = domain.builtin_target(activity)
        else:
            package = (None if activity.scorm_package_id is None
                       else await store.package(session, tenant_id, activity.scorm_package_id))
            package = domain.check_activity_package(activity, package)
            domain.check_not_archived(package)
            family_root = int(package.version_of or package.id)
            package = await current_version(uow, tenant_id, package)
            target = await _sco_target(uow, tenant_id, package, activity.sco_identifier,
                                       activity.passing_score_scaled)
        target = replace(target, complete_on_launch=activity.complete_on_launch is not False)
        previous = await store.previous_session(session, tenant_id, enrollment_id, activity_id)
        if (family_root is not None and previous is not None
                and previous.package_id not in (None, target.package_id) and domain.mid_attempt(previous)):
            # A learner mid-attempt finishes on the version they started; new attempts get the newest one.
            started_on = await store.package(session, tenant_id, previous.package_id)
            if (started_on is not None and started_on.status == "ready"
                    and int(started_on.version_of or started_on.id) == family_root):
                target = replace(await _sco_target(uow, tenant_id, started_on, previous.sco_identifier,
                                                   activity.passing_score_scaled),
                                 complete_on_launch=target.complete_on_launch)
        resumed = domain.resumes(previous, target)
        name = await store.learner_name(session, tenant_id, enrollment.user_id)
        row = await store.insert_session(
            session, tenant_id, tenant_slug=origin.tenant_slug, enrollment_id=enrollment_id,
            activity_id=activity_id, user_id=enrollment.user_id, learner_name=name,
            course_id=enrollment.course_id, mode=mode,
            **target.values(), **domain.resumed_values(previous if resumed else None),
            sequence=0, reported_session_seconds=0.0, status=target.initial_status, started_at=stamp,
            finished_at=None, expires_at=expires_at, request_id=origin.request_id, updated_at=stamp,
        )
        # An untracked item (an asset) is completed on launch (unless the activity says not to): nothing in it will
        # ever report progress.
        await uow.emit(events.runtime_committed(row, sequence=0, status=target.initial_status))
    answer = _answer(scorm, origin, row.id, expires_at)
    log.info("activity_launched", attempt_id=row.id, enrollment_id=enrollment_id, activity_id=activity_id,
             kind=target.kind, standard=target.standard, mode=mode, resumed=resumed)
    return {**answer, "attempt_id": row.id}


async def preview(uow: UnitOfWork, origin: Origin, package_id: int, sco_identifier: str | None,
                  admin_id: int | None) -> dict[str, Any]:
    """An admin trying a SCO: a launch in browse mode with no enrollment behind it and no events."""
    scorm = _scorm(uow)
    stamp = store.now()
    expires_at = domain.token_expiry(stamp, scorm.settings.token_ttl)
    async with uow:
        package = await store.package(uow.session, origin.tenant_id, package_id)
        if package is None:
            raise NotFound("scorm_package")
        target = await _sco_target(uow, origin.tenant_id, package, sco_identifier, None)
        row = await store.insert_session(
            uow.session, origin.tenant_id, store.runtime_sessions.c.id, tenant_slug=origin.tenant_slug,
            enrollment_id=0, activity_id=0,
            user_id=admin_id or 0, learner_name="",  # an admin, not a learner of the directory
            course_id=0, mode="browse", preview=True, **target.values(),
            **domain.resumed_values(None), sequence=0, reported_session_seconds=0.0, status="not_attempted",
            started_at=stamp, finished_at=None, expires_at=expires_at, request_id=origin.request_id,
            updated_at=stamp,
        )
    answer = _answer(scorm, origin, row.id, expires_at)
    log.info("sco_previewed", package_id=package_id, sco_identifier=target.sco_identifier)
    return answer


# --- the runtime (a token, no tenant headers) ---------------------------------------------------------------


async def open_launch(uow: UnitOfWork, token: str, *, with_cmi: bool = False) -> Any:
    """The live runtime session a genuine, unexpired token names (InvalidToken otherwise; LaunchEnded once it has
    ended). ``with_cmi``: also its stored snapshot, as text (``cmi_text``; ``domain.page_state`` parses it)."""
    claims = _scorm(uow).tokens.verify(token)
    async with uow:
        row = await store.runtime_session(uow.session, claims.session_id, claims.tenant_id, with_cmi=with_cmi)
    if row is None:
        raise domain.invalid_token()
    bind_contextvars(tenant=row.tenant_slug, attempt_id=row.id)
    reason = domain.ended(finished_at=row.finished_at, preview=row.preview, enrollment_status=row.enrollment_status,
                          enrollment_expires_at=row.enrollment_expires_at, tenant_status=row.tenant_status,
                          stamp=store.now())
    if reason is not None:
        raise LaunchEnded(reason)
    return row


#: a commit this small is checked on the event loop, inside the transaction, right after its claim (well under a
#: millisecond): no worker-thread hop and no read of the launch's standard before the claim. Larger ones are checked
#: in a worker thread before the launch is locked (a 10,000-element snapshot takes a good fraction of a second).
INLINE_CHECK_ELEMENTS = 256
INLINE_CHECK_CHARACTERS = 64 * 1024


def checked_inline(cmi: dict[str, Any]) -> bool:
    """Whether ``cmi`` is small enough to check on the event loop (``INLINE_CHECK_*``)."""
    if len(cmi) > INLINE_CHECK_ELEMENTS:
        return False
    size = 0
    for name, value in cmi.items():
        # anything that is not a string is refused by the check itself, at once
        size += len(name) + (len(value) if isinstance(value, str) else 0)
    return size <= INLINE_CHECK_CHARACTERS


def _validated(standard: str, cmi: dict[str, Any], limits: CmiLimits) -> dict[str, str]:
    try:
        return validate_commit(standard, cmi, limits)
    except CmiError as exc:
        raise Invalid(str(exc)) from None


async def _checked_off_loop(uow: UnitOfWork, claims: RuntimeClaims, cmi: dict[str, Any],
                            limits: CmiLimits) -> dict[str, str]:
    """A large commit's snapshot checked against its launch's standard, off the event loop and before the launch's
    lock is taken."""
    async with uow:
        standard = await store.session_standard(uow.session, claims.session_id, claims.tenant_id)
    if standard is None:
        raise domain.invalid_token()
    return await asyncio.to_thread(_validated, standard, cmi, limits)


async def commit(uow: UnitOfWork, token: str, cmi: dict[str, Any] | None, *, finish: bool,
                 request_id: str) -> Committed:
    """Store a commit's snapshot (None: keep the stored one, finish only) and send ``runtime.committed``.

    Answers, in this order: an unknown launch is ``InvalidToken``; a snapshot the data model refuses is ``Invalid``;
    a launch that has ended is ``LaunchEnded`` (a repeated finish is answered with the finish's own result)."""
    scorm = _scorm(uow)
    claims = scorm.tokens.verify(token)
    limits = scorm.limits
    snapshot = None
    if cmi is not None and not checked_inline(cmi):
        snapshot = await _checked_off_loop(uow, claims, cmi, limits)
    async with uow:
        session = uow.session
        # First statement of the transaction: takes the launch's write lock (module docstring).
        row = await store.claim_sequence(session, claims.session_id, claims.tenant_id)
        if row is None:
            existing = await store.runtime_session(session, claims.session_id, claims.tenant_id)
            if existing is None:
                raise domain.invalid_token()
            bind_contextvars(tenant=existing.tenant_slug, attempt_id=existing.id)
            if cmi is not None and snapshot is None:
                _validated(existing.standard, cmi, limits)  # a refused body is 400 whatever the launch's state
            if finish:  # a repeated finish (the player's beacon after Terminate): already done, nothing changes
                return Committed(existing.id, existing.sequence, existing.status, True)
            log.info("runtime_commit_after_finish_refused", attempt_id=existing.id)
            raise LaunchEnded(domain.FINISHED)
        bind_contextvars(tenant=row.tenant_slug, attempt_id=row.id)
        if cmi is not None and snapshot is None:
            snapshot = _validated(row.standard, cmi, limits)  # raises: rolls the claimed sequence back
        stamp = store.now()
        reason = domain.ended(finished_at=None, preview=row.preview, enrollment_status=row.enrollment_status,
                              enrollment_expires_at=row.enrollment_expires_at, tenant_status=row.tenant_status,
                              stamp=stamp)
        if reason is not None:
            raise LaunchEnded(reason)  # rolls the claimed sequence back
        if snapshot is None:  # a bare finish: the stored snapshot, as the last commit left it
            stored = await store.stored_cmi(session, row.id)
            snapshot = await asyncio.to_thread(domain.parsed_snapshot, stored)
        try:
            fields = derive_attempt(row.standard, snapshot, row.mastery_score, row.passing_score_scaled,
                                    completion_threshold=row.completion_threshold)
        except CmiError as exc:
            raise Invalid(str(exc)) from None
        if row.kind == domain.UNTRACKED:  # decided at launch; the player's own commits do not change it
            fields = domain.untracked_fields(fields, complete=row.complete_on_launch)
        reported = fields.session_time_seconds
        delta = domain.session_time_delta(reported, row.reported_session_seconds)
        sequence = row.sequence  # already the claimed one
        ended_at = stamp if finish else None
        await store.write_commit(
            session, row.id, cmi=snapshot, status=fields.status, updated_at=stamp, finished_at=ended_at,
            reported_session_seconds=max(row.reported_session_seconds, reported or 0.0),
        )
        if not row.preview:  # a preview has no enrollment: nothing to tell
            await uow.emit(events.runtime_committed(row, sequence=sequence, status=fields.status, fields=fields,
                                                    delta=delta, ended_at=ended_at, request_id=request_id))
    log.info("runtime_committed", attempt_id=row.id, sequence=sequence, status=fields.status, finished=finish,
             session_time_delta=round(delta, 2))
    return Committed(row.id, sequence, fields.status, finish)


# --- events: the read models --------------------------------------------------------------------------------


def _tenant(event: CloudEvent) -> int:
    if event.tenantid < 1:
        raise PermanentError(f"event {event.id} has no valid tenant id")
    return event.tenantid


async def enrollment_changed(uow: UnitOfWork, event: CloudEvent, payload: EnrollmentSnapshot) -> None:
    tenant_id = _tenant(event)
    values = {
        "user_id": payload.user_id,
        "course_id": payload.course_id,
        "course_version": payload.course_version,
        "status": payload.status,
        "expires_at": payload.expires_at,
        "revision": payload.revision,
        "updated_at": store.now(),
    }
    await store.record_enrollment(uow.session, tenant_id, payload.enrollment_id, payload.revision, values)
    log.info("enrollment_recorded", enrollment_id=payload.enrollment_id, status=payload.status,
             revision=payload.revision)


async def course_changed(uow: UnitOfWork, event: CloudEvent, payload: CourseSnapshot) -> None:
    tenant_id = _tenant(event)
    if isinstance(payload, CoursePublished):
        rows: list[dict[str, Any]] = [
            {
                "tenant_id": tenant_id, "course_id": payload.course_id,
                "version_number": payload.version_number,
                "activity_id": activity.activity_id, "title": activity.title, "kind": activity.kind,
                "scorm_package_id": activity.scorm_package_id, "sco_identifier": activity.sco_identifier,
                "passing_score_scaled": (None if activity.passing_score_scaled is None
                                         else float(activity.passing_score_scaled)),
                "complete_on_launch": getattr(activity, "complete_on_launch", None),
            }
            for module in payload.modules for lesson in module.lessons for activity in lesson.activities
        ]
        if rows:
            await store.record_activities(uow.session, rows)
    values = {"status": payload.status, "title": payload.title, "revision": payload.revision,
              "updated_at": store.now()}
    await store.record_course(uow.session, tenant_id, payload.course_id, payload.revision, values)
    log.info("course_recorded", course_id=payload.course_id, status=payload.status,
             version=payload.version_number)


async def user_upserted(uow: UnitOfWork, event: CloudEvent, payload: UserUpserted) -> None:
    """The newest revision of a user's name wins: a late or repeated event never brings an old name back."""
    tenant_id = _tenant(event)
    values = {"name": payload.name, "revision": payload.revision, "updated_at": payload.updated_at}
    await store.record_user(uow.session, tenant_id, payload.user_id, payload.revision, values)
    log.info("user_recorded", user_id=payload.user_id, revision=payload.revision)


async def tenant_updated(uow: UnitOfWork, event: CloudEvent, payload: TenantUpdated) -> None:
    """The latest status wins: a late or repeated event never brings an old status back."""
    tenant_id = _tenant(event)
    values = {"status": payload.status, "updated_at": payload.updated_at}
    await store.record_tenant(uow.session, tenant_id, payload.updated_at, values)
    log.info("tenant_recorded", status=payload.status)


# --- resumable uploads (tus 1.0.0; packages/resumable.py) ------------------------------------------------------


async def create_resumable(uow: UnitOfWork, origin: Origin, length: int, title: str | None) -> Any:
    """A new resumable upload of ``length`` bytes, its part file empty."""
    settings = _scorm(uow).settings
    path = resumable.new_part_path(settings.upload_path)
    await resumable.create_part(path)
    stamp = store.now()
    try:
        async with uow:
            return await store.insert_upload(
                uow.session, origin.tenant_id, tenant_slug=origin.tenant_slug, length=length, part_path=str(path),
                title=title, package_id=None, created_at=stamp,
                expires_at=stamp + timedelta(seconds=settings.resumable_upload_ttl))
    except BaseException:
        with contextlib.suppress(OSError):
            path.unlink()
        raise


async def resumable_upload(uow: UnitOfWork, origin: Origin, upload_id: int) -> Any:
    """A live resumable upload of the tenant (an expired one is gone)."""
    async with uow:
        row = await store.upload(uow.session, origin.tenant_id, upload_id)
    if row is None or (row.package_id is None and store.now() >= as_utc(row.expires_at)):
        raise NotFound("scorm_upload")
    return row


async def complete_resumable(uow: UnitOfWork, origin: Origin, row: Any) -> Any:
    """The last byte arrived: the part becomes a package upload (hashed, checked) and its import starts."""
    settings = _scorm(uow).settings
    part = Path(row.part_path)
    try:
        path, digest = await resumable.finish(part, settings.upload_path)
    except Invalid:
        await asyncio.to_thread(part.unlink, missing_ok=True)
        async with uow:
            await store.delete_upload(uow.session, row.id)
        raise
    package = await upload_package(uow, origin, ReceivedUpload(path=path, bytes=int(row.length), sha256=digest),
                                   row.title)
    async with uow:
        await store.upload_completed(uow.session, row.id, package.id)
    log.info("scorm_resumable_upload_completed", upload_id=row.id, package_id=package.id)
    return package
