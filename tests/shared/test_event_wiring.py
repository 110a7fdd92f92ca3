"""Each service's event wiring is declared once (EVENT_HANDLERS); the deploy-side topology must agree with it."""

from __future__ import annotations

import importlib

import pytest

from shared.bus import topology, wiring
from shared.events import EVENT_MODELS

CONSUMING_SERVICES = sorted({spec.service for spec in topology.QUEUES})


@pytest.mark.parametrize("service", CONSUMING_SERVICES)
def test_the_declared_queues_are_the_services_wiring_table(service: str) -> None:
    app_module = importlib.import_module(f"services.{service}.app")
    table = app_module.EVENT_HANDLERS
    derived = {(s.name, frozenset(s.event_types)) for s in wiring.queue_specs(service, table)}
    declared = {(s.name, frozenset(s.event_types)) for s in topology.QUEUES if s.service == service}
    assert derived == declared


@pytest.mark.parametrize("service", CONSUMING_SERVICES)
def test_every_wired_handler_takes_a_registered_payload(service: str) -> None:
    table = importlib.import_module(f"services.{service}.app").EVENT_HANDLERS
    for purpose, by_model in table.items():
        for model, handlers in by_model.items():
            assert EVENT_MODELS[model.event_type] is model, (purpose, model)
            assert handlers, f"{service}.{purpose}: {model.__name__} has no handler"


def test_every_payload_model_names_its_own_event_type() -> None:
    assert all(model.event_type == event_type for event_type, model in EVENT_MODELS.items())
    assert len(EVENT_MODELS) == 27
