"""The command line every service shares: ``python -m services.<name> serve|migrate``."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aiohttp import web

from shared.config import ServiceSettings
from shared.db import migrate
from shared.logging import configure_logging, get_logger


def install_uvloop() -> None:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - optional on some platforms
        return
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


def run_until_signal(main: Callable[[asyncio.Event], Awaitable[None]]) -> None:
    """Run ``main(stop)`` on the event loop (uvloop where installed); ``stop`` is set on SIGINT or SIGTERM."""
    install_uvloop()

    async def entry() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await main(stop)

    asyncio.run(entry())


def service_main(
    name: str,
    settings_factory: Callable[[], ServiceSettings],
    create_app: Callable[[Any], web.Application],
    migrations_dir: Path,
    argv: list[str] | None = None,
) -> int:
    parser = argparse.ArgumentParser(prog=f"python -m services.{name}", description=f"mobieusLearn {name} service")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the HTTP API, the outbox relay and the consumers")
    serve.add_argument("--port", type=int, help=f"override LEARN_{name.upper()}_PORT")
    serve.add_argument("--no-consumers", action="store_true", help="do not consume events (API + relay only)")
    serve.add_argument("--no-relay", action="store_true", help="do not run the outbox relay")
    sub.add_parser("migrate", help="create the database if missing and apply migrations")
    args = parser.parse_args(argv)
    settings = settings_factory()
    configure_logging(name, settings.common.log_level, settings.common.log_json)
    log = get_logger("cli")
    if args.command == "migrate":
        url = settings.database_url
        asyncio.run(migrate(url, migrations_dir))
        log.info("migrations_applied", service=name)
        return 0
    if args.port:
        settings.port = args.port
    if args.no_consumers:
        settings.consumers_enabled = False
    if args.no_relay:
        settings.relay_enabled = False
    install_uvloop()
    app = create_app(settings)
    log.info("service_starting", port=settings.port, host=settings.common.host)
    web.run_app(app, host=settings.common.host, port=settings.port, access_log=None, print=None,
                shutdown_timeout=10)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(2)
