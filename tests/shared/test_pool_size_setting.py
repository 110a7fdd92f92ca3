"""A database pool size per service (issue 21): LEARN_<SERVICE>_DB_POOL_SIZE overrides LEARN_DB_POOL_SIZE."""

from __future__ import annotations

import pytest
from pydantic import ValidationError
from sqlalchemy.pool import QueuePool

from services.certificates.config import CertificatesSettings
from services.enrollment.config import EnrollmentSettings
from shared.db import Database


def test_a_service_takes_its_own_pool_size_and_the_others_keep_the_common_one(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LEARN_DB_POOL_SIZE", "7")
    monkeypatch.setenv("LEARN_CERTIFICATES_DB_POOL_SIZE", "12")
    assert CertificatesSettings().pool_size == 12
    assert EnrollmentSettings().pool_size == 7


def test_without_either_setting_the_pool_is_five(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LEARN_DB_POOL_SIZE", raising=False)
    monkeypatch.delenv("LEARN_ENROLLMENT_DB_POOL_SIZE", raising=False)
    assert EnrollmentSettings().pool_size == 5


def test_a_pool_size_out_of_range_is_refused_with_its_variable_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LEARN_CERTIFICATES_DB_POOL_SIZE", "0")
    with pytest.raises(ValidationError, match="db_pool_size"):
        CertificatesSettings()


async def test_the_engine_is_built_with_that_many_connections() -> None:
    db = Database("postgresql+asyncpg://postgres@127.0.0.1:5432/x", pool_size=12)
    try:
        pool = db.engine.pool
        assert isinstance(pool, QueuePool)
        assert pool.size() == 12
    finally:
        await db.dispose()
