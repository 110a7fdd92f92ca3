"""The Kubernetes manifests, as rendered by each overlay, meet the platform's rules.

Rendered with `kubectl kustomize` and validated offline against the Kubernetes OpenAPI schema (strict), then
checked for what a schema cannot see: probes, resources, hardening, wiring between objects, network isolation.
"""

from __future__ import annotations

import subprocess
from typing import Any

import kubernetes_validate
import pytest
import yaml

from tests.deploy.manifests import (
    CONTENT_PORT,
    DEPLOY,
    INTERNAL_SERVICES,
    K8S_SCHEMA_VERSION,
    OVERLAYS,
    PORTS,
    SERVICES,
    Manifest,
    named,
    of_kind,
    pod_specs,
    selects,
)

REDIS_PORT = 6379


@pytest.fixture(params=OVERLAYS)
def overlay(request: pytest.FixtureRequest) -> str:
    """Each test taking `overlay` runs once per overlay."""
    return request.param


def containers(objects: list[Manifest]) -> list[tuple[str, Manifest]]:
    found = []
    for workload, spec in pod_specs(objects):
        for container in spec.get("initContainers", []) + spec["containers"]:
            found.append((f"{workload['kind']}/{workload['metadata']['name']}/{container['name']}", container))
    return found


def cpu_millicores(quantity: str) -> int:
    return int(quantity[:-1]) if quantity.endswith("m") else int(float(quantity) * 1000)


