"""LEARN_AMQP_RECONNECT_INTERVAL: seconds between reconnect attempts after the broker dropped a connection."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from shared.config import CommonSettings
from shared.service import own_amqp_bus


def test_the_setting_reaches_the_bus_and_defaults_to_one_second(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LEARN_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
    monkeypatch.delenv("LEARN_AMQP_RECONNECT_INTERVAL", raising=False)
    assert CommonSettings().amqp_reconnect_interval == 1.0
    monkeypatch.setenv("LEARN_AMQP_RECONNECT_INTERVAL", "2.5")
    bus = own_amqp_bus(CommonSettings(), "enrollment", concurrency=2, batch_size=8)
    assert bus is not None and bus.reconnect_interval == 2.5


@pytest.mark.parametrize("value", ["0", "-1", "61", "soon"])
def test_an_interval_out_of_range_is_refused_with_its_name(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("LEARN_AMQP_RECONNECT_INTERVAL", value)
    with pytest.raises(ValidationError, match="amqp_reconnect_interval"):
        CommonSettings()


async def test_the_broker_connection_retries_at_that_interval(test_env, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LEARN_AMQP_RECONNECT_INTERVAL", "2.5")
    common = CommonSettings(amqp_url=test_env.amqp_url, amqp_namespace=test_env.namespace)
    bus = own_amqp_bus(common, "enrollment", concurrency=2, batch_size=8)
    assert bus is not None
    await bus.connect(retry_forever=False)
    try:
        assert bus._connection is not None
        assert bus._connection.reconnect_interval == 2.5  # what aio-pika sleeps between attempts
    finally:
        await bus.close()
