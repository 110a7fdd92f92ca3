"""Settings shared by every service, read from the environment with pydantic-settings.

Common settings use the ``LEARN_`` prefix (``LEARN_POSTGRES_URL``, ``LEARN_AMQP_URL`` ...). Each service adds
its own settings class with the prefix ``LEARN_<NAME>_`` (``LEARN_CATALOG_PORT`` ...) and embeds the common ones.

With neither ``LEARN_POSTGRES_URL`` nor ``LEARN_AMQP_URL`` set the system runs the *embedded default*: one
SQLite file per service under ``LEARN_DATA_DIR`` and the in-process bus.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import ClassVar
from urllib.parse import urlsplit, urlunsplit

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

SERVICE_NAMES = ("gateway", "catalog", "enrollment", "certificates", "scorm", "webhooks")
DEFAULT_PORTS = {"gateway": 8080, "catalog": 8081, "enrollment": 8082, "certificates": 8083, "scorm": 8084,
                 "webhooks": 8086}


class CommonSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LEARN_", extra="ignore")

    postgres_url: str | None = Field(default=None, description="PostgreSQL server URL; one database per service")
    database_prefix: str = Field(default="", description="prefix for database names (tests isolate runs with it)")
    amqp_url: str | None = Field(default=None, description="RabbitMQ URL; unset means the in-process bus")
    amqp_namespace: str = Field(default="", description="prefix for exchange/queue names (tests only)")
    amqp_delivery_limit: int = Field(default=5, ge=1)
    amqp_prefetch: int = Field(default=64, ge=1)
    amqp_reconnect_interval: float = Field(
        default=1.0, gt=0, le=60,
        description="seconds between reconnect attempts after the broker dropped a connection (each failed "
                    "attempt logs a warning)")
    data_dir: Path = Path(".data")
    internal_secret: str | None = None
    public_url: str = Field(default="http://localhost:8080",
                            description="the API and admin origin (verification URLs, the admin UI)")
    content_url: str = Field(
        default="http://localhost:8085",
        description="the content origin: the SCORM player, package files and runtime endpoints (never the "
                    "public_url's origin); may hold '{tenant}' for one origin per tenant",
    )
    base_domain: str = "localhost"
    log_level: str = "info"
    log_json: bool = True
    host: str = "127.0.0.1"
    relay_batch_size: int = Field(default=200, ge=1, le=5000)
    relay_poll_interval: float = Field(default=1.0, gt=0)
    run_migrations_on_start: bool = True
    json_body_limit: int = 1024 * 1024
    db_pool_size: int = Field(default=5, ge=1, le=200,
                              description="connections per service process (the same again as overflow)")
    consistency_wait: float = Field(default=5.0, ge=0, le=60,
                                    description="longest a request waits for an earlier write's events "
                                                "(read-your-writes, ADR 0010); then 503 not_yet_consistent")
    idempotency_ttl: float = Field(default=86400.0, gt=0, description="seconds an Idempotency-Key is remembered")
    idempotency_lease: float = Field(default=120.0, gt=0,
                                     description="seconds a key stays in flight if its request's process died")
    idempotency_sweep_interval: float = Field(default=600.0, gt=0, description="seconds between expiry sweeps")

    @model_validator(mode="after")
    def _content_origin_of_its_own(self) -> CommonSettings:
        # Package JavaScript runs on the content origin: it must never be the origin that holds authority.
        try:
            content, public = origin_of(self.content_url.replace("{tenant}", "tenant")), origin_of(self.public_url)
        except ValueError as exc:
            raise ValueError(f"LEARN_CONTENT_URL / LEARN_PUBLIC_URL: {exc}") from None
        if "{tenant}" in self.content_url and "{tenant}" not in urlsplit(self.content_url).netloc:
            raise ValueError("LEARN_CONTENT_URL: '{tenant}' may only appear in the host name")
        if content == public:
            raise ValueError(f"LEARN_CONTENT_URL ({self.content_url}) must be another origin than "
                             f"LEARN_PUBLIC_URL ({self.public_url}): package JavaScript runs on it")
        return self

    def content_url_for(self, tenant_slug: str) -> str:
        """The content origin's base URL for ``tenant_slug`` (``{tenant}`` in LEARN_CONTENT_URL is replaced)."""
        return self.content_url.replace("{tenant}", tenant_slug).rstrip("/")

    @property
    def public_origin(self) -> str:
        return origin_of(self.public_url)

    @property
    def content_origin_source(self) -> str:
        """The content origin as a CSP source: ``{tenant}`` becomes the ``*`` host wildcard."""
        return origin_of(self.content_url.replace("{tenant}", "*"))

    @property
    def embedded(self) -> bool:
        return self.postgres_url is None and self.amqp_url is None

    def database_url(self, service: str) -> str:
        """The SQLAlchemy async URL of ``service``'s own database."""
        override = os.environ.get(f"LEARN_{service.upper()}_DATABASE_URL")
        if override:
            return to_async_url(override)
        name = f"{self.database_prefix}learn_{service}"
        if self.postgres_url:
            parts = urlsplit(self.postgres_url)
            return to_async_url(urlunsplit((parts.scheme, parts.netloc, "/" + name, parts.query, "")))
        self.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        path = (self.data_dir / (name + ".sqlite3")).resolve()
        private_sqlite_file(path)
        return f"sqlite+aiosqlite:///{path}"

    def resolved_internal_secret(self) -> str:
        """The gateway-to-service credential.

        Unset, it is read from (or created in) ``<data_dir>/internal_secret`` so that processes started on one
        machine agree without configuration. Production sets ``LEARN_INTERNAL_SECRET`` from a Secret.
        """
        if self.internal_secret:
            return self.internal_secret
        return _file_secret(self.data_dir / "internal_secret")


