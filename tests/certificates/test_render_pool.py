"""The PDF render pool (services/certificates/pdf/pool.py), with real worker processes on the event loop the
services run on (uvloop): large messages never pass for a dead worker, a worker killed mid-render costs its
batch one retry on another worker, and only a second death fails a certificate."""

from __future__ import annotations

import asyncio
import io
import os
import signal
from collections.abc import Callable, Coroutine
from dataclasses import replace
from typing import Any

import pytest
import uvloop
from PIL import Image

from services.certificates.api.common import RUNTIME_KEY
from services.certificates.pdf.pool import RenderFailed, RenderPool
from tests.certificates.test_certificates_harness import ids, running_service
from tests.certificates.test_pdf_render import certificate, template


def run(main: Callable[[], Coroutine[Any, Any, Any]]) -> Any:
    """On uvloop, as ``python -m services.certificates serve`` runs (its poller makes pipes non-blocking)."""
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(main())


def noisy_logo() -> bytes:
    """~0.9 MB of incompressible PNG: the template and every PDF carrying it are larger than a socket buffer."""
    image = Image.frombytes("RGB", (1000, 300), os.urandom(1000 * 300 * 3))
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


async def until(condition: Callable[[], Any], timeout: float = 20) -> Any:
    """Wait for an internal state of the pool (a worker holding a batch, a replacement started)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not (found := condition()):
        assert asyncio.get_running_loop().time() < deadline, "pool state not reached"
        await asyncio.sleep(0.005)
    return found


def busy_worker(pool: RenderPool) -> Any:
    return next((w for w in pool._pool if w.batch), None)


def freeze_on_send(pool: RenderPool, times: int) -> Callable[[], None]:
    """Stop (SIGSTOP) a worker just before each of the next ``times`` batches is sent to it, so it holds the
    batch until the test kills it: a render faster than the polling (a loaded CI machine) cannot slip through
    unseen. Returns the undo."""
    send = pool._send
    left = [times]

    def frozen(worker: Any, batch: Any) -> None:
        if left[0] > 0:
            left[0] -= 1
            os.kill(worker.process.pid, signal.SIGSTOP)
        send(worker, batch)

    pool._send = frozen  # type: ignore[method-assign]
    return lambda: setattr(pool, "_send", send)


def test_large_templates_and_replies_never_pass_for_a_dead_worker():
    logo = noisy_logo()

    async def main() -> None:
        pool = RenderPool(2)
        await pool.start()
        try:
            pids = set(pool.pids)
            for version in range(1, 4):  # a template update: a new version, sent to the workers again
                spec = template(id=42, version=version, logo_png=logo)
                certs = [certificate(recipient_name=f"Learner {n}") for n in range(12)]
                pdfs = await asyncio.gather(*(pool.render(spec, cert) for cert in certs))
                assert all(p.startswith(b"%PDF-") and len(p) > 500_000 for p in pdfs)
            assert set(pool.pids) == pids, "a live worker was taken for dead and replaced"
        finally:
            await pool.close()

    run(main)


def test_a_worker_killed_mid_render_costs_its_batch_one_retry_on_another_worker():
    async def main() -> None:
        pool = RenderPool(2)
        await pool.start()
        try:
            before = set(pool.pids)
            spec = template(id=5, version=1)
            freeze_on_send(pool, 1)
            job = asyncio.ensure_future(pool.render_many(spec, [certificate(recipient_name=f"N{n}")
                                                                for n in range(6)]))
            victim = await until(lambda: busy_worker(pool))
            os.kill(victim.process.pid, signal.SIGKILL)
            pdfs = await job
            assert len(pdfs) == 6 and all(p.startswith(b"%PDF-") for p in pdfs)
            await until(lambda: len(pool.pids) == 2)
            assert victim.process.pid not in pool.pids and len(set(pool.pids) - before) == 1
            # The pool is whole again: the replacement renders too.
            assert (await pool.render(spec, certificate())).startswith(b"%PDF-")
        finally:
            await pool.close()

    run(main)


def test_a_certificate_whose_worker_dies_twice_fails_with_render_failed():
    async def main() -> None:
        pool = RenderPool(1)
        await pool.start()
        try:
            thaw = freeze_on_send(pool, 2)
            job = asyncio.ensure_future(pool.render(template(id=6, version=1), certificate()))
            first = await until(lambda: busy_worker(pool))
            os.kill(first.process.pid, signal.SIGKILL)
            second = await until(lambda: (w := busy_worker(pool)) is not None and w is not first and w)
            os.kill(second.process.pid, signal.SIGKILL)
            with pytest.raises(RenderFailed, match="died twice"):
                await job
            thaw()
            await until(lambda: len(pool.pids) == 1)
            assert (await pool.render(template(), certificate())).startswith(b"%PDF-")
        finally:
            await pool.close()

    run(main)


def test_a_worker_that_forgot_a_template_is_sent_it_again():
    async def main() -> None:
        pool = RenderPool(1)
        await pool.start()
        try:
            first = template(id=8, version=1)
            assert (await pool.render(first, certificate())).startswith(b"%PDF-")
            # More templates than a worker keeps, then the first again, then one the pool wrongly believes
            # the worker holds: every render succeeds, the worker is never replaced.
            pid = pool.pids
            for n in range(40):
                await pool.render(replace(first, id=100 + n), certificate())
            assert (await pool.render(first, certificate())).startswith(b"%PDF-")
            stranger = template(id=9, version=3)
            pool._pool[0].known[(stranger.id, stranger.version, stranger.issuer_name)] = None
            assert (await pool.render(stranger, certificate())).startswith(b"%PDF-")
            assert pool.pids == pid
        finally:
            await pool.close()

    run(main)


@pytest.mark.parametrize("action", ["revoke", "regenerate-pdf"])
async def test_a_revoke_or_regeneration_whose_render_fails_answers_503_and_changes_nothing(test_env, action):
    async with running_service(test_env, render_workers=1) as service:
        enrollment = next(ids)
        await service.publish(service.completion(enrollment))
        cert = await service.issued(enrollment)
        pool = service.app[RUNTIME_KEY].documents.pool
        path = f"/api/v1/learn/certificates/{cert['id']}/{action}"

        async def post() -> tuple[int, dict[str, Any], Any]:
            async with service.client.post(path, json={"reason": "fraud"}, headers=service.headers()) as resp:
                return resp.status, await resp.json(), resp.headers

        thaw = freeze_on_send(pool, 2)
        call = asyncio.ensure_future(post())
        first = await until(lambda: busy_worker(pool))
        os.kill(first.process.pid, signal.SIGKILL)
        second = await until(lambda: (w := busy_worker(pool)) is not None and w is not first and w)
        os.kill(second.process.pid, signal.SIGKILL)
        status, body, headers = await call
        thaw()
        assert status == 503 and body["error"]["code"] == "service_unavailable", body
        assert headers["Retry-After"] == "1" and "nothing was changed" in body["error"]["message"]
        unchanged = await service.certificate(cert["id"])
        assert unchanged["is_revoked"] is False and unchanged["pdf"] == cert["pdf"]
        # The client retries as told, and it works once a worker is back.
        await until(lambda: len(pool.pids) == 1)
        status, body, _ = await post()
        assert status == 200, body
        assert body["data"]["pdf"]["version"] == 2 and body["data"]["is_revoked"] is (action == "revoke")
