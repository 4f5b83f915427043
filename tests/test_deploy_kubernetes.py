"""deploy/kubernetes: kubernetes-validate checks the core resources against the bundled
Kubernetes schemas (strict: unknown fields fail); the custom resources (KEDA, the
Prometheus Operator) and the links between all of them are checked here field by field.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import redis.asyncio as aioredis
import yaml

from producer.jobs import DeliveryBatch, DeliveryItem, JobDispatcher, JobSpec
from producer.keys import DELIVERY_QUEUE, Keys
from worker.settings import LOG_WRITER_SEPARATE, WorkerSettings

from deploy_checks import (
    DEPLOY,
    PROMETHEUS,
    check_settings,
    drain_grace_s,
    load_yaml,
    procfile_command,
    venv_tool,
)
from support import make_event, producer_for

KUBERNETES = DEPLOY / "kubernetes"
MANIFESTS = sorted(p for p in KUBERNETES.glob("*.yaml") if p.name != "kustomization.yaml")
CUSTOM_KINDS = {"ServiceMonitor", "PodMonitor", "ScaledObject", "TriggerAuthentication"}
# Oldest and newest Kubernetes versions the manifests are validated against.
KUBERNETES_VERSIONS = ("1.28.0", "1.37.0")
# Fields of the custom resources as their CRDs define them (KEDA 2.x, prometheus-operator).
SCALED_OBJECT_FIELDS = {
    "scaleTargetRef", "pollingInterval", "cooldownPeriod", "idleReplicaCount",
    "minReplicaCount", "maxReplicaCount", "fallback", "advanced", "triggers",
}  # fmt: skip
REDIS_TRIGGER_FIELDS = {
    "address", "addressFromEnv", "host", "hostFromEnv", "port", "portFromEnv",
    "usernameFromEnv", "passwordFromEnv", "databaseIndex", "enableTLS", "unsafeSsl",
    "listName", "listLength", "activationListLength",
}  # fmt: skip
MONITOR_FIELDS = {"jobLabel", "selector", "namespaceSelector", "endpoints", "podMetricsEndpoints"}
ENDPOINT_FIELDS = {"port", "path", "interval", "scrapeTimeout", "scheme", "honorLabels"}


def documents(path: Path) -> Iterator[dict[str, Any]]:
    for document in yaml.safe_load_all(path.read_text()):
        if document:
            yield document


def resources() -> dict[tuple[str, str], dict[str, Any]]:
    """(kind, name) -> resource, over every manifest."""
    found: dict[tuple[str, str], dict[str, Any]] = {}
    for path in MANIFESTS:
        for document in documents(path):
            key = (document["kind"], document["metadata"]["name"])
            assert key not in found, f"{key} defined twice"
            found[key] = document
    return found


def settings() -> dict[str, str]:
    """The environment the pods get: the ConfigMap and the Secret."""
    found = resources()
    return {
        **found[("ConfigMap", "cliq-webhooks-config")]["data"],
        **found[("Secret", "cliq-webhooks-secrets")]["stringData"],
    }


def container(deployment: str) -> dict[str, Any]:
    (only,) = resources()[("Deployment", deployment)]["spec"]["template"]["spec"]["containers"]
    return dict(only)


def pod_labels(deployment: str) -> dict[str, str]:
    return dict(resources()[("Deployment", deployment)]["spec"]["template"]["metadata"]["labels"])


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_kubernetes_validate_accepts_every_core_resource(version: str) -> None:
    done = subprocess.run(
        [venv_tool("kubernetes-validate"), "--strict", "-k", version, *map(str, MANIFESTS)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    core = [r for (kind, _), r in resources().items() if kind not in CUSTOM_KINDS]
    assert output.count(" passed for resource ") == len(core), output


def test_kubernetes_validate_rejects_an_unknown_field(tmp_path: Path) -> None:
    broken = tmp_path / "worker.yaml"
    text = (KUBERNETES / "worker.yaml").read_text()
    broken.write_text(text.replace("terminationGracePeriodSeconds", "terminationGraceSeconds"))
    done = subprocess.run(
        [venv_tool("kubernetes-validate"), "--strict", str(broken)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode != 0


def test_the_pods_get_settings_the_processes_accept() -> None:
    env = settings()
    check_settings(env)
    for deployment in ("cliq-webhooks-api", "cliq-webhooks-worker", "cliq-webhooks-log-writer"):
        refs = container(deployment)["envFrom"]
        assert {"configMapRef": {"name": "cliq-webhooks-config"}} in refs
        assert {"secretRef": {"name": "cliq-webhooks-secrets"}} in refs


@pytest.mark.parametrize(
    ("deployment", "process", "port_setting"),
    [
        ("cliq-webhooks-api", "web", "PORT"),
        ("cliq-webhooks-worker", "worker", "METRICS_PORT"),
        ("cliq-webhooks-log-writer", "log-writer", "METRICS_PORT"),
    ],
)
def test_deployments_probe_healthz_and_readyz_and_outlast_the_drain(
    deployment: str, process: str, port_setting: str
) -> None:
    env = settings()
    spec = resources()[("Deployment", deployment)]["spec"]["template"]["spec"]
    main = container(deployment)
    assert main["command"] == procfile_command(process)
    ports = {port["name"]: port["containerPort"] for port in main["ports"]}
    for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
        http = main[probe]["httpGet"]
        assert http["path"] == path
        assert ports[http["port"]] == int(env[port_setting])
    assert spec["terminationGracePeriodSeconds"] > drain_grace_s(float(env["SHUTDOWN_GRACE"]))
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert main["securityContext"]["allowPrivilegeEscalation"] is False


def test_disruption_budgets_and_the_service_select_the_right_pods() -> None:
    found = resources()
    for name in ("cliq-webhooks-api", "cliq-webhooks-worker"):
        selector = found[("PodDisruptionBudget", name)]["spec"]["selector"]["matchLabels"]
        assert selector.items() <= pod_labels(name).items()
    service = found[("Service", "cliq-webhooks-api")]["spec"]
    assert service["selector"].items() <= pod_labels("cliq-webhooks-api").items()
    assert [p["targetPort"] for p in service["ports"]] == ["http"]


def test_monitors_scrape_with_the_job_names_the_alert_rules_use() -> None:
    jobs = {job["job_name"] for job in load_yaml(PROMETHEUS / "prometheus.yml")["scrape_configs"]}
    found = resources()
    service = found[("Service", "cliq-webhooks-api")]
    monitor = found[("ServiceMonitor", "cliq-webhooks-api")]
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert set(monitor["spec"]) <= MONITOR_FIELDS
    assert (
        monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    )
    assert service["metadata"]["labels"][monitor["spec"]["jobLabel"]] in jobs
    for endpoint in monitor["spec"]["endpoints"]:
        assert set(endpoint) <= ENDPOINT_FIELDS
        assert endpoint["port"] in {p["name"] for p in service["spec"]["ports"]}
        assert endpoint["path"] == "/metrics"

    for name in ("cliq-webhooks-worker", "cliq-webhooks-log-writer"):
        pods = found[("PodMonitor", name)]
        assert pods["apiVersion"] == "monitoring.coreos.com/v1"
        assert set(pods["spec"]) <= MONITOR_FIELDS
        labels = pod_labels(name)
        assert pods["spec"]["selector"]["matchLabels"].items() <= labels.items()
        assert labels[pods["spec"]["jobLabel"]] == name
        assert name in jobs
        ports = {p["name"] for p in container(name)["ports"]}
        for endpoint in pods["spec"]["podMetricsEndpoints"]:
            assert set(endpoint) <= ENDPOINT_FIELDS
            assert endpoint["port"] in ports
            assert endpoint["path"] == "/metrics"


def test_the_workers_leave_the_delivery_log_to_the_log_writer_deployment() -> None:
    worker_env = {e["name"]: e["value"] for e in container("cliq-webhooks-worker")["env"]}
    assert WorkerSettings.from_env(worker_env).log_writer == LOG_WRITER_SEPARATE
    assert resources()[("Deployment", "cliq-webhooks-log-writer")]["spec"]["replicas"] >= 1


def test_keda_scales_the_workers_on_the_exact_backlog_keys() -> None:
    found = resources()
    scaled = found[("ScaledObject", "cliq-webhooks-worker")]
    assert scaled["apiVersion"] == "keda.sh/v1alpha1"
    spec = scaled["spec"]
    assert set(spec) <= SCALED_OBJECT_FIELDS
    assert ("Deployment", spec["scaleTargetRef"]["name"]) in found
    assert 1 <= spec["minReplicaCount"] < spec["maxReplicaCount"]
    env = settings()
    keys = Keys(env["KEY_PREFIX"])
    lists = {trigger["metadata"]["listName"] for trigger in spec["triggers"]}
    assert lists == {keys.queue_key(DELIVERY_QUEUE, "wait"), keys.ready}
    assert lists == {"cliq:deliveries:wait", "cliq:ready"}
    redis_url = urlsplit(env["REDIS_URL"])
    for trigger in spec["triggers"]:
        assert trigger["type"] == "redis"
        meta = trigger["metadata"]
        assert set(meta) <= REDIS_TRIGGER_FIELDS
        assert all(isinstance(value, str) for value in meta.values())  # KEDA wants strings
        assert int(meta["listLength"]) > 0
        assert meta["address"] == f"{redis_url.hostname}:{redis_url.port}"
        assert meta["databaseIndex"] == redis_url.path.strip("/")
        assert meta["enableTLS"] == ("true" if redis_url.scheme == "rediss" else "false")
        auth = found[("TriggerAuthentication", trigger["authenticationRef"]["name"])]
        for ref in auth["spec"]["secretTargetRef"]:
            assert ref["key"] in found[("Secret", ref["name"])]["stringData"]
        assert {ref["parameter"] for ref in auth["spec"]["secretTargetRef"]} == {"password"}


def test_the_hpa_alternative_scales_the_workers_on_cpu_they_request() -> None:
    found = resources()
    hpa = found[("HorizontalPodAutoscaler", "cliq-webhooks-worker")]
    assert hpa["apiVersion"] == "autoscaling/v2"
    target = hpa["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", "cliq-webhooks-worker")
    (metric,) = hpa["spec"]["metrics"]
    assert metric["resource"]["name"] == "cpu"
    assert container("cliq-webhooks-worker")["resources"]["requests"]["cpu"]


def test_kustomization_lists_the_manifests_with_one_autoscaler() -> None:
    listed = load_yaml(KUBERNETES / "kustomization.yaml")["resources"]
    assert all((KUBERNETES / name).exists() for name in listed)
    assert {p.name for p in MANIFESTS} - set(listed) == {"autoscaling-hpa.yaml"}


async def test_the_backlog_keys_are_redis_lists_of_what_is_due(
    redis_url: str, redis: aioredis.Redis
) -> None:
    keys = Keys("cliq")
    dispatcher = JobDispatcher(redis, keys, redis_url)
    batch = DeliveryBatch((DeliveryItem("dlv_1", 1),)).to_dict()
    try:
        await dispatcher.add([JobSpec(DELIVERY_QUEUE, "due", batch)])
        await dispatcher.add([JobSpec(DELIVERY_QUEUE, "later", batch, delay_ms=60_000)])
    finally:
        await dispatcher.close()
    triggers = resources()[("ScaledObject", "cliq-webhooks-worker")]["spec"]["triggers"]
    wait, ready = (t["metadata"]["listName"] for t in triggers)
    assert await redis.type(wait) == "list"
    # What KEDA reads: only the due job, not the one scheduled for later.
    assert await redis.lrange(wait, 0, -1) == ["due"]
    # A single event published with no worker running waits on the ready list.
    async with producer_for(redis_url) as producer:
        await producer.endpoints.create(
            workspace_id="ws_1",
            url="https://hooks.example/",
            events=["*"],
            owner_email="o@example.com",
        )
        await producer.publisher.publish(make_event(producer))
    assert await redis.type(ready) == "list"
    assert await redis.llen(ready) == 1


def test_a_job_migrates_the_delivery_log_with_the_pods_settings() -> None:
    assert settings()["DATABASE_URL"].startswith("postgresql://")
    job = resources()[("Job", "cliq-webhooks-migrate")]
    (migrate,) = job["spec"]["template"]["spec"]["containers"]
    assert migrate["command"] == ["python", "-m", "cli", "migrate"]
    assert migrate["envFrom"] == container("cliq-webhooks-worker")["envFrom"]
    assert migrate["image"] == container("cliq-webhooks-worker")["image"]


def test_the_example_postgresql_is_the_one_database_url_names() -> None:
    found = resources()
    url = urlsplit(settings()["DATABASE_URL"])
    service = found[("Service", "postgres")]
    meta = service["metadata"]
    assert url.hostname == f"{meta['name']}.{meta['namespace']}.svc.cluster.local"
    assert url.port == service["spec"]["ports"][0]["port"]
    database = found[("Secret", "cliq-webhooks-postgres")]["stringData"]
    assert (url.username, url.password, url.path) == (
        database["POSTGRES_USER"],
        database["POSTGRES_PASSWORD"],
        "/" + database["POSTGRES_DB"],
    )
    server = found[("StatefulSet", "postgres")]["spec"]
    assert server["serviceName"] == meta["name"]
    assert service["spec"]["selector"].items() <= server["template"]["metadata"]["labels"].items()
    (postgres,) = server["template"]["spec"]["containers"]
    assert postgres["image"].startswith("postgres:")
