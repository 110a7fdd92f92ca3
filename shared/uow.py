"""The unit of work every handler takes: one database session and the outbox writer bound to it.

Command handlers (``services/<name>/handlers.py``) open and commit their own transaction::

    async def enroll(uow: UnitOfWork, origin: Origin, command: Enroll) -> Enrollment:
        async with uow:                      # BEGIN ... COMMIT (ROLLBACK on any exception)
            row = await store.insert_enrollment(uow.session, ...)
            await uow.emit(build_event(origin, EnrollmentCreated(...), service=SERVICE, subject=...))
        return row

A ``UnitOfWork`` can be entered again after it exits (a retry loop opens a fresh transaction each time).

A read that needs no transaction (a single ``SELECT``: the hot reads of the API) is one call,
``await uow.read_one(store.COURSE, scope, course_id=...)`` (``shared.db.ReadQuery``), without ``async with``: it
then runs as one statement on its own, without BEGIN/COMMIT or an ORM session; inside ``async with uow`` it runs in
the transaction.

Event handlers get a unit of work that is already *joined* to the consumer's transaction, because the inbox
row that makes the consumer idempotent must commit together with the handler's writes
(``shared/bus/consumer.py``). Entering a joined unit of work is a no-op: the consumer commits.

``deps`` carries the service's own collaborators (caches, the render pool, settings) to handlers without a
web request or a global: the API layer and the consumer wiring both build units of work with the same deps.
"""

from __future__ import annotations

from types import TracebackType
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from shared.bus import outbox
from shared.bus.envelope import CloudEvent
from shared.db import Database, ReadQuery, TenantScope


class UnitOfWork:
    def __init__(self, db: Database | None, *, deps: Any = None, session: AsyncSession | None = None):
        if db is None and session is None:
            raise ValueError("a unit of work needs a database or a joined session")
        self.db = db
        self.deps = deps
        self._session = session
        self._joined = session is not None
        self._tx: Any = None

    @classmethod
    def joined(cls, session: AsyncSession, *, deps: Any = None) -> UnitOfWork:
        """A unit of work inside a transaction someone else owns (the consumer's, with its inbox row)."""
        return cls(None, deps=deps, session=session)

    @property
    def session(self) -> AsyncSession:
        if self._session is None:
            raise RuntimeError("the unit of work is not open: use `async with uow:` first")
        return self._session

    @property
    def in_transaction(self) -> bool:
        return self._session is not None

    async def read_one(self, query: ReadQuery, scope: TenantScope, **params: Any) -> Any | None:
        """The first row of a hot read (``shared.db.ReadQuery``), or None: in this unit of work's transaction when
        it is open (or joined), else as one statement on its own (no transaction: ``Database.read_one``)."""
        if self._session is not None:
            return (await self._session.execute(*query.bound(scope, params))).first()
        assert self.db is not None
        return await self.db.read_one(query, scope, **params)

    async def read_all(self, query: ReadQuery, scope: TenantScope, **params: Any) -> list[Any]:
        """Every row of a hot read, like :meth:`read_one`."""
        if self._session is not None:
            return list((await self._session.execute(*query.bound(scope, params))).all())
        assert self.db is not None
        return await self.db.read_all(query, scope, **params)

    async def emit(self, *events: CloudEvent) -> None:
        """Stage events in the outbox: they are published only if this transaction commits."""
        await outbox.add(self.session, *events)

    async def __aenter__(self) -> UnitOfWork:
        if self._joined:
            return self
        if self._session is not None:
            raise RuntimeError("this unit of work is already open")
        assert self.db is not None
        session = self.db.sessions()
        try:
            self._tx = await session.begin()
        except BaseException:
            await session.close()
            raise
        self._session = session
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        if self._joined:
            return
        session, tx = self._session, self._tx
        self._session, self._tx = None, None
        assert session is not None
        try:
            if exc_type is None:
                await tx.commit()
            else:
                await tx.rollback()
        finally:
            await session.close()