def test_every_object_passes_strict_schema_validation(rendered: dict[str, list[Manifest]], overlay: str) -> None:
    errors = []
    for obj in rendered[overlay]:
        try:
            kubernetes_validate.validate(obj, K8S_SCHEMA_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            errors.append(f"{obj['kind']}/{obj['metadata']['name']}: {exc.message}")
    assert errors == []


def test_every_object_lands_in_the_overlays_namespace(rendered: dict[str, list[Manifest]], overlay: str) -> None:
    namespace = named(rendered[overlay], "Namespace", {"dev": "learn-dev", "prod": "learn"}[overlay])
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    outside = [
        f"{obj['kind']}/{obj['metadata']['name']}"
        for obj in rendered[overlay]
        if obj["kind"] != "Namespace" and obj["metadata"].get("namespace") != namespace["metadata"]["name"]
    ]
    assert outside == []


def test_every_serving_container_has_startup_liveness_and_readiness_probes(
    rendered: dict[str, list[Manifest]], overlay: str
) -> None:
    for deployment in of_kind(rendered[overlay], "Deployment"):
        for container in deployment["spec"]["template"]["spec"]["containers"]:
            assert container["livenessProbe"]["httpGet"]["path"] == "/healthz", container["name"]
            assert container["readinessProbe"]["httpGet"]["path"] == "/readyz", container["name"]
            assert container["startupProbe"]["httpGet"]["path"] == "/healthz", container["name"]


def test_every_container_requests_and_limits_cpu_and_memory(
    rendered: dict[str, list[Manifest]], overlay: str
) -> None:
    for where, container in containers(rendered[overlay]):
        resources = container.get("resources", {})
        for bound in ("requests", "limits"):
            assert set(resources.get(bound, {})) >= {"cpu", "memory"}, f"{where} lacks {bound}"


def test_every_pod_runs_as_non_root_on_a_read_only_root_without_capabilities(
    rendered: dict[str, list[Manifest]], overlay: str
) -> None:
    for workload, spec in pod_specs(rendered[overlay]):
        pod = spec["securityContext"]
        assert pod["runAsNonRoot"] is True, workload["metadata"]["name"]
        assert pod["seccompProfile"]["type"] == "RuntimeDefault", workload["metadata"]["name"]
        assert spec["automountServiceAccountToken"] is False, workload["metadata"]["name"]
    for where, container in containers(rendered[overlay]):
        security = container["securityContext"]
        assert security["runAsNonRoot"] is True, where
        assert security["runAsUser"] == 10001, where
        assert security["readOnlyRootFilesystem"] is True, where
        assert security["allowPrivilegeEscalation"] is False, where
        assert security["capabilities"]["drop"] == ["ALL"], where
        assert "add" not in security["capabilities"], where
        assert security["seccompProfile"]["type"] == "RuntimeDefault", where


def test_the_only_writable_path_is_an_emptydir_under_tmp(rendered: dict[str, list[Manifest]], overlay: str) -> None:
    config = of_kind(rendered[overlay], "ConfigMap")[0]
    assert config["data"]["LEARN_DATA_DIR"].startswith("/tmp/")
    for workload, spec in pod_specs(rendered[overlay]):
        volumes = {volume["name"]: volume for volume in spec["volumes"]}
        for container in spec["containers"]:
            for mount in container["volumeMounts"]:
                assert mount["mountPath"] == "/tmp", workload["metadata"]["name"]
                assert "emptyDir" in volumes[mount["name"]], workload["metadata"]["name"]


def test_each_service_runs_its_own_module_on_its_own_port(rendered: dict[str, list[Manifest]], overlay: str) -> None:
    for service in SERVICES:
        container = named(rendered[overlay], "Deployment", service)["spec"]["template"]["spec"]["containers"][0]
        assert container["args"] == [f"services.{service}", "serve"]
        ports = [{"name": "http", "containerPort": PORTS[service], "protocol": "TCP"}]
        if service == "gateway":  # and the content origin's listener
            ports.append({"name": "content", "containerPort": CONTENT_PORT, "protocol": "TCP"})
        assert container["ports"] == ports
    config = of_kind(rendered[overlay], "ConfigMap")[0]["data"]
    assert config["LEARN_HOST"] == "0.0.0.0"  # the settings default (loopback) is unreachable in a pod
    for service in SERVICES:
        assert config[f"LEARN_{service.upper()}_PORT"] == str(PORTS[service])
    assert config["LEARN_GATEWAY_CONTENT_PORT"] == str(CONTENT_PORT)
    for service in INTERNAL_SERVICES:
        assert config[f"LEARN_GATEWAY_{service.upper()}_URL"] == f"http://{service}:{PORTS[service]}"


def test_every_service_selects_the_pods_of_a_deployment_on_a_named_port(
    rendered: dict[str, list[Manifest]], overlay: str
) -> None:
    deployments = of_kind(rendered[overlay], "Deployment")
    for service in of_kind(rendered[overlay], "Service"):
        if service["metadata"]["name"] == "redis":
            continue  # a StatefulSet's: test_prod_runs_one_disposable_redis_only_the_gateway_reaches
        matching = [
            d for d in deployments
            if selects({"matchLabels": service["spec"]["selector"]}, d["spec"]["template"]["metadata"]["labels"])
        ]
        assert [d["metadata"]["name"] for d in matching] == [service["metadata"]["name"]]
        port_names = {p["name"] for p in matching[0]["spec"]["template"]["spec"]["containers"][0]["ports"]}
        assert {p["targetPort"] for p in service["spec"]["ports"]} <= port_names
        assert service["spec"]["ports"][0]["port"] == PORTS[service["metadata"]["name"]]


def test_every_deployment_selects_its_own_pods_only(rendered: dict[str, list[Manifest]], overlay: str) -> None:
    deployments = of_kind(rendered[overlay], "Deployment")
    for deployment in deployments:
        owners = [d for d in deployments
                  if selects(d["spec"]["selector"], deployment["spec"]["template"]["metadata"]["labels"])]
        assert owners == [deployment]


def test_every_deployment_has_an_autoscaler_and_a_disruption_budget(
    rendered: dict[str, list[Manifest]], overlay: str
) -> None:
    objects = rendered[overlay]
    for deployment in of_kind(objects, "Deployment"):
        name = deployment["metadata"]["name"]
        assert "replicas" not in deployment["spec"], f"{name}: the HPA owns the replica count"
        autoscalers = [h for h in of_kind(objects, "HorizontalPodAutoscaler")
                       if h["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": name}]
        assert len(autoscalers) == 1, name
        assert autoscalers[0]["apiVersion"] == "autoscaling/v2"
        assert 1 <= autoscalers[0]["spec"]["minReplicas"] <= autoscalers[0]["spec"]["maxReplicas"]
        budgets = [p for p in of_kind(objects, "PodDisruptionBudget")
                   if selects(p["spec"]["selector"], deployment["spec"]["template"]["metadata"]["labels"])]
        assert len(budgets) == 1, name
        # maxUnavailable keeps node drains possible even with a single replica.
        assert budgets[0]["spec"]["maxUnavailable"] == 1, name


def test_pods_spread_across_zones_and_nodes(rendered: dict[str, list[Manifest]], overlay: str) -> None:
    for deployment in of_kind(rendered[overlay], "Deployment"):
        spec = deployment["spec"]["template"]["spec"]
        keys = {c["topologyKey"] for c in spec["topologySpreadConstraints"]}
        assert keys == {"topology.kubernetes.io/zone", "kubernetes.io/hostname"}
        for constraint in spec["topologySpreadConstraints"]:
            assert selects(constraint["labelSelector"], deployment["spec"]["template"]["metadata"]["labels"])


def test_certificates_gets_the_most_cpu(rendered: dict[str, list[Manifest]], overlay: str) -> None:
    def cpu(service: str, bound: str) -> int:
        container = named(rendered[overlay], "Deployment", service)["spec"]["template"]["spec"]["containers"][0]
        return cpu_millicores(str(container["resources"][bound]["cpu"]))

    for bound in ("requests", "limits"):
        others = max(cpu(service, bound) for service in SERVICES if service != "certificates")
        assert cpu("certificates", bound) >= others
    assert cpu("certificates", "requests") > max(cpu(s, "requests") for s in SERVICES if s != "certificates")


def test_the_overlay_pins_an_image_tag(rendered: dict[str, list[Manifest]], overlay: str) -> None:
    images = {container["image"] for where, container in containers(rendered[overlay])
              if not where.startswith("StatefulSet/redis/")}
    assert len(images) == 1, "one image for every service"
    image = images.pop()
    repository, _, tag = image.rpartition(":")
    assert "/" in repository and tag and tag != "latest", image


def test_traffic_is_denied_unless_a_policy_allows_it(rendered: dict[str, list[Manifest]], overlay: str) -> None:
    policies = of_kind(rendered[overlay], "NetworkPolicy")
    deny_all = [p for p in policies
                if p["spec"]["podSelector"] == {} and set(p["spec"]["policyTypes"]) == {"Ingress", "Egress"}
                and not p["spec"].get("ingress") and not p["spec"].get("egress")]
    assert len(deny_all) == 1


def _pod_labels(objects: list[Manifest]) -> dict[str, dict[str, str]]:
    return {w["metadata"]["name"]: w["spec"]["template"]["metadata"]["labels"] for w, _ in pod_specs(objects)}


def _ingress_rules_for(objects: list[Manifest], labels: dict[str, str]) -> list[dict[str, Any]]:
    return [rule for p in of_kind(objects, "NetworkPolicy") if selects(p["spec"]["podSelector"], labels)
            for rule in p["spec"].get("ingress", [])]


def _egress_rules_for(objects: list[Manifest], labels: dict[str, str]) -> list[dict[str, Any]]:
    return [rule for p in of_kind(objects, "NetworkPolicy") if selects(p["spec"]["podSelector"], labels)
            for rule in p["spec"].get("egress", [])]


def test_only_the_ingress_controller_and_monitoring_reach_the_gateway(
    rendered: dict[str, list[Manifest]], overlay: str
) -> None:
    gateway = _pod_labels(rendered[overlay])["gateway"]
    sources = [peer for rule in _ingress_rules_for(rendered[overlay], gateway) for peer in rule["from"]]
    namespaces = sorted(peer["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"] for peer in sources)
    assert namespaces == ["ingress-nginx", "monitoring"]
    assert all("podSelector" not in peer for peer in sources)


def test_internal_services_accept_only_the_gateway_and_metrics_scrapes(
    rendered: dict[str, list[Manifest]], overlay: str
) -> None:
    labels = _pod_labels(rendered[overlay])
    for service in INTERNAL_SERVICES:
        for rule in _ingress_rules_for(rendered[overlay], labels[service]):
            for peer in rule["from"]:
                if "podSelector" in peer:
                    assert "namespaceSelector" not in peer
                    assert selects(peer["podSelector"], labels["gateway"]), service
                    assert not selects(peer["podSelector"], labels[service]), service
                else:
                    assert peer == {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}
            ports = [(p["port"], p.get("endPort", p["port"])) for p in rule["ports"]]
            assert any(low <= PORTS[service] <= high for low, high in ports)


def test_egress_goes_only_to_dns_postgres_rabbitmq_and_from_the_gateway_to_the_services(
    rendered: dict[str, list[Manifest]], overlay: str
) -> None:
    labels = _pod_labels(rendered[overlay])
    for workload, pod in labels.items():
        allowed: set[tuple[str, int]] = set()
        for rule in _egress_rules_for(rendered[overlay], pod):
            if workload == "webhooks" and "ports" not in rule:
                # the tenants' endpoints: public addresses on any port, never the private ranges
                blocks = [peer["ipBlock"] for peer in rule["to"]]
                assert [b["cidr"] for b in blocks] == ["0.0.0.0/0", "::/0"], blocks
                assert {"10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "169.254.0.0/16"} <= set(blocks[0]["except"])
                continue
            for port in rule["ports"]:
                for number in range(port["port"], port.get("endPort", port["port"]) + 1):
                    allowed.add((port["protocol"], number))
            if "to" in rule:
                assert workload == "gateway", f"{workload} may only reach datastores and DNS"
                assert all(not selects(peer["podSelector"], labels["gateway"]) for peer in rule["to"])
        dns = {("UDP", 53), ("TCP", 53)}
        datastores_and_dns = dns | {("TCP", 5432), ("TCP", 5672)}
        services = {("TCP", PORTS[s]) for s in INTERNAL_SERVICES}
        if "redis" in labels:  # the prod overlay's Redis (the gateway's shared rate limit)
            services.add(("TCP", REDIS_PORT))
        if workload == "redis":
            assert allowed == dns, workload
        else:
            assert allowed == (datastores_and_dns | services if workload == "gateway" else datastores_and_dns), workload


def test_prod_runs_one_disposable_redis_only_the_gateway_reaches(rendered: dict[str, list[Manifest]],
                                                                 overlay: str) -> None:
    objects = rendered[overlay]
    config = of_kind(objects, "ConfigMap")[0]["data"]
    if overlay != "prod":
        assert not [o for o in objects if o["metadata"]["name"] == "redis"]
        assert "LEARN_REDIS_URL" not in config  # per-replica limits in dev
        return
    redis = named(objects, "StatefulSet", "redis")
    assert redis["spec"]["replicas"] == 1
    container = redis["spec"]["template"]["spec"]["containers"][0]
    image, _, tag = container["image"].rpartition(":")
    assert image == "redis" and tag and tag != "latest", container["image"]
    assert container["args"][:5] == ["redis-server", "--save", "", "--appendonly", "no"]  # no persistence
    service = named(objects, "Service", "redis")
    assert selects({"matchLabels": service["spec"]["selector"]}, redis["spec"]["template"]["metadata"]["labels"])
    assert service["spec"]["ports"][0]["port"] == REDIS_PORT
    assert config["LEARN_REDIS_URL"] == f"redis://redis:{REDIS_PORT}/0"
    labels = _pod_labels(objects)
    sources = [peer for rule in _ingress_rules_for(objects, labels["redis"]) for peer in rule["from"]]
    assert sources and all(selects(peer["podSelector"], labels["gateway"]) for peer in sources)
    assert not any(selects(peer["podSelector"], labels[s]) for peer in sources for s in INTERNAL_SERVICES)


def test_migrations_run_as_a_hook_before_the_rollout(rendered: dict[str, list[Manifest]], overlay: str) -> None:
    job = named(rendered[overlay], "Job", "learn-migrate")
    annotations = job["metadata"]["annotations"]
    assert annotations["argocd.argoproj.io/hook"] == "PreSync"
    assert annotations["helm.sh/hook"] == "pre-install,pre-upgrade"
    assert job["spec"]["ttlSecondsAfterFinished"] > 0
    spec = job["spec"]["template"]["spec"]
    migrations = sorted(tuple(c["args"]) for c in spec["containers"])
    assert migrations == sorted((f"services.{service}", "migrate") for service in SERVICES)
    # On a first install the hook runs before the ConfigMap exists: it must not depend on it.
    for container in spec["containers"]:
        assert all(source["configMapRef"]["optional"] is True for source in container["envFrom"])


def test_serving_pods_leave_schema_changes_to_the_migration_job(
    rendered: dict[str, list[Manifest]], overlay: str
) -> None:
    config = of_kind(rendered[overlay], "ConfigMap")[0]
    assert config["data"]["LEARN_RUN_MIGRATIONS_ON_START"] == "false"


def test_secrets_come_from_the_out_of_band_secret_never_from_the_manifests(
    rendered: dict[str, list[Manifest]], overlay: str
) -> None:
    assert of_kind(rendered[overlay], "Secret") == []
    config = of_kind(rendered[overlay], "ConfigMap")[0]["data"]
    secret_names = {"LEARN_POSTGRES_URL", "LEARN_AMQP_URL", "LEARN_ADMIN_TOKEN", "LEARN_INTERNAL_SECRET",
                    "LEARN_API_KEY_PEPPER"}
    assert not secret_names & set(config)
    gateway = named(rendered[overlay], "Deployment", "gateway")["spec"]["template"]["spec"]["containers"][0]
    from_secret = {e["name"] for e in gateway["env"] if e["valueFrom"]["secretKeyRef"]["name"] == "learn-secrets"}
    assert secret_names <= from_secret
    # The admin token and the API key pepper stay with the gateway.
    for service in INTERNAL_SERVICES:
        container = named(rendered[overlay], "Deployment", service)["spec"]["template"]["spec"]["containers"][0]
        names = {e["name"] for e in container["env"]}
        assert {"LEARN_POSTGRES_URL", "LEARN_AMQP_URL", "LEARN_INTERNAL_SECRET"} <= names
        assert not {"LEARN_ADMIN_TOKEN", "LEARN_API_KEY_PEPPER"} & names


def test_the_ingress_routes_the_apex_and_every_tenant_host_to_the_gateway_public_paths_only(
    rendered: dict[str, list[Manifest]], overlay: str
) -> None:
    ingress = named(rendered[overlay], "Ingress", "gateway")
    config = of_kind(rendered[overlay], "ConfigMap")[0]["data"]
    domain = config["LEARN_BASE_DOMAIN"]
    assert config["LEARN_PUBLIC_URL"] == f"https://{domain}"
    hosts = [rule["host"] for rule in ingress["spec"]["rules"]]
    assert hosts == [domain, f"*.{domain}"]
    assert ingress["spec"]["tls"][0]["hosts"] == hosts
    for rule in ingress["spec"]["rules"]:
        paths = sorted(path["path"] for path in rule["http"]["paths"])
        # never /metrics, /healthz, /readyz; never /learn/ (the content origin's, below)
        assert paths == ["/admin/", "/api/", "/verify/"]
        assert {path["backend"]["service"]["name"] for path in rule["http"]["paths"]} == {"gateway"}
        assert {path["backend"]["service"]["port"]["name"] for path in rule["http"]["paths"]} == {"http"}
    assert ingress["metadata"]["annotations"]["nginx.ingress.kubernetes.io/proxy-body-size"] == "512m"


def test_the_content_origin_has_a_host_of_its_own_on_another_site_routed_to_the_content_port(
    rendered: dict[str, list[Manifest]], overlay: str
) -> None:
    ingress = named(rendered[overlay], "Ingress", "gateway-content")
    config = of_kind(rendered[overlay], "ConfigMap")[0]["data"]
    content_host = config["LEARN_CONTENT_URL"].removeprefix("https://")
    assert config["LEARN_CONTENT_URL"] == f"https://{content_host}" and "/" not in content_host
    # Another registrable domain than the API/admin hosts: not one of their names, not under their wildcard.
    api_hosts = [rule["host"] for rule in named(rendered[overlay], "Ingress", "gateway")["spec"]["rules"]]
    assert content_host.split(".")[-2:] != config["LEARN_BASE_DOMAIN"].split(".")[-2:]
    assert all(not content_host.endswith(host.lstrip("*")) for host in api_hosts)
    assert [rule["host"] for rule in ingress["spec"]["rules"]] == [content_host]
    assert ingress["spec"]["tls"][0]["hosts"] == [content_host]
    (rule,) = ingress["spec"]["rules"]
    assert [(p["path"], p["backend"]["service"]["name"], p["backend"]["service"]["port"]["name"])
            for p in rule["http"]["paths"]] == [("/learn/", "gateway", "content")]
    service = named(rendered[overlay], "Service", "gateway")
    assert {"name": "content", "port": CONTENT_PORT, "targetPort": "content", "protocol": "TCP"} \
        in service["spec"]["ports"]


def test_the_ingress_controller_reaches_both_gateway_ports(rendered: dict[str, list[Manifest]], overlay: str) -> None:
    gateway = _pod_labels(rendered[overlay])["gateway"]
    from_controller = [rule for rule in _ingress_rules_for(rendered[overlay], gateway)
                       if any(peer.get("namespaceSelector", {}).get("matchLabels", {})
                              .get("kubernetes.io/metadata.name") == "ingress-nginx" for peer in rule["from"])]
    ports = {port["port"] for rule in from_controller for port in rule["ports"]}
    assert ports == {PORTS["gateway"], CONTENT_PORT}


def test_only_the_gateway_is_exposed(rendered: dict[str, list[Manifest]], overlay: str) -> None:
    assert {s["spec"]["type"] for s in of_kind(rendered[overlay], "Service")} == {"ClusterIP"}
    assert [i["metadata"]["name"] for i in of_kind(rendered[overlay], "Ingress")] == ["gateway", "gateway-content"]
    for ingress in of_kind(rendered[overlay], "Ingress"):
        for rule in ingress["spec"]["rules"]:
            assert {p["backend"]["service"]["name"] for p in rule["http"]["paths"]} == {"gateway"}


def test_prod_runs_more_replicas_with_stricter_resources_than_dev(rendered: dict[str, list[Manifest]]) -> None:
    for service in SERVICES:
        dev = named(rendered["dev"], "HorizontalPodAutoscaler", service)["spec"]
        prod = named(rendered["prod"], "HorizontalPodAutoscaler", service)["spec"]
        assert prod["minReplicas"] >= 3 > dev["minReplicas"]
        assert prod["maxReplicas"] > dev["maxReplicas"]
        container = named(rendered["prod"], "Deployment", service)["spec"]["template"]["spec"]["containers"][0]
        resources = container["resources"]
        assert resources["requests"]["memory"] == resources["limits"]["memory"], service


def test_each_overlay_deploys_its_own_image_tag(rendered: dict[str, list[Manifest]]) -> None:
    def image(objects: list[Manifest]) -> str:
        return named(objects, "Deployment", "gateway")["spec"]["template"]["spec"]["containers"][0]["image"]

    assert image(rendered["dev"]) != image(rendered["prod"])


def test_the_example_secret_is_a_valid_placeholder_outside_every_overlay() -> None:
    secret = yaml.safe_load((DEPLOY / "k8s" / "base" / "secret.example.yaml").read_text())
    kubernetes_validate.validate(secret, K8S_SCHEMA_VERSION, strict=True)
    assert secret["metadata"]["name"] == "learn-secrets"
    assert set(secret["stringData"].values()) == {"CHANGE-ME"}
    kustomization = yaml.safe_load((DEPLOY / "k8s" / "base" / "kustomization.yaml").read_text())
    assert "secret.example.yaml" not in kustomization["resources"]


def test_the_validation_script_accepts_every_overlay() -> None:
    result = subprocess.run([str(DEPLOY / "k8s" / "validate.sh")], capture_output=True, text=True, timeout=120,
                            check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "ok   overlays/dev" in result.stdout and "ok   overlays/prod" in result.stdout
