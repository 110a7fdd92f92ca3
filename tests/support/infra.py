"""Where the tests' PostgreSQL and RabbitMQ come from.

Order: ``LEARN_TEST_POSTGRES_URL`` / ``LEARN_TEST_AMQP_URL`` (or ``LEARN_POSTGRES_URL`` / ``LEARN_AMQP_URL``),
then the loopback defaults (127.0.0.1:5432 user postgres, 127.0.0.1:5672 guest/guest), then testcontainers when a
Docker engine answers. Otherwise the run fails with a message saying what to start — never a silent skip.
"""

from __future__ import annotations

import asyncio
import os
import socket
from urllib.parse import urlsplit

from aiohttp import encode_basic_auth
from yarl import URL

DEFAULT_PG = "postgresql://postgres@127.0.0.1:5432"
DEFAULT_AMQP = "amqp://guest:guest@127.0.0.1:5672/"

_containers: list[object] = []


def _reachable(url: str, default_port: int) -> bool:
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or default_port), timeout=2):
            return True
    except OSError:
        return False


def _docker_available() -> bool:
    try:
        import docker  # type: ignore[import-untyped]

        docker.from_env().ping()
        return True
    except Exception:
        return False


def postgres_url() -> str:
    url = os.environ.get("LEARN_TEST_POSTGRES_URL") or os.environ.get("LEARN_POSTGRES_URL") or DEFAULT_PG
    if _reachable(url, 5432):
        return url
    if _docker_available():
        from testcontainers.postgres import PostgresContainer

        container = PostgresContainer("postgres:15-alpine", driver=None)
        container.start()
        _containers.append(container)
        return container.get_connection_url().rsplit("/", 1)[0]
    raise RuntimeError(
        f"PostgreSQL is not reachable at {url} and no Docker engine is available for testcontainers. "
        "Start PostgreSQL (e.g. `pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start`) "
        "or set LEARN_TEST_POSTGRES_URL."
    )


def amqp_url() -> str:
    url = os.environ.get("LEARN_TEST_AMQP_URL") or os.environ.get("LEARN_AMQP_URL") or DEFAULT_AMQP
    if _reachable(url, 5672):
        return url
    if _docker_available():
        from testcontainers.rabbitmq import RabbitMqContainer

        container = RabbitMqContainer("rabbitmq:3.13-management").with_exposed_ports(15672)
        container.start()
        _containers.append(container)
        params = container.get_connection_params()
        os.environ.setdefault("LEARN_TEST_RABBITMQ_MANAGEMENT_URL", f"http://guest:guest@{params.host}:"
                              f"{container.get_exposed_port(15672)}")
        return f"amqp://guest:guest@{params.host}:{params.port}/"
    raise RuntimeError(
        f"RabbitMQ is not reachable at {url} and no Docker engine is available for testcontainers. "
        "Start RabbitMQ (e.g. `rabbitmq-server -detached`) or set LEARN_TEST_AMQP_URL."
    )


def management_url() -> str:
    """RabbitMQ's management HTTP API next to :func:`amqp_url` (AMQP subscribers, issue 19):
    ``LEARN_TEST_RABBITMQ_MANAGEMENT_URL``, else port 15672 of the broker's host with the same credentials. The
    plugin must be enabled (``rabbitmq-plugins enable rabbitmq_management``; .ci/run does)."""
    explicit = os.environ.get("LEARN_TEST_RABBITMQ_MANAGEMENT_URL")
    if explicit:
        return explicit
    parts = urlsplit(amqp_url())
    return f"http://{parts.username or 'guest'}:{parts.password or 'guest'}@{parts.hostname or '127.0.0.1'}:15672"


def management_api() -> tuple[str, dict[str, str]]:
    """The management API's base (``.../api``) and the Authorization header of :func:`management_url`'s user."""
    url = URL(management_url())
    api = str(url.with_user(None).with_password(None)).rstrip("/") + "/api"
    return api, {"Authorization": encode_basic_auth(url.user or "guest", url.password or "")}


def management_unreachable(api: str) -> str:
    """What to do when the management API does not answer (the message both its users fail with)."""
    return (f"RabbitMQ's management API does not answer at {api}: enable the plugin "
            "(rabbitmq-plugins enable rabbitmq_management) or set LEARN_TEST_RABBITMQ_MANAGEMENT_URL")


def stop_containers() -> None:
    for container in _containers:
        container.stop()  # type: ignore[attr-defined]


async def wait_until(predicate, timeout: float = 10.0, interval: float = 0.05, message: str = "condition"):
    """Poll ``predicate`` (sync or async) until truthy; returns its value or fails with ``message``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = predicate()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {message}")
        await asyncio.sleep(interval)
