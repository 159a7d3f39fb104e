"""The rendered overlays applied, for real, to the tests' Kubernetes API server (1.20.2, the
newest that builds here: facegate/harness/kube.py). The current schemas are checked offline by
`make manifests-check` (kubernetes-validate 1.33); this shows the objects are accepted by a real
server's server-side apply (types, list keys, RBAC references) and that what they start behaves:
Deployments get their ReplicaSets. What 1.20 cannot hold is named below, not silently dropped."""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client
from kubernetes.dynamic import DynamicClient
from kubernetes.dynamic.exceptions import ResourceNotFoundError

from facegate.harness.kube import KubeCluster

OVERLAYS = Path(__file__).resolve().parents[2] / "deploy" / "k8s" / "overlays"
# Kinds 1.20 does not serve (newer API versions, and custom resources whose operators are not
# installed here): checked offline only.
NOT_SERVED = {
    ("policy/v1", "PodDisruptionBudget"),  # 1.21
    ("autoscaling/v2", "HorizontalPodAutoscaler"),  # 1.23
    ("admissionregistration.k8s.io/v1", "ValidatingAdmissionPolicy"),  # 1.30 (tests/unit/test_fleet_admission.py)
    ("admissionregistration.k8s.io/v1", "ValidatingAdmissionPolicyBinding"),
    ("cert-manager.io/v1", "Certificate"), ("cert-manager.io/v1", "Issuer"),
    ("monitoring.coreos.com/v1", "PodMonitor"), ("monitoring.coreos.com/v1", "ServiceMonitor"),
    ("monitoring.coreos.com/v1", "PrometheusRule"),
    ("postgresql.cnpg.io/v1", "Cluster"),
}


def render(overlay: str) -> list[dict[str, Any]]:
    kubectl = Path(sys.executable).parent / "kubectl"
    out = subprocess.run([str(kubectl), "kustomize", str(OVERLAYS / overlay)], check=True, capture_output=True,
                         text=True).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc]


def into_namespace(docs: list[dict[str, Any]], namespace: str) -> None:
    """Move the overlay's objects from `facegate` to `namespace` (tests keep apart by namespace)."""
    for doc in docs:
        if doc["kind"] == "Namespace":
            doc["metadata"]["name"] = namespace
        elif "namespace" in doc["metadata"]:
            doc["metadata"]["namespace"] = namespace
        for subject in doc.get("subjects", []):
            if subject.get("namespace") == "facegate":
                subject["namespace"] = namespace


def without_newer_fields(doc: dict[str, Any]) -> dict[str, Any]:
    """`doc` without the pod fields newer than 1.20 (server-side apply refuses undeclared fields):
    gRPC probes (1.24), checked as TCP connections instead, and topology spread's matchLabelKeys (1.27)."""
    pod = doc.get("spec", {}).get("template", {}).get("spec")
    if pod is None:
        return doc
    for container in pod.get("containers", []) + pod.get("initContainers", []):
        for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
            if "grpc" in container.get(probe, {}):
                # 1.20 has no gRPC probe: the same port checked for a TCP connection instead.
                container[probe] = {**{k: v for k, v in container[probe].items() if k != "grpc"},
                                    "tcpSocket": {"port": container[probe]["grpc"]["port"]}}
    for constraint in pod.get("topologySpreadConstraints", []):
        constraint.pop("matchLabelKeys", None)
    return doc


@pytest.mark.parametrize("overlay", sorted(p.name for p in OVERLAYS.iterdir() if (p / "kustomization.yaml").exists()))
def test_every_object_the_server_serves_is_accepted_by_server_side_apply(kube_cluster: KubeCluster,
                                                                          overlay: str) -> None:
    docs = render(overlay)
    namespace = f"{overlay}-{uuid.uuid4().hex[:6]}"
    into_namespace(docs, namespace)
    dynamic = DynamicClient(kube_cluster.api_client())
    applied, unserved = [], set()
    for doc in sorted(docs, key=lambda d: d["kind"] != "Namespace"):  # the namespace first
        kind = (doc["apiVersion"], doc["kind"])
        try:
            resource = dynamic.resources.get(api_version=doc["apiVersion"], kind=doc["kind"])
        except ResourceNotFoundError:
            unserved.add(kind)
            continue
        resource.server_side_apply(body=without_newer_fields(doc), namespace=doc["metadata"].get("namespace"),
                                   field_manager="facegate-tests", force_conflicts=True)
        applied.append(kind)
    assert unserved <= NOT_SERVED, f"kinds this server should have served: {unserved - NOT_SERVED}"
    assert {"ServiceAccount", "Role", "RoleBinding", "ConfigMap", "Deployment", "Service", "NetworkPolicy"} \
        <= {kind for _, kind in applied}
    apps = client.AppsV1Api(kube_cluster.api_client())
    deployments = {d.metadata.name for d in apps.list_namespaced_deployment(namespace).items}
    assert {"detector", "embedder", "matcher", "gateway", "facegate-fleet"} <= deployments
    assert "console" in {s.metadata.name for s in apps.list_namespaced_stateful_set(namespace).items}
    deadline = time.monotonic() + 30
    while True:  # the controller manager makes each Deployment's ReplicaSet
        owners = {r.metadata.owner_references[0].name for r in apps.list_namespaced_replica_set(namespace).items}
        if deployments <= owners:
            break
        assert time.monotonic() < deadline, f"no ReplicaSet for {sorted(deployments - owners)}"
        time.sleep(0.5)
    client.CoreV1Api(kube_cluster.api_client()).delete_namespace(namespace)


def test_prod_runs_several_gateways_and_two_fleet_controllers_on_the_server() -> None:
    docs = {(d["kind"], d["metadata"]["name"]): d for d in render("prod")}
    assert docs[("Deployment", "facegate-fleet")]["spec"]["replicas"] == 2
    hpa = docs[("HorizontalPodAutoscaler", "gateway")]
    assert hpa["spec"]["minReplicas"] >= 2
