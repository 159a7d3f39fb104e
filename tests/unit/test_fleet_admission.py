"""The admission policy that keeps the fleet controller's service account to edge agents
(deploy/k8s/base/fleet-admission.yaml), its CEL evaluated with cel-python on what the
controller generates and on what a stolen token would try. (The tests' API server is 1.20, which
has no ValidatingAdmissionPolicy; kubernetes-validate checks the objects' schema.)"""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import celpy
import pytest
import yaml

from facegate.fleet.agents import AgentSettings, Owner, desired_agents
from services.gateway.doors import parse_doors

POLICY_FILE = Path(__file__).resolve().parents[2] / "deploy" / "k8s" / "base" / "fleet-admission.yaml"
POLICY = next(d for d in yaml.safe_load_all(POLICY_FILE.read_text()) if d["kind"] == "ValidatingAdmissionPolicy")
OWNER = Owner("facegate-doors", "0c7d1f0e-1111-2222-3333-444455556666")
SETTINGS = AgentSettings(image="registry.example/facegate:1", gateway="gateway:50050", certificate_issuer="facegate-ca")
FLEET = "system:serviceaccount:facegate:facegate-fleet"


def evaluate(expression: str, activation: dict[str, Any]) -> bool:
    env = celpy.Environment()
    result = env.program(env.compile(expression)).evaluate(
        {name: celpy.json_to_cel(value) for name, value in activation.items()})
    if isinstance(result, celpy.CELEvalError):  # the API server denies on an evaluation error (failurePolicy Fail)
        return False
    return bool(result)


def admitted(obj: dict[str, Any], username: str = FLEET) -> bool:
    request = {"userInfo": {"username": username}}
    if not all(evaluate(c["expression"], {"request": request}) for c in POLICY["spec"]["matchConditions"]):
        return True  # the policy is not about this writer
    return all(evaluate(v["expression"], {"object": obj, "request": request}) for v in POLICY["spec"]["validations"])


def agent_objects(camera: str = "rtsp://cam:$(LOBBY_PASSWORD)@10.0.0.7/stream") -> tuple[dict[str, Any], ...]:
    doors = parse_doors({"doors": [{"id": "lobby", "site": "hq", "camera": camera}]}, calibrated_fars=None)
    agent, = desired_agents(doors, OWNER, SETTINGS)
    return agent.objects


def changed(obj: dict[str, Any], edit: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    copied = copy.deepcopy(obj)
    edit(copied)
    return copied


def test_what_the_controller_generates_is_admitted() -> None:
    deployment, certificate = agent_objects()
    assert admitted(deployment) and admitted(certificate)
    plain_deployment, _ = agent_objects("rtsp://10.0.0.7/stream")
    assert admitted(plain_deployment)


def pod(obj: dict[str, Any]) -> dict[str, Any]:
    return obj["spec"]["template"]["spec"]  # type: ignore[no-any-return]


ATTACKS: dict[str, Callable[[dict[str, Any]], None]] = {
    "a service's name": lambda d: d["metadata"].update(name="gateway"),
    "another Secret as its tls volume": lambda d: pod(d)["volumes"][0]["secret"].update(secretName="gateway-tls"),
    "an extra Secret volume": lambda d: pod(d)["volumes"].append(
        {"name": "key", "secret": {"secretName": "console-token"}}),
    "a projected Secret": lambda d: pod(d)["volumes"].append(
        {"name": "tmp", "projected": {"sources": [{"secret": {"name": "facegate-ca"}}]}}),
    "every key of a Secret as env": lambda d: pod(d)["containers"][0].update(
        envFrom=[{"secretRef": {"name": "facegate-ca"}}]),
    "a key of another Secret": lambda d: pod(d)["containers"][0]["env"][0]["valueFrom"]["secretKeyRef"].update(
        name="facegate-audit-db"),
    "a service account token": lambda d: pod(d).update(automountServiceAccountToken=True),
    "the fleet's own service account": lambda d: pod(d).update(serviceAccountName="facegate-fleet"),
    "an init container": lambda d: pod(d).update(initContainers=[{"name": "x", "image": "busybox"}]),
    "not labelled an agent": lambda d: d["metadata"]["labels"].update({"app.kubernetes.io/name": "gateway"}),
}


@pytest.mark.parametrize("attack", ATTACKS)
def test_the_fleet_cannot_create_a_deployment_that_is_not_an_edge_agent(attack: str) -> None:
    deployment, _ = agent_objects()
    assert not admitted(changed(deployment, ATTACKS[attack]))


CERTIFICATE_ATTACKS: dict[str, Callable[[dict[str, Any]], None]] = {
    "a service's identity": lambda c: c["spec"].update(uris=["spiffe://facegate/service/gateway"]),
    "a user's identity": lambda c: c["spec"].update(uris=["spiffe://facegate/user/admin"]),
    "two identities": lambda c: c["spec"]["uris"].append("spiffe://facegate/hq/camera/other"),
    "a server certificate": lambda c: c["spec"]["usages"].append("server auth"),
    "a DNS name": lambda c: c["spec"].update(dnsNames=["gateway.facegate.svc"]),
    "a CA": lambda c: c["spec"].update(isCA=True),
    "another Secret": lambda c: c["spec"].update(secretName="gateway-tls"),
}


@pytest.mark.parametrize("attack", CERTIFICATE_ATTACKS)
def test_the_fleet_can_only_ask_for_camera_certificates(attack: str) -> None:
    _, certificate = agent_objects()
    assert not admitted(changed(certificate, CERTIFICATE_ATTACKS[attack]))


def test_the_policy_leaves_every_other_writer_alone() -> None:
    deployment, _ = agent_objects()
    assert admitted(changed(deployment, ATTACKS["a service's name"]), username="system:serviceaccount:kube-system:x")
