"""Fixtures for every test: real PostgreSQL and RabbitMQ, isolated per test."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator

import pytest

from tests.support import infra
from tests.support.env import REAPER, EventRecorder, TestEnv

# Every answer the e2e and client tests see is checked against the OpenAPI document (issue 17).
pytest_plugins = ("tests.openapi.conformance",)


@pytest.fixture(scope="session")
def postgres_url() -> str:
    try:
        return infra.postgres_url()
    except RuntimeError as exc:
        pytest.fail(str(exc), pytrace=False)


@pytest.fixture(scope="session")
def amqp_url() -> str:
    try:
        return infra.amqp_url()
    except RuntimeError as exc:
        pytest.fail(str(exc), pytrace=False)


@pytest.fixture
async def test_env(postgres_url: str, amqp_url: str, tmp_path) -> AsyncIterator[TestEnv]:
    env = TestEnv(postgres_url=postgres_url, amqp_url=amqp_url, data_dir=tmp_path / "data")
    env.data_dir.mkdir()
    yield env
    await env.cleanup()


@pytest.fixture
async def events(test_env: TestEnv) -> AsyncIterator[EventRecorder]:
    recorder = EventRecorder(test_env)
    await recorder.start()
    yield recorder
    await recorder.stop()


def pytest_sessionfinish(session, exitstatus):
    if REAPER.pending:
        asyncio.run(REAPER.drop_all())
    infra.stop_containers()


def pytest_configure(config):
    os.environ.setdefault("LEARN_LOG_LEVEL", "warning")
    from shared.logging import configure_logging

    configure_logging("tests", os.environ["LEARN_LOG_LEVEL"], json=False)
