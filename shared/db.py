"""Database access shared by every service: one async engine per service, migrations, tenant scoping.

PostgreSQL (asyncpg) in the real topology; SQLite (aiosqlite) for the embedded default. Each service owns its
own database and its own alembic migrations under ``services/<name>/migrations``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, overload

import asyncpg
import sqlalchemy as sa
import structlog
from sqlalchemy import event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

log = structlog.get_logger("shared.db")

#: an autoincrementing id: BIGINT on PostgreSQL, INTEGER on SQLite (only INTEGER PRIMARY KEY autoincrements there)
BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
#: every timestamp column: timezone-aware, written as UTC
Timestamp = sa.DateTime(timezone=True)


class Database:
    """An async engine plus a session factory for one service's database, and the hot reads' path
    (:meth:`read_one`, :meth:`read_all`: one statement outside any transaction, see :class:`ReadQuery`)."""

    def __init__(self, url: str, *, pool_size: int = 10, echo: bool = False):
        self.url = url
        self.is_postgres = url.startswith("postgresql")
        self.pool_size = pool_size
        kwargs: dict[str, Any] = {"echo": echo}
        if self.is_postgres:
            kwargs.update(pool_size=pool_size, max_overflow=pool_size, pool_recycle=1800)
            if _loopback_without_ssl_choice(url):
                kwargs.update(connect_args={"ssl": False})
        else:
            kwargs.update(connect_args={"timeout": 30})
        self.engine: AsyncEngine = create_async_engine(url, **kwargs)
        if not self.is_postgres:
            event.listen(self.engine.sync_engine, "connect", _sqlite_pragmas)
        self.sessions = async_sessionmaker(self.engine, expire_on_commit=False)
        self._reads: Any = None  # the asyncpg pool of the hot reads, opened on the first one
        self._reads_opening: asyncio.Future[Any] | None = None

    # --- the hot reads -------------------------------------------------------------------------------------

    async def read_one(self, query: ReadQuery, scope: TenantScope, **params: Any) -> Any | None:
        """The first row of ``query`` in ``scope`` (or None), read as one statement outside any transaction."""
        if self.is_postgres and scope.course_ids is None:
            pool = self._reads if self._reads is not None else await self._open_reads()
            sql, names = query.postgres()
            params["tenant_id"] = scope.tenant_id
            return await _once_more_if_lost(pool.fetchrow, sql, *[params[n] for n in names], record_class=Row)
        async with self.engine.connect() as conn:
            return (await conn.execute(*query.bound(scope, params))).first()

    async def read_all(self, query: ReadQuery, scope: TenantScope, **params: Any) -> list[Any]:
        """Every row of ``query`` in ``scope``, read as one statement outside any transaction."""
        if self.is_postgres and scope.course_ids is None:
            pool = self._reads if self._reads is not None else await self._open_reads()
            sql, names = query.postgres()
            params["tenant_id"] = scope.tenant_id
            return list(await _once_more_if_lost(pool.fetch, sql, *[params[n] for n in names], record_class=Row))
        async with self.engine.connect() as conn:
            return list((await conn.execute(*query.bound(scope, params))).all())

    async def notify(self, channel: str, payload: str) -> None:
        """``pg_notify(channel, payload)`` on its own, committed at once: one round trip on the reads' asyncpg pool
        (not a SQLAlchemy BEGIN / SELECT / COMMIT). PostgreSQL only."""
        pool = self._reads if self._reads is not None else await self._open_reads()
        await _once_more_if_lost(pool.execute, "SELECT pg_notify($1, $2)", channel, payload)

    async def _open_reads(self) -> Any:
        """The reads' pool: asyncpg's own (no SQLAlchemy session, greenlet hop or BEGIN/COMMIT per read), up to
        ``pool_size`` connections, opened when first needed and closed with :meth:`dispose`."""
        if self._reads_opening is None:
            self._reads_opening = asyncio.get_running_loop().create_future()
            try:
                pool = await asyncpg.create_pool(listen_dsn(self.url), min_size=0, max_size=self.pool_size,
                                                 max_inactive_connection_lifetime=60.0, reset=_reset_read,
                                                 init=_read_codecs)
            except BaseException as exc:
                self._reads_opening.set_exception(exc)
                self._reads_opening.exception()  # retrieved: the next read tries again
                self._reads_opening = None
                raise
            self._reads = pool
            self._reads_opening.set_result(pool)
            return pool
        return await asyncio.shield(self._reads_opening)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        """One unit of work: commits on success, rolls back on any exception."""
        async with self.sessions() as session, session.begin():
            yield session

    async def ping(self) -> None:
        async with self.engine.connect() as conn:
            await conn.execute(sa.text("SELECT 1"))

    async def dispose(self) -> None:
        reads, self._reads, self._reads_opening = self._reads, None, None
        if reads is not None:
            try:
                await asyncio.wait_for(reads.close(), timeout=5)
            except (TimeoutError, Exception):
                reads.terminate()
        await self.engine.dispose()


# A connection lost under a statement: the server went away (restart, failover) or asyncpg's state machine was left
# mid-operation by it ("cannot switch to state …", InternalClientError).
_LOST_CONNECTION = (asyncpg.ConnectionDoesNotExistError, asyncpg.exceptions.InternalClientError,
                    asyncpg.exceptions.AdminShutdownError)


async def _once_more_if_lost(call: Any, *args: Any, **kwargs: Any) -> Any:
    """``await call(*args, **kwargs)`` on the reads' pool, tried once more if its pooled connection had died with
    its server (a restart, a failover): safe for a read or a notification; if the server is still down the second
    try raises, and the error is a 503 (shared/http.py ``is_unavailable``)."""
    try:
        return await call(*args, **kwargs)
    except _LOST_CONNECTION:
        return await call(*args, **kwargs)


class Row(asyncpg.Record):
    """A row of a hot read: ``row.column`` as on a SQLAlchemy row ()."""

    __slots__ = ()

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


async def _reset_read(conn: Any) -> None:
    """The reads' pool runs single statements and never opens a transaction, sets a setting or listens: nothing to
    reset between two reads (asyncpg's default reset is one more round trip per read). A connection left inside a
    transaction all the same gets the full reset."""
    if conn.is_in_transaction():
        await conn.reset()


async def _read_codecs(conn: Any) -> None:
    """JSON columns as Python values, as SQLAlchemy gives them."""
    for name in ("json", "jsonb"):
        await conn.set_type_codec(name, encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


class ReadQuery:
    """A ``SELECT`` of a hot read, built once (module level) by ``build(scope)``: the store's usual statement with
    the tenant scope's filters and named bind parameters (``sa.bindparam("course_id")``). Run by
    :meth:`Database.read_one` / :meth:`Database.read_all` (or a unit of work's, in its transaction when it is
    open) as one statement outside any transaction: on PostgreSQL its own snapshot, like any statement in
    autocommit.

    Built once with ``TenantScope(sa.bindparam("tenant_id"))``, so it filters exactly as ``build`` says for every
    tenant; a scope limited to some courses (a per-course key) builds its statement per call (the filter names its
    courses). On PostgreSQL the statement of an unlimited scope is compiled once to asyncpg's SQL (``$1, $2``) and
    runs on the reads' asyncpg pool, its prepared statement cached per connection: no SQLAlchemy session,
    statement building, compilation, greenlet hop or BEGIN/COMMIT per request. Its columns come back as asyncpg
    decodes them (for integers, text, numerics and timestamps the same Python values as through SQLAlchemy; JSON
    decoded); a column named like a method of ``asyncpg.Record`` (``get``, ``keys``, ``values``, ``items``) must
    be read as ``row["name"]``. Anything else (SQLite, a per-course scope) runs through SQLAlchemy Core.
    """

    def __init__(self, build: Callable[[TenantScope], sa.Select[Any]]):
        self.build = build
        self.stmt = build(TenantScope(sa.bindparam("tenant_id")))  # type: ignore[arg-type]
        if "tenant_id" not in self.stmt.compile().params:
            raise ValueError("a hot read filters on its tenant: build its statement with the scope it is given")
        self._postgres: tuple[str, tuple[str, ...]] | None = None

    def bound(self, scope: TenantScope, params: dict[str, Any]) -> tuple[sa.Select[Any], dict[str, Any]]:
        """(the statement for ``scope``, its parameters with the tenant's)."""
        stmt = self.stmt if scope.course_ids is None else self.build(
            TenantScope(sa.bindparam("tenant_id"), scope.course_ids))  # type: ignore[arg-type]
        return stmt, {**params, "tenant_id": scope.tenant_id}

    def postgres(self) -> tuple[str, tuple[str, ...]]:
        """(SQL with ``$n`` placeholders, the parameter names in their order) of the unlimited scope's statement."""
        if self._postgres is None:
            from sqlalchemy.dialects.postgresql.asyncpg import PGDialect_asyncpg

            compiled = self.stmt.compile(dialect=PGDialect_asyncpg())
            self._postgres = (compiled.string, tuple(compiled.positiontup or ()))
        return self._postgres


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


async def ensure_database(url: str) -> None:
    """Create the PostgreSQL database named in ``url`` if it does not exist (no-op for SQLite)."""
    if not url.startswith("postgresql"):
        return
    import asyncpg

    parsed = make_url(url)
    name = parsed.database
    admin = parsed.set(drivername="postgresql", database="postgres")
    conn = await asyncpg.connect(admin.render_as_string(hide_password=False))
    try:
        exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
        if not exists:
            try:
                await conn.execute(f'CREATE DATABASE "{name}"')
                log.info("database_created", database=name)
            except asyncpg.DuplicateDatabaseError:
                pass  # another replica won the race
    finally:
        await conn.close()


async def drop_database(url: str) -> None:
    if not url.startswith("postgresql"):
        path = make_url(url).database
        if path:
            for suffix in ("", "-wal", "-shm"):
                await asyncio.to_thread(Path(path + suffix).unlink, missing_ok=True)
        return
    import asyncpg

    parsed = make_url(url)
    admin = parsed.set(drivername="postgresql", database="postgres")
    conn = await asyncpg.connect(admin.render_as_string(hide_password=False))
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{parsed.database}" WITH (FORCE)')
    finally:
        await conn.close()


# --- migrations ---------------------------------------------------------------------------------------------


def _alembic_config(migrations_dir: Path, url: str) -> Any:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(migrations_dir))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def head_revision(migrations_dir: Path) -> str | None:
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(_alembic_config(migrations_dir, "sqlite://"))
    return script.get_current_head()


async def current_revision(conn: AsyncConnection) -> str | None:
    def read(sync_conn: sa.Connection) -> str | None:
        from alembic.migration import MigrationContext

        return MigrationContext.configure(sync_conn).get_current_revision()

    return await conn.run_sync(read)


async def migrate(url: str, migrations_dir: Path) -> None:
    """Create the database if needed and upgrade it to head. Safe to run from several replicas at once."""
    await ensure_database(url)
    engine = create_async_engine(url)
    try:
        async with engine.begin() as conn:
            if url.startswith("postgresql"):
                # Serialise concurrent migrators (a Job and a dev-mode start, or two replicas).
                await conn.execute(sa.text("SELECT pg_advisory_xact_lock(727274)"))

            def upgrade(sync_conn: sa.Connection) -> None:
                from alembic import command

                cfg = _alembic_config(migrations_dir, url)
                cfg.attributes["connection"] = sync_conn
                command.upgrade(cfg, "head")

            await conn.run_sync(upgrade)
    finally:
        await engine.dispose()


async def migrations_applied(db: Database, migrations_dir: Path) -> bool:
    """True when the database is at this code's head, or at a revision this code does not know.

    An unknown revision means a newer release already migrated (expand/contract migrations keep old code working):
    old pods must stay ready during a rolling upgrade instead of all leaving their Service at once.
    """
    from alembic.script import ScriptDirectory

    async with db.engine.connect() as conn:
        current = await current_revision(conn)
    script = ScriptDirectory.from_config(_alembic_config(migrations_dir, "sqlite://"))
    if current == script.get_current_head():
        return True
    if current is None:
        return False
    known = {rev.revision for rev in script.walk_revisions()}
    return current not in known


def run_alembic_env(target_metadata: sa.MetaData) -> None:
    """The body of every service's ``migrations/env.py``: runs on the connection handed over by :func:`migrate`,
    or opens one from the configured URL when alembic is invoked from its own CLI."""
    from alembic import context

    config = context.config
    connection = config.attributes.get("connection")
    if connection is not None:
        context.configure(connection=connection, target_metadata=target_metadata,
                          render_as_batch=connection.dialect.name == "sqlite")
        with context.begin_transaction():
            context.run_migrations()
        return
    url = config.get_main_option("sqlalchemy.url")
    assert url, "set sqlalchemy.url or run through `python -m services.<name> migrate`"

    async def online() -> None:
        engine = create_async_engine(url)
        async with engine.connect() as conn:

            def run(sync_conn: sa.Connection) -> None:
                context.configure(connection=sync_conn, target_metadata=target_metadata)
                with context.begin_transaction():
                    context.run_migrations()

            await conn.run_sync(run)
            await conn.commit()
        await engine.dispose()

    asyncio.run(online())


# --- tenant scoping -----------------------------------------------------------------------------------------


class TenantScope:
    """Builds statements that always filter on ``tenant_id``, so forgetting it takes effort.

    ``scope.select(courses)`` ≡ ``select(courses).where(courses.c.tenant_id == tenant_id)``; ``insert`` fills it.

    A scope may also be limited to some courses (a per-course API key, ADR 0019): then every ``select``,
    ``update`` and ``delete`` of a table with a course column (``course_id``, or the column a table names in
    ``info={"course_column": ...}``: the catalog's ``courses.id``) also filters on those courses, so a row of
    another course is not found, exactly like a missing one.
    """

    def __init__(self, tenant_id: int, course_ids: frozenset[int] | None = None):
        self.tenant_id = tenant_id
        self.course_ids = course_ids

    @classmethod
    def of(cls, origin: Any) -> TenantScope:
        """The scope of a request's ``Origin`` (its tenant and, for a per-course key, its courses)."""
        return cls(origin.tenant_id, getattr(origin, "course_ids", None))

    def _filters(self, table: sa.Table) -> list[sa.ColumnElement[bool]]:
        filters: list[sa.ColumnElement[bool]] = [table.c.tenant_id == self.tenant_id]
        column = course_column(table)
        if self.course_ids is not None and column is not None:
            filters.append(column.in_(sorted(self.course_ids)))
        return filters

    def select(self, table: sa.Table, *columns: Any) -> sa.Select[Any]:
        stmt = sa.select(*columns) if columns else sa.select(table)
        return stmt.where(*self._filters(table))

    def update(self, table: sa.Table) -> sa.Update:
        return sa.update(table).where(*self._filters(table))

    def delete(self, table: sa.Table) -> sa.Delete:
        return sa.delete(table).where(*self._filters(table))

    def insert(self, table: sa.Table, **values: Any) -> sa.Insert:
        return sa.insert(table).values(tenant_id=self.tenant_id, **values)

    def where(self, table: sa.Table) -> sa.ColumnElement[bool]:
        return sa.and_(*self._filters(table))

    def allows_course(self, course_id: int) -> bool:
        return self.course_ids is None or course_id in self.course_ids


def course_column(table: sa.Table) -> sa.Column[Any] | None:
    """The column naming a row's course, if the table has one (see :class:`TenantScope`)."""
    name = table.info.get("course_column", "course_id")
    return table.c[name] if name in table.c else None


# --- read models several services keep ----------------------------------------------------------------------


def tenant_names_table(metadata: sa.MetaData, *, name_nullable: bool = False) -> sa.Table:
    """``tenants``: each tenant's slug and display name, as the gateway forwards them or events carry them."""
    return sa.Table(
        "tenants",
        metadata,
        sa.Column("tenant_id", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("slug", sa.String(63), nullable=False),
        sa.Column("name", sa.String(200), nullable=name_nullable),
        sa.Column("updated_at", Timestamp, nullable=False),
    )


def directory_users_table(metadata: sa.MetaData, name: str = "users") -> sa.Table:
    """The directory's users (``user.upserted``): name and email per tenant and user id, with the revision that
    orders the events."""
    return sa.Table(
        name,
        metadata,
        sa.Column("tenant_id", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("user_id", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("email", sa.String(320), nullable=False),
        sa.Column("revision", sa.BigInteger, nullable=False),
        sa.Column("updated_at", Timestamp, nullable=False),
    )


def utcnow() -> Any:
    return datetime.now(UTC)


@overload
def as_utc(value: datetime) -> datetime: ...


@overload
def as_utc(value: datetime | None) -> datetime | None: ...


def as_utc(value: datetime | None) -> datetime | None:
    """A timestamp read back from a database, in UTC: SQLite hands back naive datetimes (they were stored as UTC)."""
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


# --- portable upserts (PostgreSQL and SQLite) ----------------------------------------------------------------


def _dialect(db: AsyncSession | AsyncConnection) -> Any:
    bind = db.get_bind() if isinstance(db, AsyncSession) else db
    return postgresql if bind.dialect.name == "postgresql" else sqlite


def upsert(db: AsyncSession | AsyncConnection, table: sa.Table, values: Mapping[str, Any], keys: list[str],
           update: Mapping[str, Any], where: sa.ColumnElement[bool] | None = None) -> Any:
    """``INSERT ... ON CONFLICT (keys) DO UPDATE SET update [WHERE where]`` (``where`` sees the existing row)."""
    stmt = _dialect(db).insert(table).values(**values)
    return stmt.on_conflict_do_update(index_elements=keys, set_=dict(update), where=where)


def insert_ignoring_conflicts(db: AsyncSession | AsyncConnection, table: sa.Table,
                              rows: Mapping[str, Any] | Sequence[Mapping[str, Any]]) -> Any:
    """``INSERT ... ON CONFLICT DO NOTHING`` of one row (a mapping) or several (a list of mappings)."""
    return _dialect(db).insert(table).values(rows).on_conflict_do_nothing()


def is_unique_violation(exc: BaseException) -> bool:
    """True when an IntegrityError is a unique/primary-key violation (PostgreSQL or SQLite)."""
    orig = getattr(exc, "orig", None)
    sqlstate = getattr(orig, "sqlstate", None) or getattr(getattr(orig, "__cause__", None), "sqlstate", None)
    if sqlstate == "23505":
        return True
    text = str(orig or exc)
    return "UNIQUE constraint failed" in text or "duplicate key value" in text


def listen_dsn(url: str) -> str:
    """The plain libpq DSN (for asyncpg's own connection) of a SQLAlchemy PostgreSQL URL."""
    parsed = make_url(url).set(drivername="postgresql")
    if _loopback_without_ssl_choice(url):
        parsed = parsed.update_query_dict({"sslmode": "disable"})
    return parsed.render_as_string(hide_password=False)


_LOOPBACK = {"localhost", "127.0.0.1", "::1"}


def _loopback_without_ssl_choice(url: str) -> bool:
    """A PostgreSQL on this machine's loopback (or a Unix socket) whose URL names no TLS mode: asyncpg's default
    (``prefer``) would try TLS on every new connection — an SSL context per connection, for traffic that never
    leaves the host. Any ``ssl``/``sslmode`` in the URL is honoured as given (docs/operations.md)."""
    parsed = make_url(url)
    if "ssl" in parsed.query or "sslmode" in parsed.query:
        return False
    return parsed.host is None or parsed.host in _LOOPBACK or parsed.host.startswith("/")


async def listen_forever(dsn: str, channel: str, on_notify: Any, *, on_connect: Any = None,
                         what: str = "listen") -> None:
    """Keep a PostgreSQL ``LISTEN`` connection open on ``channel``, reconnecting as needed; every notification
    calls ``on_notify(connection, pid, channel, payload)``. ``on_connect()`` runs after each (re)connect, to catch
    up on anything sent while nobody listened. Runs until cancelled."""
    import asyncpg

    while True:
        try:
            conn = await asyncpg.connect(dsn)
            await conn.add_listener(channel, on_notify)
            if on_connect is not None:
                on_connect()
            try:
                while not conn.is_closed():
                    await asyncio.sleep(5)
                    await conn.execute("SELECT 1")
            finally:
                with contextlib.suppress(Exception):
                    await conn.close()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning(f"{what}_failed", channel=channel, error=repr(exc))
            await asyncio.sleep(2)
