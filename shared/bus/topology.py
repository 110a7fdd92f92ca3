"""The RabbitMQ topology every service declares on start.

This module is the single source of truth for exchange and queue names. `deploy/rabbitmq/definitions.json`
is generated from it (see `python -m shared.bus.topology definitions`), and a test checks both agree.

Naming:
- events go to the durable topic exchange ``learn.events`` with routing key ``<tenant_slug>.<event_type>``;
- each (service, purpose) owns one durable quorum queue ``<service>.<purpose>`` bound to ``*.<event_type>``;
- a message that fails ``delivery_limit`` times is dead-lettered through the direct exchange ``learn.dlx``
  (routing key = the queue name) into ``<service>.<purpose>.dlq``, another quorum queue.

A namespace prefix (``LEARN_AMQP_NAMESPACE``) is prepended to every exchange and queue name; tests use it to
isolate runs on one broker. Production leaves it empty.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass

from shared.events import ALL_MODELS

EVENTS_EXCHANGE = "learn.events"
DEAD_LETTER_EXCHANGE = "learn.dlx"
DEFAULT_DELIVERY_LIMIT = 5


@dataclass(frozen=True)
class QueueSpec:
    service: str
    purpose: str
    event_types: tuple[str, ...]

    @property
    def name(self) -> str:
        return f"{self.service}.{self.purpose}"

    @property
    def dead_letter_name(self) -> str:
        return f"{self.name}.dlq"

    @property
    def binding_keys(self) -> tuple[str, ...]:
        return tuple(f"*.{event_type}" for event_type in self.event_types)


QUEUES: tuple[QueueSpec, ...] = (
    QueueSpec("catalog", "scorm_packages", ("scorm_package.ready", "scorm_package.failed", "scorm_package.archived")),
    QueueSpec("catalog", "staff", ("staff.invited", "staff.updated")),
    QueueSpec(
        "enrollment",
        "courses",
        ("course.created", "course.updated", "course.published", "course.unpublished", "course.archived"),
    ),
    QueueSpec("enrollment", "users", ("user.upserted",)),
    QueueSpec("enrollment", "runtime", ("runtime.committed",)),
    QueueSpec("certificates", "issue", ("enrollment.completed",)),
    QueueSpec("certificates", "regenerate", ("template.updated",)),
    QueueSpec("certificates", "users", ("user.upserted",)),
    QueueSpec(
        "scorm",
        "enrollments",
        ("enrollment.created", "enrollment.cancelled", "enrollment.expired", "enrollment.completed"),
    ),
    QueueSpec("scorm", "courses", ("course.published", "course.unpublished", "course.archived")),
    QueueSpec("scorm", "users", ("user.upserted",)),
    QueueSpec("scorm", "tenants", ("tenant.updated",)),
    # every event of every tenant, for the tenants' webhook endpoints (docs/webhooks.md)
    QueueSpec("webhooks", "events", tuple(model.event_type for model in ALL_MODELS)),
)


def queue(service: str, purpose: str) -> QueueSpec:
    for spec in QUEUES:
        if spec.service == service and spec.purpose == purpose:
            return spec
    raise KeyError(f"no queue {service}.{purpose} in shared.bus.topology.QUEUES")


def queue_arguments(spec: QueueSpec, namespace: str = "", delivery_limit: int = DEFAULT_DELIVERY_LIMIT) -> dict:
    return {
        "x-queue-type": "quorum",
        "x-delivery-limit": delivery_limit,
        "x-dead-letter-exchange": namespace + DEAD_LETTER_EXCHANGE,
        "x-dead-letter-routing-key": namespace + spec.name,
    }


def definitions(vhost: str = "/", delivery_limit: int = DEFAULT_DELIVERY_LIMIT) -> dict:
    """RabbitMQ definitions (the format of ``rabbitmqctl import_definitions``) for the whole topology."""
    exchanges = [
        {"name": EVENTS_EXCHANGE, "vhost": vhost, "type": "topic", "durable": True, "auto_delete": False,
         "internal": False, "arguments": {}},
        {"name": DEAD_LETTER_EXCHANGE, "vhost": vhost, "type": "direct", "durable": True, "auto_delete": False,
         "internal": False, "arguments": {}},
    ]
    queues: list[dict] = []
    bindings: list[dict] = []
    for spec in QUEUES:
        queues.append({"name": spec.name, "vhost": vhost, "durable": True, "auto_delete": False,
                       "arguments": queue_arguments(spec, "", delivery_limit)})
        queues.append({"name": spec.dead_letter_name, "vhost": vhost, "durable": True, "auto_delete": False,
                       "arguments": {"x-queue-type": "quorum"}})
        for key in spec.binding_keys:
            bindings.append({"source": EVENTS_EXCHANGE, "vhost": vhost, "destination": spec.name,
                             "destination_type": "queue", "routing_key": key, "arguments": {}})
        bindings.append({"source": DEAD_LETTER_EXCHANGE, "vhost": vhost, "destination": spec.dead_letter_name,
                         "destination_type": "queue", "routing_key": spec.name, "arguments": {}})
    return {"exchanges": exchanges, "queues": queues, "bindings": bindings}


if __name__ == "__main__":  # pragma: no cover - CLI convenience
    if sys.argv[1:] == ["definitions"]:
        json.dump(definitions(), sys.stdout, indent=2, sort_keys=True)
        sys.stdout.write("\n")
    else:
        sys.stderr.write("usage: python -m shared.bus.topology definitions\n")
        sys.exit(2)
