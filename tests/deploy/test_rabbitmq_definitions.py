"""deploy/rabbitmq/ holds the topology of shared/bus/topology.py, in a form RabbitMQ loads.

The broker test imports the committed files into a throwaway virtual host of the real broker (never `/`), reads
back what RabbitMQ made of them, and deletes the virtual host.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from shared.bus import topology
from tests.deploy.manifests import DEPLOY

RABBITMQ = DEPLOY / "rabbitmq"
WORK_QUEUES = [spec.name for spec in topology.QUEUES]
DEAD_LETTER_QUEUES = [spec.dead_letter_name for spec in topology.QUEUES]


def load(name: str) -> dict[str, Any]:
    return json.loads((RABBITMQ / name).read_text())


def test_committed_definitions_are_the_generated_topology() -> None:
    # Regenerate with: .venv/bin/python -m shared.bus.topology definitions > deploy/rabbitmq/definitions.json
    assert load("definitions.json") == json.loads(json.dumps(topology.definitions()))


def test_the_policy_covers_every_work_queue_and_no_dead_letter_queue() -> None:
    (policy,) = load("policies.json")["policies"]
    # RabbitMQ matches policy patterns with PCRE; this pattern uses nothing Python's `re` reads differently.
    pattern = re.compile(policy["pattern"])
    assert policy["pattern"].startswith("^(catalog|enrollment|certificates|scorm|webhooks)\\.")
    assert [q for q in WORK_QUEUES if not pattern.search(q)] == []
    assert [q for q in DEAD_LETTER_QUEUES if pattern.search(q)] == []
    assert policy["apply-to"] == "queues"


def test_the_policy_dead_letters_at_least_once_to_the_topologys_exchange() -> None:
    (policy,) = load("policies.json")["policies"]
    assert policy["definition"] == {
        "dead-letter-exchange": topology.DEAD_LETTER_EXCHANGE,
        # at-least-once needs reject-publish; without it RabbitMQ silently falls back to at-most-once.
        "dead-letter-strategy": "at-least-once",
        "overflow": "reject-publish",
        "delivery-limit": topology.DEFAULT_DELIVERY_LIMIT,
    }


def test_the_compose_bootstrap_user_matches_the_services_amqp_url() -> None:
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    url = urlsplit(compose["services"]["catalog"]["environment"]["LEARN_AMQP_URL"])
    bootstrap = load("compose-bootstrap.json")
    (user,) = bootstrap["users"]
    assert user["name"] == url.username
    # rabbit_password_hashing_sha256: base64(salt[4] + sha256(salt + password))
    assert user["hashing_algorithm"] == "rabbit_password_hashing_sha256"
    raw = base64.b64decode(user["password_hash"])
    salt, digest = raw[:4], raw[4:]
    assert digest == hashlib.sha256(salt + (url.password or "").encode()).digest()
    assert bootstrap["vhosts"] == [{"name": "/"}]
    assert {p["user"] for p in bootstrap["permissions"] if p["vhost"] == "/"} == {url.username}


# --- the real broker ------------------------------------------------------------------------------------------


def rabbitmqctl(*args: str, stdin: str | None = None) -> str:
    executable = shutil.which("rabbitmqctl")
    if executable is None:
        pytest.fail("rabbitmqctl is needed to load the definitions into the local RabbitMQ node", pytrace=False)
    result = subprocess.run([executable, "--quiet", *args], input=stdin, capture_output=True, text=True, timeout=60,
                            check=False)
    assert result.returncode == 0, f"rabbitmqctl {' '.join(args)}: {result.stdout}{result.stderr}"
    return result.stdout


def in_vhost(definitions: dict[str, Any], vhost: str) -> dict[str, Any]:
    """The same definitions, every object moved to `vhost` (the import itself is broker-wide)."""
    return {kind: [{**obj, "vhost": vhost} for obj in objects] for kind, objects in definitions.items()}


@pytest.fixture(scope="module")
def loaded() -> Iterator[dict[str, list[dict[str, Any]]]]:
    """The committed definitions and policies imported into a fresh vhost: what the broker then lists."""
    vhost = f"learn_defs_test_{uuid.uuid4().hex[:12]}"
    combined = {**in_vhost(load("definitions.json"), vhost), **in_vhost(load("policies.json"), vhost)}
    rabbitmqctl("add_vhost", vhost)
    try:
        # From standard input: rabbitmqctl may run as the broker's user, who cannot read our temp files.
        rabbitmqctl("import_definitions", stdin=json.dumps(combined))
        # The import is asynchronous: wait until every queue exists with its policy applied.
        deadline = time.monotonic() + 30
        while True:
            queues = json.loads(rabbitmqctl("list_queues", "-p", vhost, "name", "type", "arguments", "policy",
                                            "--formatter", "json"))
            settled = len(queues) == len(combined["queues"]) and all(
                q["policy"] for q in queues if q["name"] in WORK_QUEUES
            )
            if settled or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        bindings = json.loads(rabbitmqctl("list_bindings", "-p", vhost, "source_name", "destination_name",
                                          "routing_key", "--formatter", "json"))
        yield {"queues": queues, "bindings": bindings}
    finally:
        rabbitmqctl("delete_vhost", vhost)


def arguments(queue: dict[str, Any]) -> dict[str, Any]:
    return {name: value for name, _type, value in queue["arguments"]}


def test_the_broker_creates_every_queue_as_a_quorum_queue(loaded: dict[str, list[dict[str, Any]]]) -> None:
    assert sorted(q["name"] for q in loaded["queues"]) == sorted(WORK_QUEUES + DEAD_LETTER_QUEUES)
    assert {q["type"] for q in loaded["queues"]} == {"quorum"}


def test_every_work_queue_dead_letters_into_its_own_dlq(loaded: dict[str, list[dict[str, Any]]]) -> None:
    by_name = {q["name"]: q for q in loaded["queues"]}
    for spec in topology.QUEUES:
        assert arguments(by_name[spec.name]) == {
            "x-queue-type": "quorum",
            "x-delivery-limit": topology.DEFAULT_DELIVERY_LIMIT,
            "x-dead-letter-exchange": topology.DEAD_LETTER_EXCHANGE,
            "x-dead-letter-routing-key": spec.name,
        }
    routes = {(b["source_name"], b["routing_key"], b["destination_name"]) for b in loaded["bindings"]}
    for spec in topology.QUEUES:
        assert (topology.DEAD_LETTER_EXCHANGE, spec.name, spec.dead_letter_name) in routes


def test_every_work_queue_is_bound_to_its_event_types(loaded: dict[str, list[dict[str, Any]]]) -> None:
    routes = {(b["source_name"], b["routing_key"], b["destination_name"]) for b in loaded["bindings"]}
    for spec in topology.QUEUES:
        for event_type in spec.event_types:
            assert (topology.EVENTS_EXCHANGE, f"*.{event_type}", spec.name) in routes


def test_the_broker_applies_the_policy_to_work_queues_only(loaded: dict[str, list[dict[str, Any]]]) -> None:
    (policy,) = load("policies.json")["policies"]
    applied = {q["name"]: q["policy"] for q in loaded["queues"]}
    assert {name: applied[name] for name in WORK_QUEUES} == {name: policy["name"] for name in WORK_QUEUES}
    assert {name: applied[name] for name in DEAD_LETTER_QUEUES} == {name: "" for name in DEAD_LETTER_QUEUES}
