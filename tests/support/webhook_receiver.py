"""A local HTTPS webhook receiver for tests: a self-signed certificate for 127.0.0.2 (trusted by the webhooks
service through LEARN_WEBHOOKS_CA_FILE), every request recorded, and per-path behaviour (fail N times, be down).
"""

from __future__ import annotations

import asyncio
import json
import ssl
import subprocess
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

HOST = "127.0.0.2"  # loopback, but not 127.0.0.1: the service is allowed this one address only


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def event(self) -> dict[str, Any]:
        return dict(json.loads(self.body))

    @property
    def event_type(self) -> str:
        return str(self.event["type"]).removeprefix("io.mobieus.learn.").removesuffix(".v1")


def self_signed(directory: Path, host: str = HOST) -> tuple[Path, Path]:
    cert, key = directory / "receiver.crt", directory / "receiver.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-subj", f"/CN={host}", "-addext", f"subjectAltName=IP:{host}",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    return cert, key


@dataclass
class Receiver:
    directory: Path
    received: list[Received] = field(default_factory=list)
    #: path -> how many more requests answer 500 (per webhook-id)
    fail_first: dict[str, int] = field(default_factory=dict)
    down: bool = False
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    _failed: dict[tuple[str, str], int] = field(default_factory=lambda: defaultdict(int))
    _runner: web.AppRunner | None = None
    port: int = 0
    cert: Path | None = None

    def url(self, path: str) -> str:
        return f"https://{HOST}:{self.port}/{path.lstrip('/')}"

    def at(self, path: str) -> list[Received]:
        return [r for r in self.received if r.path == "/" + path.lstrip("/")]

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        if self.down:
            return web.Response(status=503, text="down for maintenance")
        wid = request.headers.get("webhook-id", "")
        self.received.append(Received(request.path, dict(request.headers), body))
        self.changed.set()
        allowed_failures = self.fail_first.get(request.path, 0)
        if self._failed[(request.path, wid)] < allowed_failures:
            self._failed[(request.path, wid)] += 1
            return web.Response(status=500, text="planned failure " + "x" * 2000)
        return web.Response(status=204)

    async def start(self) -> None:
        self.cert, key = self_signed(self.directory)
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.cert, key)
        app = web.Application()
        app.router.add_post("/{tail:.*}", self.handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, HOST, 0, ssl_context=context)
        await site.start()
        self.port = self._runner.addresses[0][1]

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
