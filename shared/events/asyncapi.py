"""Generates the AsyncAPI 3.0 document of the event catalog from the payload models in ``shared.events`` and the
queues the services' wiring tables declare (``EVENT_HANDLERS``, shared/bus/wiring.py).

``python -m services.wiring asyncapi`` rewrites ``docs/asyncapi.yaml`` and ``docs/events.md``; with ``--check`` it
fails when either is stale (a test runs it). The entry point lives in the ``services`` package because shared/
may not import a service; every function here takes the wired queues as an argument.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel

from shared.bus.envelope import TYPE_PREFIX, TYPE_SUFFIX
from shared.bus.topology import DEAD_LETTER_EXCHANGE, EVENTS_EXCHANGE, QueueSpec
from shared.events import EVENT_MODELS, PUBLISHERS

DOCS = Path(__file__).resolve().parents[2] / "docs"
API_VERSION = "1.3.0"


def _pascal(event_type: str) -> str:
    return "".join(part.capitalize() for part in event_type.replace("_", ".").split("."))


def _consumers(event_type: str, queues: Sequence[QueueSpec]) -> list[str]:
    return sorted({q.name for q in queues if event_type in q.event_types})


def _envelope_schema(event_type: str, payload_ref: str) -> dict[str, Any]:
    return {
        "type": "object",
        "description": "CloudEvents 1.0, structured JSON mode.",
        "required": ["specversion", "id", "source", "type", "time", "datacontenttype", "data", "tenant",
                     "tenantid"],
        "properties": {
            "specversion": {"const": "1.0"},
            "id": {"type": "string", "description": "unique per event; reused when the event is redelivered"},
            "source": {"type": "string", "const": f"/learn/{PUBLISHERS[event_type]}"},
            "type": {"const": f"{TYPE_PREFIX}{event_type}{TYPE_SUFFIX}"},
            "time": {"type": "string", "format": "date-time"},
            "subject": {"type": ["string", "null"], "description": "the aggregate, e.g. course/42"},
            "datacontenttype": {"const": "application/json"},
            "tenant": {"type": "string", "pattern": "^[a-z0-9][a-z0-9-]{1,62}$", "description": "tenant slug"},
            "tenantid": {"type": "integer"},
            "requestid": {"type": ["string", "null"], "description": "the API request that caused the event"},
            "data": {"$ref": payload_ref},
        },
    }


def build_document(queues: Sequence[QueueSpec]) -> dict[str, Any]:
    schemas: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    for event_type, model in sorted(EVENT_MODELS.items()):
        name = _pascal(event_type)
        schema = model.model_json_schema(ref_template="#/components/schemas/{model}", mode="serialization")
        for def_name, definition in schema.pop("$defs", {}).items():
            schemas.setdefault(def_name, definition)
        schemas[model.__name__] = schema
        schemas[f"{name}Event"] = _envelope_schema(event_type, f"#/components/schemas/{model.__name__}")
        doc = (model.__doc__ or "").strip() or (type(model).__doc__ or "")
        messages[name] = {
            "name": name,
            "title": event_type,
            "summary": doc.splitlines()[0] if doc else event_type,
            "contentType": "application/cloudevents+json",
            "payload": {"$ref": f"#/components/schemas/{name}Event"},
            "bindings": {"amqp": {"deliveryMode": 2, "bindingVersion": "0.3.0"}},
        }
        channels[event_type] = {
            "address": "{tenant}." + event_type,
            "title": event_type,
            "description": (
                f"Published by `{PUBLISHERS[event_type]}`. Consumed inside mobieusLearn by: "
                + (", ".join(f"`{c}`" for c in _consumers(event_type, queues)) or "nobody (for external subscribers)")
                + ". Subscribe to a whole tenant with the binding key `<tenant>.#`."
            ),
            "parameters": {"tenant": {"description": "the tenant slug, e.g. `acme`"}},
            "messages": {name: {"$ref": f"#/components/messages/{name}"}},
            "bindings": {
                "amqp": {
                    "is": "routingKey",
                    "exchange": {"name": EVENTS_EXCHANGE, "type": "topic", "durable": True, "autoDelete": False,
                                 "vhost": "/"},
                    "bindingVersion": "0.3.0",
                }
            },
        }
        operations[f"publish{name}"] = {
            "action": "send",
            "title": f"{PUBLISHERS[event_type]} publishes {event_type}",
            "channel": {"$ref": f"#/channels/{event_type}"},
            "messages": [{"$ref": f"#/channels/{event_type}/messages/{name}"}],
        }
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "mobieusLearn events",
            "version": API_VERSION,
            "description": (
                "Learning events of mobieusLearn on RabbitMQ. Every message is a CloudEvents 1.0 JSON document "
                f"published persistently to the topic exchange `{EVENTS_EXCHANGE}` with routing key "
                "`<tenant_slug>.<event_type>`, from a transactional outbox (at-least-once: deduplicate on `id`). "
                f"Failed deliveries of internal queues are dead-lettered through `{DEAD_LETTER_EXCHANGE}`. "
                "The same CloudEvents reach HTTPS endpoints as signed webhooks (Standard Webhooks; docs/webhooks.md). "
                "Generated from shared/events; do not edit by hand."
            ),
        },
        "defaultContentType": "application/cloudevents+json",
        "servers": {
            "rabbitmq": {
                "host": "rabbitmq:5672",
                "protocol": "amqp",
                "protocolVersion": "0.9.1",
                "description": "RabbitMQ; external subscribers get a tenant-scoped user from the admin API "
                               "(event-subscribers, learnctl subscribers; docs/events.md).",
            }
        },
        "channels": channels,
        "operations": operations,
        "components": {"schemas": dict(sorted(schemas.items())), "messages": messages},
    }


def render_yaml(queues: Sequence[QueueSpec]) -> str:
    header = "# Generated by `python -m services.wiring asyncapi` from shared/events + EVENT_HANDLERS. Do not edit.\n"
    return header + yaml.safe_dump(build_document(queues), sort_keys=False, allow_unicode=True, width=120)


def _field_rows(model: type[BaseModel]) -> list[str]:
    rows = []
    for name, field in model.model_fields.items():
        annotation = getattr(field.annotation, "__name__", None) or str(field.annotation)
        annotation = annotation.replace("typing.", "").replace("shared.events.", "")
        rows.append(f"| `{name}` | `{annotation}` | {field.description or ''} |")
    return rows


def render_markdown(queues: Sequence[QueueSpec]) -> str:
    lines = [
        "<!-- Generated by `python -m services.wiring asyncapi` from shared/events + EVENT_HANDLERS. Do not edit. -->",
        "# Event catalog",
        "",
        f"All events go to the RabbitMQ topic exchange `{EVENTS_EXCHANGE}` with routing key "
        "`<tenant_slug>.<event_type>` (for example `acme.enrollment.completed`). Bodies are CloudEvents 1.0 "
        f"JSON (structured mode): `specversion`, `id`, `source` (`/learn/<service>`), `type` "
        f"(`{TYPE_PREFIX}<event_type>{TYPE_SUFFIX}`), `time`, `subject`, `datacontenttype`, `data`, and the "
        "extensions `tenant` (slug), `tenantid` and `requestid`. The machine-readable description is "
        "[asyncapi.yaml](asyncapi.yaml) (AsyncAPI 3.0).",
        "",
        "Delivery is at least once: events leave through a transactional outbox, so an event is published only "
        "if the change that caused it committed, and may be published more than once after a crash. "
        "Deduplicate on `id`. Order is not guaranteed across events; snapshots carry a `revision` so that you "
        "can apply them by version and never go backwards.",
        "",
        "## Subscribing from outside",
        "",
        "Over HTTPS: register a webhook endpoint (`POST /admin/api/v1/tenants/<slug>/webhook-endpoints`, or "
        "`learnctl webhooks create`); every event of the tenant that matches its filter is POSTed to it as this "
        "same CloudEvent JSON, signed per Standard Webhooks, with retries for about 3 days, a delivery log and "
        "replay. See [webhooks.md](webhooks.md).",
        "",
        "Over AMQP: ask the admin API for credentials limited to the tenant (it needs RabbitMQ and its management "
        "API, `LEARN_RABBITMQ_MANAGEMENT_URL`; the embedded mode has no broker and answers "
        "`409 amqp_subscribers_unavailable`):",
        "",
        "```sh",
        "learnctl subscribers create acme hr-system   # or POST /admin/api/v1/tenants/acme/event-subscribers "
        "{\"name\": \"hr-system\"}",
        "# -> amqp://learn-sub.acme.hr-system:<password>@broker:5672/%2F  (the password is shown once)",
        "learnctl subscribers list acme",
        "learnctl subscribers rotate acme hr-system   # a new password; open connections are closed",
        "learnctl subscribers delete acme hr-system   # the user is deleted and its connections closed",
        "```",
        "",
        "The user may declare, consume and delete queues named `acme.…` only, read `learn.events` to bind them, "
        "and bind with its tenant's routing keys only (topic permissions `^acme\\.` on `learn.events`). Bind a "
        "queue of its own to `acme.#` (see `examples/subscriber.py`); binding `#` or `globex.#` is refused with "
        "`ACCESS_REFUSED`. A test proves both on the real broker (`tests/gateway/test_gateway_subscribers.py`). "
        "How the users are named and listed: [operations.md](operations.md#amqp-subscribers).",
        "",
        "## Events",
        "",
        "| event type | publisher | consumed internally by | payload |",
        "|---|---|---|---|",
    ]
    for event_type, model in sorted(EVENT_MODELS.items()):
        consumers = ", ".join(f"`{c}`" for c in _consumers(event_type, queues)) or "–"
        lines.append(f"| `{event_type}` | {PUBLISHERS[event_type]} | {consumers} | [{model.__name__}]"
                     f"(#{model.__name__.lower()}) |")
    for event_type, model in sorted(EVENT_MODELS.items()):
        doc = (model.__doc__ or "").strip()
        lines += ["", f"### {model.__name__}", "", f"`{event_type}` — {doc}" if doc else f"`{event_type}`", "",
                  "| field | type | description |", "|---|---|---|", *_field_rows(model)]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None, queues: Sequence[QueueSpec]) -> int:
    parser = argparse.ArgumentParser(prog="python -m services.wiring asyncapi")
    parser.add_argument("--check", action="store_true", help="fail if docs/asyncapi.yaml or docs/events.md is stale")
    args = parser.parse_args(argv)
    outputs = {DOCS / "asyncapi.yaml": render_yaml(queues), DOCS / "events.md": render_markdown(queues)}
    stale = [p for p, text in outputs.items() if not p.exists() or p.read_text() != text]
    if args.check:
        for path in stale:
            sys.stderr.write(f"{path} is stale: run `python -m services.wiring asyncapi`\n")
        return 1 if stale else 0
    for path, text in outputs.items():
        path.write_text(text)
    return 0

