"""Every service's event wiring, gathered: ``python -m services.wiring asyncapi [--check]``.

Each service declares its queues once, in ``EVENT_HANDLERS`` (shared/bus/wiring.py). The AsyncAPI document's
"consumed by" lists come from those tables. This module lives in the top-level ``services`` package, beside
``python -m services run``, because shared/ may not import a service.
"""

from __future__ import annotations

import importlib
import sys

from shared.bus import wiring
from shared.bus.topology import QueueSpec
from shared.events import asyncapi

#: the services that consume events (the gateway publishes only)
CONSUMERS = ("catalog", "enrollment", "certificates", "scorm", "webhooks")


def wired_queues() -> list[QueueSpec]:
    specs: list[QueueSpec] = []
    for service in CONSUMERS:
        table = importlib.import_module(f"services.{service}.app").EVENT_HANDLERS
        specs += wiring.queue_specs(service, table)
    return specs


def main(argv: list[str]) -> int:
    if argv[:1] != ["asyncapi"]:
        sys.stderr.write("usage: python -m services.wiring asyncapi [--check]\n")
        return 2
    return asyncapi.main(argv[1:], wired_queues())


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
