"""``python -m services run``: the whole system in one process (what ``make run`` starts).

With neither LEARN_POSTGRES_URL nor LEARN_AMQP_URL set this is the embedded default: one SQLite file per service
under LEARN_DATA_DIR and one in-process bus shared by the services. The gateway still reaches the services over
loopback HTTP, exactly as in the real topology.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
from typing import Any

from aiohttp import web

from shared.cli import run_until_signal
from shared.config import CommonSettings
from shared.logging import configure_logging, get_logger


def _factories() -> list[tuple[str, Any, Any]]:
    from services.catalog.app import create_app as catalog_app
    from services.catalog.config import CatalogSettings
    from services.certificates.app import create_app as certificates_app
    from services.certificates.config import CertificatesSettings
    from services.enrollment.app import create_app as enrollment_app
    from services.enrollment.config import EnrollmentSettings
    from services.gateway.app import create_app as gateway_app
    from services.gateway.config import GatewaySettings
    from services.scorm.app import create_app as scorm_app
    from services.scorm.config import ScormSettings
    from services.webhooks.app import create_app as webhooks_app
    from services.webhooks.config import WebhooksSettings

    return [
        ("catalog", CatalogSettings, catalog_app),
        ("enrollment", EnrollmentSettings, enrollment_app),
        ("certificates", CertificatesSettings, certificates_app),
        ("scorm", ScormSettings, scorm_app),
        ("webhooks", WebhooksSettings, webhooks_app),
        ("gateway", GatewaySettings, gateway_app),
    ]


def _point_at(settings: Any, ports: dict[str, int], host: str) -> None:
    """The gateway forwards to the services this process started, on the ports they were given
    (``LEARN_<SERVICE>_PORT``), unless ``LEARN_GATEWAY_<SERVICE>_URL`` says otherwise."""
    address = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host  # noqa: S104 - a listening address
    if ":" in address:
        address = f"[{address}]"
    for name, port in ports.items():
        field = f"{name}_url"
        if field in type(settings).model_fields and field not in settings.model_fields_set:
            setattr(settings, field, f"http://{address}:{port}")


def _bound_port(runner: web.AppRunner, configured: int) -> int:
    """The port a service listens on (port 0 asks the system for a free one)."""
    for address in runner.addresses:
        if isinstance(address, tuple) and len(address) >= 2:
            return int(address[1])
    return configured


async def run_all(stop: asyncio.Event) -> None:
    common = CommonSettings()
    configure_logging("launcher", common.log_level, common.log_json)
    log = get_logger("launcher")
    bus = None
    if common.embedded:
        from shared.bus.inprocess import InProcessBus

        bus = InProcessBus(delivery_limit=common.amqp_delivery_limit)
    runners: list[web.AppRunner] = []
    ports: dict[str, int] = {}
    gateway_port = content_port = 0
    try:
        for name, settings_cls, factory in _factories():
            settings = settings_cls(common=common)
            if name == "gateway":
                _point_at(settings, ports, common.host)
            app = factory(settings, bus=bus)
            if name == "gateway":
                from services.gateway.__main__ import start_gateway

                # Two listeners: the API/admin origin and the content origin (SCORM packages' JavaScript).
                started = await start_gateway(settings, app)
                runners.extend(started)
                gateway_port = _bound_port(started[0], settings.port)
                content_port = _bound_port(started[1], settings.content_port) if len(started) > 1 else 0
                log.info("service_started", name=name, port=gateway_port, content_port=content_port)
                continue
            runner = web.AppRunner(app, access_log=None)
            await runner.setup()
            await web.TCPSite(runner, common.host, settings.port).start()
            runners.append(runner)
            ports[name] = _bound_port(runner, settings.port)
            log.info("service_started", name=name, port=ports[name])
        mode = "embedded (SQLite + in-process bus)" if common.embedded else "PostgreSQL + RabbitMQ"
        host = "localhost" if common.host in ("127.0.0.1", "0.0.0.0") else common.host  # noqa: S104
        sys.stderr.write(
            f"\nmobieusLearn is running ({mode}).\n"
            f"  Gateway:    http://{host}:{gateway_port}\n"
            f"  Content:    {common.content_url}  (SCORM player and packages; port {content_port})\n"
            f"  Readiness:  http://{host}:{gateway_port}/readyz\n"
            f"  Data dir:   {common.data_dir.resolve()}\n"
            "Press Ctrl-C to stop.\n\n"
        )
        sys.stderr.flush()
        await stop.wait()
    finally:
        for runner in reversed(runners):
            with contextlib.suppress(Exception):
                await runner.cleanup()
        if bus is not None:
            await bus.close()
        log.info("stopped")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m services")
    parser.add_argument("command", choices=["run"], help="run every service in this process")
    parser.parse_args(argv)
    run_until_signal(run_all)
    return 0


if __name__ == "__main__":
    sys.exit(main())
