"""Ways to break the shared infrastructure for a few seconds, always putting it back."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator


async def run(*cmd: str, timeout: float = 120) -> None:
    proc = await asyncio.create_subprocess_exec(*cmd, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.STDOUT)
    out, _ = await asyncio.wait_for(proc.communicate(), timeout)
    if proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} exited with {proc.returncode}: {out.decode(errors='replace')}")


@contextlib.asynccontextmanager
async def broker_stopped() -> AsyncIterator[None]:
    """RabbitMQ's app stopped (the node stays up) for the body of the block; started again however it ends."""
    await run("rabbitmqctl", "stop_app")
    try:
        yield
    finally:
        await run("rabbitmqctl", "start_app")
        await run("rabbitmqctl", "await_startup")


def _postgres_version() -> str:
    versions = sorted(os.listdir("/etc/postgresql"))
    assert versions, "no PostgreSQL cluster under /etc/postgresql"
    return versions[-1]


async def restart_postgres() -> None:
    """A fast restart of the PostgreSQL server (open transactions roll back, every connection breaks)."""
    version = _postgres_version()
    try:
        await run("pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "restart")
    finally:
        # whatever happened, leave it running (``start`` on a running cluster fails harmlessly)
        with contextlib.suppress(AssertionError):
            await run("pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "start")
        await run("pg_isready", "-h", "127.0.0.1", "-p", "5432", "-t", "60")
