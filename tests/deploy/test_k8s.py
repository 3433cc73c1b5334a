"""deploy/k8s renders with kustomize and every object is valid Kubernetes, offline.

No cluster here: ``kubectl kustomize`` renders each overlay, kubernetes-validate checks
every object against the Kubernetes schemas, and KEDA's objects (a CRD that
kubernetes-validate has no schema for) get a structural check. The worker's GPU
limit, grace period and probes, and the KEDA query against the migration's view,
are checked as what a cluster operator relies on.
"""

from __future__ import annotations

import base64
import shutil
import subprocess
import sys
from functools import cache
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from sqlalchemy import text

from sweep.store import queries
from sweep.store.engine import make_engine

ROOT = Path(__file__).resolve().parents[2]
OVERLAYS = sorted(p.name for p in (ROOT / "deploy" / "k8s" / "overlays").iterdir() if p.is_dir())
KUBERNETES_VERSION = "1.30.0"  # the oldest Kubernetes the manifests promise to work on
KEDA_KINDS = {"ScaledObject", "TriggerAuthentication"}

pytestmark = pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl not installed")


@cache
def render(overlay: str) -> tuple[dict[str, Any], ...]:
    result = subprocess.run(
        ["kubectl", "kustomize", str(ROOT / "deploy" / "k8s" / "overlays" / overlay)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return tuple(doc for doc in yaml.safe_load_all(result.stdout) if doc)


def find(overlay: str, kind: str, name: str) -> dict[str, Any]:
    [found] = [o for o in render(overlay) if o["kind"] == kind and o["metadata"]["name"] == name]
    return found


def container(overlay: str, deployment: str) -> dict[str, Any]:
    [only] = find(overlay, "Deployment", deployment)["spec"]["template"]["spec"]["containers"]
    return only


def test_there_is_a_single_node_and_a_gpu_cluster_overlay() -> None:
    assert OVERLAYS == ["gpu-cluster", "single-node"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_object_is_valid_kubernetes(overlay: str) -> None:
    objects = render(overlay)
    kinds = {o["kind"] for o in objects}
    assert {"Job", "Deployment", "Service", "ScaledObject", "TriggerAuthentication"} <= kinds
    for obj in objects:
        assert obj["metadata"].get("namespace", "sweep") == "sweep", obj["metadata"]
        if obj["kind"] in KEDA_KINDS:
            continue
        # strict: an unknown or misspelt field is an error, not silently dropped
        kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_keda_objects_have_the_shape_keda_reads(overlay: str) -> None:
    scaled = find(overlay, "ScaledObject", "sweep-worker")
    assert scaled["apiVersion"] == "keda.sh/v1alpha1"
    spec = scaled["spec"]
    assert set(spec) <= {
        "scaleTargetRef", "minReplicaCount", "maxReplicaCount", "pollingInterval",
        "cooldownPeriod", "triggers", "advanced", "fallback", "idleReplicaCount",
    }  # fmt: skip
    assert find(overlay, "Deployment", spec["scaleTargetRef"]["name"])
    assert spec["minReplicaCount"] == 0  # no work, no GPU held
    assert isinstance(spec["maxReplicaCount"], int) and spec["maxReplicaCount"] >= 1
    [trigger] = spec["triggers"]
    assert trigger["type"] == "postgresql"
    assert all(isinstance(v, str) for v in trigger["metadata"].values())  # KEDA wants strings
    assert float(trigger["metadata"]["targetQueryValue"]) == 1  # one trial per worker
    auth = find(overlay, "TriggerAuthentication", trigger["authenticationRef"]["name"])
    assert auth["apiVersion"] == "keda.sh/v1alpha1"
    [ref] = auth["spec"]["secretTargetRef"]
    assert ref == {"parameter": "connection", "name": "sweep-database", "key": "KEDA_CONNECTION"}


def test_the_keda_query_reads_the_view_the_migration_creates(sqlite_url: str) -> None:
    query = find("gpu-cluster", "ScaledObject", "sweep-worker")["spec"]["triggers"][0]
    statement = query["metadata"]["query"]
    assert f"FROM {queries.WORK_AVAILABLE_VIEW}" in statement
    # It runs on a freshly migrated database and answers one number: 0 with no sweeps.
    engine = make_engine(sqlite_url)
    with engine.connect() as conn:
        assert conn.execute(text(statement)).scalar_one() == 0
    engine.dispose()


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_worker_has_one_gpu_a_long_grace_period_and_a_probe(overlay: str) -> None:
    pod = find(overlay, "Deployment", "sweep-worker")["spec"]["template"]["spec"]
    worker = container(overlay, "sweep-worker")
    assert worker["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert worker["command"][:4] == ["sweep", "worker", "--device", "cuda"]  # one per pod
    assert "--gpus" not in worker["command"]
    # SIGTERM gives the trial back at the next epoch: minutes, not Kubernetes' default 30 s.
    assert pod["terminationGracePeriodSeconds"] >= 120
    assert "livenessProbe" in worker
    if overlay == "gpu-cluster":
        assert pod["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
        assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod[
            "tolerations"
        ]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_api_is_probed_limited_and_unprivileged(overlay: str) -> None:
    api = container(overlay, "sweep-api")
    assert api["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert api["livenessProbe"]["httpGet"]["path"] == "/healthz"
    for name in ("sweep-api", "sweep-worker", "sweep-dashboard"):
        pod = find(overlay, "Deployment", name)["spec"]["template"]["spec"]
        [one] = pod["containers"]
        assert pod["securityContext"]["runAsNonRoot"] is True, name
        assert one["securityContext"]["readOnlyRootFilesystem"] is True, name
        assert one["resources"]["requests"] and one["resources"]["limits"]["memory"], name
        assert {v["mountPath"] for v in one["volumeMounts"]} >= {"/tmp"}, name


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_sweep_process_goes_through_pgbouncer_in_transaction_mode(overlay: str) -> None:
    bouncer = container(overlay, "pgbouncer")
    env = {e["name"]: e.get("value") for e in bouncer["env"]}
    assert env["POOL_MODE"] == "transaction"
    find(overlay, "Service", "pgbouncer")
    job = find(overlay, "Job", "sweep-migrate")["spec"]["template"]["spec"]["containers"]
    sweeps = [container(overlay, n) for n in ("sweep-api", "sweep-worker", "sweep-dashboard")]
    for one in [*sweeps, *job]:
        settings = {e["name"]: e.get("value") for e in one["env"]}
        assert settings["SWEEP_TRANSACTION_POOLER"] == "true", one["name"]


def test_the_migrate_job_upgrades_the_schema() -> None:
    job = find("gpu-cluster", "Job", "sweep-migrate")
    [migrate] = job["spec"]["template"]["spec"]["containers"]
    assert migrate["command"] == ["sweep", "db", "upgrade"]


def test_the_single_node_overlay_runs_postgres_that_the_secret_points_at() -> None:
    find("single-node", "StatefulSet", "postgres")
    secret = find("single-node", "Secret", "sweep-database")
    assert {"SWEEP_DATABASE_URL", "KEDA_CONNECTION", "POSTGRES_HOST"} <= set(secret["data"])
    url = base64.b64decode(secret["data"]["SWEEP_DATABASE_URL"]).decode()
    assert "@pgbouncer:5432/" in url
    assert not any(o["kind"] == "Secret" for o in render("gpu-cluster"))  # the operator's own


@pytest.mark.parametrize("deployment", ["sweep-api", "sweep-worker", "sweep-dashboard"])
def test_each_command_is_a_real_sweep_command(deployment: str) -> None:
    command = container("gpu-cluster", deployment)["command"]
    assert command[0] == "sweep"
    result = subprocess.run(
        [sys.executable, "-m", "sweep", *command[1:], "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