SQLITE_SIDE_FILES = ("-wal", "-shm", "-journal")


def private_sqlite_file(path: Path) -> None:
    """Create the SQLite file ``path`` readable and writable by its owner only (0600, like the secret files), or
    tighten an existing one. SQLite gives the ``-wal``, ``-shm`` and ``-journal`` files it creates the database
    file's mode; existing ones are tightened here too."""
    fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o600)
    os.close(fd)
    for candidate in (path, *(path.with_name(path.name + suffix) for suffix in SQLITE_SIDE_FILES)):
        try:
            if candidate.stat().st_mode & 0o077:
                candidate.chmod(0o600)
        except FileNotFoundError:
            pass


def _file_secret(path: Path) -> str:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        value = secrets.token_urlsafe(32)
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        tmp.write_text(value)
        tmp.chmod(0o600)
        try:
            os.link(tmp, path)  # atomic create-if-absent: the first process wins
        except FileExistsError:
            pass
        finally:
            tmp.unlink(missing_ok=True)
        return path.read_text().strip()


def origin_of(url: str) -> str:
    """``scheme://host[:port]`` of a URL (what a browser compares, and what a CSP source names)."""
    parts = urlsplit(url)
    if not parts.scheme or not parts.netloc:
        raise ValueError(f"not an absolute URL: {url!r}")
    return f"{parts.scheme}://{parts.netloc}".lower()


def to_async_url(url: str) -> str:
    if url.startswith(("postgresql://", "postgres://")):
        return "postgresql+asyncpg://" + url.split("://", 1)[1]
    if url.startswith("sqlite://") and "+aiosqlite" not in url:
        return "sqlite+aiosqlite://" + url.split("://", 1)[1]
    return url


class ServiceSettings(BaseSettings):
    """Base of every service's settings; subclasses set ``env_prefix = "LEARN_<NAME>_"``."""

    model_config = SettingsConfigDict(extra="ignore")

    common: CommonSettings = Field(default_factory=CommonSettings)
    port: int = 0
    consumers_enabled: bool = True
    relay_enabled: bool = True
    db_pool_size: int | None = Field(
        default=None, ge=1, le=200,
        description="this service's database connections per process (LEARN_<SERVICE>_DB_POOL_SIZE); unset = "
                    "LEARN_DB_POOL_SIZE")

    service_name: ClassVar[str] = "service"

    @property
    def pool_size(self) -> int:
        """Database connections per process for this service: its own setting, else the common one."""
        return self.db_pool_size or self.common.db_pool_size

    @property
    def database_url(self) -> str:
        return self.common.database_url(self.service_name)
