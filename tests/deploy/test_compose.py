"""deploy/compose.yaml starts the whole system in the right order and exposes only the gateway.

No Docker engine runs the file here: it is validated against the Compose Specification's JSON schema and its
structure is checked (health checks, dependency conditions, published ports, wiring).
"""

from __future__ import annotations

import json
import re
from importlib import resources
from typing import Any

import jsonschema
import pytest
import yaml

from shared.config import CommonSettings
from tests.deploy.manifests import DEPLOY, INTERNAL_SERVICES, PORTS, REPO, SERVICES

COMPOSE = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
LONG_RUNNING = [name for name, service in COMPOSE["services"].items() if name != "migrate"]


def service(name: str) -> dict[str, Any]:
    return COMPOSE["services"][name]


def published_ports(spec: dict[str, Any]) -> list[int]:
    ports = []
    for port in spec.get("ports", []):
        text = str(port)
        ports.append(int(text.split(":")[-2]) if ":" in text else int(text))
    return ports


def test_the_file_follows_the_compose_specification() -> None:
    # The schema ships with check-jsonschema (vendored from compose-spec/compose-spec).
    schema_file = resources.files("check_jsonschema.builtin_schemas.vendor") / "compose-spec.json"
    schema = json.loads(schema_file.read_text())
    validator = jsonschema.validators.validator_for(schema)(schema)
    errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(COMPOSE)]
    assert errors == []


def test_the_stack_is_postgres_rabbitmq_redis_a_migration_and_the_services() -> None:
    assert set(COMPOSE["services"]) == {"postgres", "rabbitmq", "redis", "migrate", *SERVICES}
    assert service("postgres")["image"].startswith("postgres:15")
    version = re.match(r"rabbitmq:(\d+)\.(\d+)-management$", service("rabbitmq")["image"])
    assert version and (int(version[1]), int(version[2])) >= (3, 10)


def test_every_long_running_container_has_a_health_check() -> None:
    for name in LONG_RUNNING:
        check = service(name)["healthcheck"]
        assert check["test"][0] == "CMD", name
        assert {"interval", "timeout", "retries"} <= set(check), name


def test_each_service_is_healthy_only_when_its_readyz_answers_on_its_port() -> None:
    for name in SERVICES:
        probe = " ".join(service(name)["healthcheck"]["test"])
        assert f"http://127.0.0.1:{PORTS[name]}/readyz" in probe, name
        assert service(name)["command"] == [f"services.{name}", "serve"]
        assert service(name)["environment"][f"LEARN_{name.upper()}_PORT"] == str(PORTS[name])


def test_every_dependency_waits_for_health_or_completion() -> None:
    for name, spec in COMPOSE["services"].items():
        for dependency, condition in spec.get("depends_on", {}).items():
            expected = "service_completed_successfully" if dependency == "migrate" else "service_healthy"
            assert condition == {"condition": expected}, f"{name} -> {dependency}"


def test_services_start_after_the_migration_the_database_and_the_broker() -> None:
    for name in SERVICES:
        assert {"postgres", "rabbitmq", "migrate"} <= set(service(name)["depends_on"]), name
    assert set(service("gateway")["depends_on"]) >= set(INTERNAL_SERVICES)
    assert set(service("migrate")["depends_on"]) == {"postgres"}


def test_the_migration_runs_once_for_every_service() -> None:
    migrate = service("migrate")
    assert migrate["restart"] == "no"
    script = " ".join(migrate["command"])
    assert "set -e" in script
    assert re.search(r"for service in ([a-z ]+); do", script)[1].split() == list(SERVICES)  # type: ignore[index]
    assert "python -m services.$$service migrate" in script  # `$$`: a literal `$` for the shell


def test_only_the_gateway_and_the_rabbitmq_management_ui_are_published() -> None:
    published = {name: published_ports(spec) for name, spec in COMPOSE["services"].items() if spec.get("ports")}
    assert published == {"gateway": [8080, 8085], "rabbitmq": [15672]}  # 8085: the content origin


def test_the_content_origin_is_the_gateways_second_port_and_another_origin() -> None:
    environment = service("gateway")["environment"]
    assert environment["LEARN_GATEWAY_CONTENT_PORT"] == "8085"
    content = environment["LEARN_CONTENT_URL"].split(":-", 1)[1].rstrip("}")
    public = environment["LEARN_PUBLIC_URL"].split(":-", 1)[1].rstrip("}")
    assert (content, public) == ("http://localhost:8085", "http://localhost:8080")
    # Every service sees the same content URL (scorm composes launch URLs with it).
    assert all(service(name)["environment"]["LEARN_CONTENT_URL"] == environment["LEARN_CONTENT_URL"]
               for name in SERVICES)


