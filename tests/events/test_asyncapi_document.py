"""The AsyncAPI document and the event catalog are generated from shared/events and kept current."""

from __future__ import annotations

import jsonschema
import yaml

from services.wiring import main, wired_queues
from shared.bus.envelope import new_event
from shared.events import EVENT_MODELS, PUBLISHERS
from shared.events.asyncapi import DOCS, build_document
from shared.events.directory import UserUpserted


def test_committed_documents_are_current():
    assert main(["asyncapi", "--check"]) == 0, "run `python -m services.wiring asyncapi` and commit docs/"


def test_every_event_type_has_a_channel_message_operation_and_publisher():
    doc = build_document(wired_queues())
    assert doc["asyncapi"] == "3.0.0"
    for event_type in EVENT_MODELS:
        channel = doc["channels"][event_type]
        assert channel["address"] == "{tenant}." + event_type
        assert channel["bindings"]["amqp"]["exchange"]["name"] == "learn.events"
        assert event_type in PUBLISHERS
    assert len(doc["operations"]) == len(EVENT_MODELS)


def test_every_schema_is_valid_json_schema_and_refs_resolve():
    doc = yaml.safe_load((DOCS / "asyncapi.yaml").read_text())
    schemas = doc["components"]["schemas"]
    for name, schema in schemas.items():
        jsonschema.Draft202012Validator.check_schema(schema)
    for message in doc["components"]["messages"].values():
        ref = message["payload"]["$ref"].rsplit("/", 1)[1]
        assert ref in schemas


def test_a_real_event_validates_against_its_documented_schema():
    doc = build_document(wired_queues())
    event = new_event("user.upserted", UserUpserted(user_id=1, name="Zoë", email="z@example.com", revision=1,
                                                    updated_at="2026-06-02T10:00:00Z"),
                      service="gateway", tenant="acme", tenant_id=1, subject="user/1")
    registry_schema = {"$defs": doc["components"]["schemas"], **doc["components"]["schemas"]["UserUpsertedEvent"]}
    text = yaml.safe_dump(registry_schema).replace("#/components/schemas/", "#/$defs/")
    schema = yaml.safe_load(text)
    jsonschema.validate(event.model_dump(mode="json"), schema)
    bad = event.model_dump(mode="json")
    bad["data"].pop("email")
    try:
        jsonschema.validate(bad, schema)
    except jsonschema.ValidationError:
        pass
    else:
        raise AssertionError("an event without a required field must not validate")
