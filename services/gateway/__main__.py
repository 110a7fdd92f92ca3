"""``python -m services.gateway serve|migrate``; ``serve --workers N`` forks N processes sharing the port.

Workers use SO_REUSEPORT: the kernel spreads connections over them. Migrations run once, in the parent, before
the fork. Each worker keeps its own key cache and rate-limit buckets (see docs/gateway.md).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys

from aiohttp import web

from services.gateway.app import MIGRATIONS, create_app
from services.gateway.config import GatewaySettings
from shared.cli import install_uvloop, service_main
from shared.db import migrate
from shared.logging import configure_logging, get_logger


def serve_workers(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m services.gateway serve")
    parser.add_argument("--port", type=int)
    parser.add_argument("--workers", type=int)
    parser.add_argument("--no-consumers", action="store_true")
    parser.add_argument("--no-relay", action="store_true")
    args = parser.parse_args(argv)
    settings = GatewaySettings()
    if args.port:
        settings.port = args.port
    workers = args.workers or settings.workers
    settings.consumers_enabled = not args.no_consumers
    settings.relay_enabled = not args.no_relay
    configure_logging("gateway", settings.common.log_level, settings.common.log_json)
    log = get_logger("cli")
    if workers <= 1:
        install_uvloop()
        web.run_app(create_app(settings), host=settings.common.host, port=settings.port, access_log=None,
                    print=None, shutdown_timeout=10)
        return 0
    asyncio.run(migrate(settings.database_url, MIGRATIONS))
    settings.common.run_migrations_on_start = False
    settings.resolved_admin_token()  # create the shared files once, before the workers race for them
    settings.resolved_pepper()
    children: list[int] = []
    for index in range(workers):
        pid = os.fork()
        if pid == 0:
            install_uvloop()
            log.info("gateway_worker_starting", worker=index, port=settings.port)
            web.run_app(create_app(settings), host=settings.common.host, port=settings.port, access_log=None,
                        print=None, shutdown_timeout=10, reuse_port=True)
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
