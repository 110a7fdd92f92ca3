"""Issuing on ``enrollment.completed`` (real RabbitMQ and PostgreSQL): one certificate per enrollment, whatever
happens to the messages, with a PDF that shows what it certifies."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import re
import signal
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa

from services.certificates.api.common import RUNTIME_KEY
from services.certificates.store import certificates
from shared.service import DB_KEY
from tests.certificates.test_certificates_harness import (
    TENANT_NAME,
    close_app,
    ids,
    pdf_text,
    running_service,
    start_app,
)
from tests.certificates.test_render_pool import busy_worker, freeze_on_send, until
from tests.support.infra import wait_until


async def _settle(seconds: float = 1.0) -> None:
    """Give duplicates time to be (not) processed before counting effects."""
    await asyncio.sleep(seconds)


async def test_a_completed_enrollment_gets_a_certificate_with_a_40_character_verification_id(test_env, events):
    async with running_service(test_env) as service:
        enrollment = next(ids)
        await service.publish(service.completion(enrollment, months=24))
        cert = await service.issued(enrollment)

        assert re.fullmatch(r"[A-Za-z0-9_-]{40}", cert["verification_id"])
        assert cert["verification_url"] == f"http://localhost:8080/verify/{cert['verification_id']}"
        assert cert["enrollment_id"] == enrollment and cert["user_id"] == enrollment + 1 and cert["course_id"] == 42
        assert cert["recipient_name"] == "Zoë Łukasiewicz-Ångström" and cert["course_title"] == "Intro to Mobieus"
        assert cert["credit"] == {"hours": 2.5, "kind": "CEU"}
        assert cert["issued_at"] == "2026-06-02T10:00:00Z" and cert["expires_at"] == "2028-06-02T10:00:00Z"
        assert cert["is_revoked"] is False and cert["revoked_at"] is None and cert["template_id"] is None
        pdf = cert["pdf"]
        assert pdf["url"] == f"http://localhost:8080/api/v1/learn/certificates/{cert['id']}/pdf"
        assert pdf["version"] == 1 and pdf["bytes"] > 1000 and len(pdf["sha256"]) == 64

        issued = (await events.wait_for("certificate.issued"))[0]
        assert issued.routing_key == "acme.certificate.issued"
        assert issued.data["certificate_id"] == cert["id"]
        assert issued.data["verification_id"] == cert["verification_id"]
        assert issued.requestid == "req_" + "0" * 24


async def test_a_course_without_expiry_gives_a_certificate_that_never_expires(test_env):
    async with running_service(test_env) as service:
        enrollment = next(ids)
        await service.publish(service.completion(enrollment, months=None, hours=None, kind=None))
        cert = await service.issued(enrollment)
        assert cert["expires_at"] is None and cert["credit"] == {"hours": None, "kind": None}


async def test_the_pdf_shows_the_name_the_course_the_verification_id_and_url(test_env):
    async with running_service(test_env) as service:
        enrollment = next(ids)
        await service.publish(service.completion(enrollment, name="Nguyễn Thị Minh Khai"))
        cert = await service.issued(enrollment)
        pdf = await service.pdf(cert["id"])
        assert hashlib.sha256(pdf).hexdigest() == cert["pdf"]["sha256"] and len(pdf) == cert["pdf"]["bytes"]
        text = pdf_text(pdf)
        for expected in ("Nguyễn Thị Minh Khai", "Intro to Mobieus", cert["verification_id"],
                         cert["verification_url"]):
            assert expected in text, expected
        assert TENANT_NAME.upper() in text  # the issuer, set in capitals


async def test_a_stored_pdf_is_kept_uncompressed_by_postgresql_and_reads_back_whole(test_env):
    """A PDF is deflated already: its chunks are stored EXTERNAL (migration 0004), so PostgreSQL does not spend CPU
    on a pglz pass whose result it would throw away, and the bytes read back are the bytes rendered."""
    async with running_service(test_env) as service:
        enrollment = next(ids)
        await service.publish(service.completion(enrollment))
        cert = await service.issued(enrollment)
        storage = await service.scalar(sa.text(
            "SELECT attstorage::text FROM pg_attribute WHERE attrelid = 'blob_chunks'::regclass AND attname = 'data'"))
        assert storage == "e"
        stored = await service.scalar(sa.text("SELECT sum(pg_column_size(data)) FROM blob_chunks"))
        assert stored >= cert["pdf"]["bytes"]  # as many bytes as the PDF: not compressed
        pdf = await service.pdf(cert["id"])
        assert hashlib.sha256(pdf).hexdigest() == cert["pdf"]["sha256"] and len(pdf) == cert["pdf"]["bytes"]


async def test_the_pdf_download_names_the_file(test_env):
    async with running_service(test_env) as service:
        enrollment = next(ids)
        await service.publish(service.completion(enrollment))
        cert = await service.issued(enrollment)
        async with service.client.get(f"/api/v1/learn/certificates/{cert['id']}/pdf",
                                      headers=service.headers()) as resp:
            assert resp.status == 200 and resp.content_type == "application/pdf"
            disposition = resp.headers["Content-Disposition"]
            assert disposition.startswith(f'attachment; filename="certificate-{cert["id"]}.pdf"')
            assert "filename*=UTF-8''Intro%20to%20Mobieus" in disposition
            assert resp.headers["ETag"] == f'"{cert["pdf"]["sha256"]}"'


async def test_the_same_event_delivered_twice_issues_one_certificate(test_env, events):
    async with running_service(test_env) as service:
        enrollment = next(ids)
        event = service.completion(enrollment)
        await service.publish(event)
        await service.issued(enrollment)
        await service.publish(event)
        await _settle()
        assert await service.scalar(sa.select(sa.func.count()).select_from(certificates).where(
            certificates.c.enrollment_id == enrollment)) == 1
        assert len(events.of_type("certificate.issued")) == 1


async def test_twenty_concurrent_copies_to_two_replicas_issue_one_certificate(test_env, events):
    async with running_service(test_env) as service:
        second = await start_app(test_env)
        try:
            enrollment, other = next(ids), next(ids)
            same = service.completion(enrollment)
            # The same event twenty times, plus the same fact under new event ids (a republishing producer).
            copies = [same] * 20 + [service.completion(other) for _ in range(20)]
            await service.publish(*copies)
            await service.issued(enrollment)
            await service.issued(other)
            await _settle(2.0)
            counts = await service.rows(sa.select(certificates.c.enrollment_id, sa.func.count())
                                        .where(certificates.c.enrollment_id.in_([enrollment, other]))
                                        .group_by(certificates.c.enrollment_id))
            assert sorted(counts) == sorted([(enrollment, 1), (other, 1)])
            await wait_until(lambda: len(events.of_type("certificate.issued")) >= 2, message="two issued events")
            await _settle(0.5)
            assert sorted(e.data["enrollment_id"] for e in events.of_type("certificate.issued")) == sorted(
                [enrollment, other])
        finally:
            await close_app(second)


async def test_the_issue_date_is_when_the_course_was_completed_even_if_the_message_is_late(test_env):
    async with running_service(test_env) as service:
        enrollment = next(ids)
        earned = datetime(2025, 1, 31, 23, 30, tzinfo=UTC)
        await service.publish(service.completion(enrollment, completed_at=earned, months=1))
        cert = await service.issued(enrollment)
        assert cert["issued_at"] == "2025-01-31T23:30:00Z"
        assert cert["expires_at"] == "2025-02-28T23:30:00Z"  # a month later, clamped to February's last day


async def test_a_renamed_user_keeps_the_issued_pdf_and_gets_the_new_name_on_the_next_render(test_env, events):
    async with running_service(test_env) as service:
        enrollment = next(ids)
        await service.publish(service.completion(enrollment, user_id=enrollment, name="Ada Byron"))
        cert = await service.issued(enrollment)
        await service.publish(service.user_upserted(enrollment, "Ada Lovelace", revision=5))
        await service.publish(service.user_upserted(enrollment, "Ada Stale", revision=4))  # late: ignored
        await _settle(1.0)
        assert (await service.certificate(cert["id"]))["pdf"]["version"] == 1
        assert "Ada Byron" in pdf_text(await service.pdf(cert["id"]))

        _, body = await service.call("POST", f"/api/v1/learn/certificates/{cert['id']}/regenerate-pdf", expect=200)
        assert body["data"]["recipient_name"] == "Ada Lovelace"
        assert "Ada Lovelace" in pdf_text(await service.pdf(cert["id"]))


async def _dead_lettered(service, count: int) -> list[dict]:
    return await wait_until(lambda: _at_least(service, count), timeout=20, message=f"{count} dead letters")


async def _at_least(service, count: int) -> list[dict] | None:
    letters = await service.dead_letters("issue")
    return letters if len(letters) >= count else None


async def test_completions_for_unknown_tenants_go_to_the_dead_letter_queue_with_a_reason(test_env, capfd):
    async with running_service(test_env) as service:
        never_seen = service.completion(next(ids), tenant_id=77, tenant="stranger", tenant_name="")
        bad_slug = service.completion(next(ids), tenant_id=78, tenant="Not_A_Slug")
        no_tenant_id = service.completion(next(ids), tenant_id=0, tenant="acme")
        await service.publish(never_seen, bad_slug, no_tenant_id)
        letters = await _dead_lettered(service, 3)
        assert sorted(letter["id"] for letter in letters) == sorted(e.id for e in (never_seen, bad_slug, no_tenant_id))
        assert await service.scalar(sa.select(sa.func.count()).select_from(certificates)) == 0
        logged = capfd.readouterr().err
        assert "message_dead_lettered" in logged and "unknown tenant" in logged
        assert "was never seen and the event carries no tenant_name" in logged and "malformed tenant slug" in logged


async def test_a_tenant_seen_before_may_leave_its_name_out(test_env):
    async with running_service(test_env) as service:
        first = next(ids)
        await service.publish(service.completion(first))
        await service.issued(first)
        enrollment = next(ids)
        await service.publish(service.completion(enrollment, tenant_name=""))
        assert (await service.issued(enrollment))["recipient_name"]


@pytest.mark.parametrize("broken", [
    lambda data: data.pop("user"),
    lambda data: data["course"].pop("title"),
    lambda data: data.update(enrollment_id=None),
    lambda data: data["user"].update(name="  "),
    lambda data: data.update(status="active"),
])
async def test_completions_with_missing_fields_go_to_the_dead_letter_queue_and_the_consumer_goes_on(
        test_env, broken, capfd):
    async with running_service(test_env) as service:
        event = service.completion(next(ids))
        data = json.loads(event.to_bytes())
        broken(data["data"])
        await service.publish(json.dumps(data).encode(), routing_key=event.routing_key)
        letters = await _dead_lettered(service, 1)
        assert [letter["id"] for letter in letters] == [event.id]
        assert "message_dead_lettered" in capfd.readouterr().err

        good = next(ids)
        await service.publish(service.completion(good))
        assert (await service.issued(good))["enrollment_id"] == good


async def test_no_transaction_is_open_while_an_issue_waits_for_its_render(test_env):
    """ADR 0024: the render happens before the consumer's transaction. With the only worker stopped holding the
    batch, the service has no transaction open (and no templates lock held), so a slow or saturated pool never
    ties up database connections; once the worker goes on, the certificate is issued."""
    async with running_service(test_env, render_workers=1) as service:
        pool = service.app[RUNTIME_KEY].documents.pool
        thaw = freeze_on_send(pool, 1)
        enrollment = next(ids)
        await service.publish(service.completion(enrollment))
        worker = await until(lambda: busy_worker(pool))
        thaw()
        database = service.app[DB_KEY].engine.url.database
        try:
            open_since_send = await service.rows(sa.text(
                "SELECT state, query FROM pg_stat_activity WHERE datname = :db AND pid <> pg_backend_pid() "
                "AND xact_start IS NOT NULL AND xact_start < clock_timestamp() - interval '50 milliseconds' "
                "AND state LIKE 'idle in transaction%'").bindparams(db=database))
            advisory = await service.scalar(sa.text(
                "SELECT count(*) FROM pg_locks JOIN pg_database d ON d.oid = pg_locks.database "
                "WHERE locktype = 'advisory' AND d.datname = :db").bindparams(db=database))
        finally:
            os.kill(worker.process.pid, signal.SIGCONT)
        assert open_since_send == [] and advisory == 0, (open_since_send, advisory)
        cert = await service.issued(enrollment)
        assert cert["enrollment_id"] == enrollment