def test_every_learn_container_uses_the_one_image_read_only_and_without_capabilities() -> None:
    for name in ("migrate", *SERVICES):
        spec = service(name)
        assert spec["build"] == {"context": "..", "dockerfile": "deploy/Dockerfile"}, name
        assert spec["image"] == service("gateway")["image"], name
        assert spec["read_only"] is True and spec["cap_drop"] == ["ALL"], name
        assert any(mount.startswith("/tmp:") for mount in spec["tmpfs"]), name


def test_services_listen_on_every_interface_and_leave_migrations_to_the_job() -> None:
    for name in ("migrate", *SERVICES):
        environment = service(name)["environment"]
        assert environment["LEARN_HOST"] == "0.0.0.0", name
        assert environment["LEARN_RUN_MIGRATIONS_ON_START"] == "false", name
        assert environment["LEARN_POSTGRES_URL"].startswith("postgresql://"), name
        assert "@postgres:5432" in environment["LEARN_POSTGRES_URL"], name
        assert "@rabbitmq:5672/" in environment["LEARN_AMQP_URL"], name


def test_the_gateway_reaches_each_service_by_its_compose_name() -> None:
    environment = service("gateway")["environment"]
    for name in INTERNAL_SERVICES:
        assert environment[f"LEARN_GATEWAY_{name.upper()}_URL"] == f"http://{name}:{PORTS[name]}"


def test_rabbitmq_loads_the_topology_and_policies_at_boot() -> None:
    mounts = {volume.split(":")[1]: volume.split(":")[0] for volume in service("rabbitmq")["volumes"]
              if volume.startswith("./")}
    definitions = {target: source for target, source in mounts.items()
                   if target.startswith("/etc/rabbitmq/definitions.d/")}
    # Imported in file-name order: the vhost and user must exist before the queues that live in them.
    assert [definitions[target] for target in sorted(definitions)] == [
        "./rabbitmq/compose-bootstrap.json", "./rabbitmq/definitions.json", "./rabbitmq/policies.json"]
    assert mounts["/etc/rabbitmq/conf.d/20-learn.conf"] == "./rabbitmq/rabbitmq.conf"
    conf = (DEPLOY / "rabbitmq" / "rabbitmq.conf").read_text()
    assert "definitions.local.path = /etc/rabbitmq/definitions.d" in conf
    assert "prometheus.return_per_object_metrics = true" in conf
    for source in definitions.values():
        assert (DEPLOY / source).is_file(), source


@pytest.mark.parametrize("where", ["compose", "k8s"])
def test_every_learn_variable_set_is_one_the_services_read(where: str) -> None:
    # CommonSettings fields, plus the per-service and gateway settings named in the deployment contract.
    known = {f"LEARN_{field.upper()}" for field in CommonSettings.model_fields}
    known |= {f"LEARN_{name.upper()}_{suffix}" for name in SERVICES for suffix in ("PORT", "DATABASE_URL")}
    known |= {f"LEARN_GATEWAY_{name.upper()}_URL" for name in INTERNAL_SERVICES}
    known |= {"LEARN_ADMIN_TOKEN", "LEARN_API_KEY_PEPPER", "LEARN_TRUSTED_PROXIES", "LEARN_GATEWAY_CONTENT_PORT",
              "LEARN_REDIS_URL", "LEARN_RABBITMQ_MANAGEMENT_URL", "LEARN_RABBITMQ_PUBLIC_URL"}
    if where == "compose":
        text = (DEPLOY / "compose.yaml").read_text()
    else:
        text = "\n".join(p.read_text() for p in sorted((DEPLOY / "k8s").rglob("*.yaml")))
    used = set(re.findall(r"\bLEARN_[A-Z_]+\b", text)) - {"LEARN_IMAGE"}  # LEARN_IMAGE: compose's own knob
    assert used - known == set()


def test_the_gateway_shares_its_rate_limit_through_the_unpublished_redis() -> None:
    gateway, redis = service("gateway"), service("redis")
    assert gateway["environment"]["LEARN_REDIS_URL"] == "redis://redis:6379/0"
    assert gateway["depends_on"]["redis"] == {"condition": "service_healthy"}
    assert re.match(r"redis:\d+\.\d+\.\d+-alpine$", redis["image"]), redis["image"]
    assert "ports" not in redis
    assert redis["read_only"] is True and redis["cap_drop"] == ["ALL"]
    assert redis["command"][:5] == ["redis-server", "--save", "", "--appendonly", "no"]  # disposable state


def test_the_image_is_built_from_the_repository_root() -> None:
    assert (DEPLOY / service("gateway")["build"]["context"] / service("gateway")["build"]["dockerfile"]).resolve() \
        == (REPO / "deploy" / "Dockerfile")
