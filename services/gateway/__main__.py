"""``python -m services.gateway serve|migrate``; ``serve --workers N`` forks N processes sharing the port.

Workers use SO_REUSEPORT: the kernel spreads connections over them. Migrations run once, in the parent, before
the fork. Each worker keeps its own key cache and rate-limit buckets (see docs/gateway.md). Every process listens
on two ports: ``LEARN_GATEWAY_PORT`` (API, admin, verification) and ``LEARN_GATEWAY_CONTENT_PORT`` (the content
origin: player, package files, runtime; see services/gateway/content.py).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys

from aiohttp import web

from services.gateway.app import GATEWAY_KEY, MIGRATIONS, create_app
from services.gateway.config import GatewaySettings
from services.gateway.content import create_content_app
from shared.cli import run_until_signal, service_main
from shared.db import migrate
from shared.logging import configure_logging, get_logger


async def start_gateway(settings: GatewaySettings, app: web.Application | None = None, *,
                        reuse_port: bool = False) -> list[web.AppRunner]:
    """Start the gateway's two listeners (the content one unless its port is 0); cleanup in reverse order."""
    runners: list[web.AppRunner] = []
    host = settings.common.host
    main = app or create_app(settings)
    apps = [(main, settings.port)]
    if settings.content_port:
        # One read-your-writes memory for both listeners: a runtime commit is waited for by the next API read.
        apps.append((create_content_app(settings, causal=main[GATEWAY_KEY].causal), settings.content_port))
    try:
        for one, port in apps:
            runner = web.AppRunner(one, access_log=None, shutdown_timeout=10)
            await runner.setup()
            runners.append(runner)
            await web.TCPSite(runner, host, port, reuse_port=reuse_port or None).start()
    except BaseException:
        for runner in reversed(runners):
            await runner.cleanup()
        raise
    return runners


def run_gateway(settings: GatewaySettings, *, reuse_port: bool = False) -> None:
    """Serve until SIGINT or SIGTERM (what ``web.run_app`` does, for two listeners)."""

    async def main(stop: asyncio.Event) -> None:
        runners = await start_gateway(settings, reuse_port=reuse_port)
        try:
            await stop.wait()
        finally:
            for runner in reversed(runners):
                await runner.cleanup()

    run_until_signal(main)


def serve_workers(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m services.gateway serve")
    parser.add_argument("--port", type=int)
    parser.add_argument("--content-port", type=int, help="override LEARN_GATEWAY_CONTENT_PORT (0: no listener)")
    parser.add_argument("--workers", type=int)
    parser.add_argument("--no-consumers", action="store_true")
    parser.add_argument("--no-relay", action="store_true")
    args = parser.parse_args(argv)
    settings = GatewaySettings()
    if args.port:
        settings.port = args.port
    if args.content_port is not None:
        settings.content_port = args.content_port
    workers = args.workers or settings.workers
    settings.consumers_enabled = not args.no_consumers
    settings.relay_enabled = not args.no_relay
    configure_logging("gateway", settings.common.log_level, settings.common.log_json)
    log = get_logger("cli")
    if workers <= 1:
        run_gateway(settings)
        return 0
    asyncio.run(migrate(settings.database_url, MIGRATIONS))
    settings.common.run_migrations_on_start = False
    settings.resolved_admin_token()  # create the shared files once, before the workers race for them
    settings.resolved_pepper()
    children: list[int] = []
    for index in range(workers):
        pid = os.fork()
        if pid == 0:
            log.info("gateway_worker_starting", worker=index, port=settings.port,
                     content_port=settings.content_port)
            run_gateway(settings, reuse_port=True)
            os._exit(0)
        children.append(pid)

    def forward(signum: int, _frame: object) -> None:
        for child in children:
            try:
                os.kill(child, signum)
            except ProcessLookupError:
                pass

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    status = 0
    for child in children:
        _, code = os.waitpid(child, 0)
        status = status or os.waitstatus_to_exitcode(code)
    return status


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["serve"]:
        return serve_workers(argv[1:])
    return service_main("gateway", GatewaySettings, create_app, MIGRATIONS, argv)


if __name__ == "__main__":
    sys.exit(main())
