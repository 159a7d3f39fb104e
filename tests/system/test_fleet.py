"""The fleet controller (`facegate fleet`) against a real kube-apiserver, etcd and controller
manager (facegate/harness/kube.py), running as its own processes with the service account,
Role and RoleBinding the prod overlay renders (deploy/k8s/base/fleet.yaml and the cert-manager
component's rule): the permissions it ships with, for real."""

from __future__ import annotations

import base64
import copy
import json
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
import yaml
from kubernetes import client
from kubernetes.client.rest import ApiException

from facegate.fleet.agents import DOOR_LABEL, SITE_LABEL
from facegate.harness.kube import KubeCluster
from facegate.harness.stack import free_port

REPO = Path(__file__).resolve().parents[2]
PROD = REPO / "deploy" / "k8s" / "overlays" / "prod"
ACCOUNT = "facegate-fleet"
T = TypeVar("T")

DOORS = """
sites:
  hq: {timezone: Europe/Paris}
  lab: {}
doors:
  - {id: hq-lobby, site: hq, camera: "rtsp://cam:$(LOBBY_PASSWORD)@10.0.0.7/stream"}
  - {id: hq-back, site: hq}
  - {id: lab-bench, site: lab, camera: "rtsp://10.0.1.9/stream"}
"""


def eventually(check: Callable[[], T | None], timeout: float = 30.0, what: str = "") -> T:
    """`check()`'s first truthy value, polled until `timeout` (a deadline, never a bare sleep)."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout:.0f} s: {what}")
        time.sleep(0.2)


class Fleet:
    """One `facegate fleet` replica as a process."""

    def __init__(self, kubeconfig: Path, namespace: str, identity: str, log_dir: Path, *extra: str) -> None:
        self.identity, self.metrics_port, self.health_port = identity, free_port(), free_port()
        self.log_path = log_dir / f"{identity}.log"
        command = [str(Path(sys.executable).parent / "facegate"), "fleet", "--kubeconfig", str(kubeconfig),
                   "--namespace", namespace, "--identity", identity, "--agent-image", "registry.example/facegate:1",
                   "--gateway", "gateway:50050", "--lease-seconds", "5", "--renew-seconds", "3",
                   "--retry-seconds", "1", "--resync-seconds", "3", "--metrics-host", "127.0.0.1",
                   "--metrics-port", str(self.metrics_port), "--health-port", str(self.health_port), *extra]
        with self.log_path.open("w") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def metric(self, series: str) -> float:
        """A sample of its /metrics (0 when the series is not there yet)."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5) as reply:
            for line in reply.read().decode().splitlines():
                if line.startswith(series + " "):
                    return float(line.rsplit(" ", 1)[1])
        return 0.0

    def healthz(self) -> tuple[int, str]:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.health_port}/healthz", timeout=5) as reply:
            return reply.status, reply.read().decode().strip()

    def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
        return self.process.wait(timeout=20)


@pytest.fixture
def cluster(kube_cluster: KubeCluster) -> KubeCluster:
    return kube_cluster


@pytest.fixture
def admin(cluster: KubeCluster) -> client.ApiClient:
    return cluster.api_client()


@pytest.fixture(scope="module")
def fleet_rbac() -> list[dict[str, Any]]:
    """The fleet's ServiceAccount, Role and RoleBinding as `kubectl kustomize` renders prod."""
    rendered = subprocess.run([str(Path(sys.executable).parent / "kubectl"), "kustomize", str(PROD)],
                              check=True, capture_output=True, text=True).stdout
    found = [doc for doc in yaml.safe_load_all(rendered)
             if doc and doc["kind"] in ("ServiceAccount", "Role", "RoleBinding") and doc["metadata"]["name"] == ACCOUNT]
    assert sorted(doc["kind"] for doc in found) == ["Role", "RoleBinding", "ServiceAccount"]
    return found


@pytest.fixture
def namespace(admin: client.ApiClient, fleet_rbac: list[dict[str, Any]]) -> Iterator[str]:
    """A namespace of its own per test, holding the fleet's ServiceAccount, Role and RoleBinding
    exactly as shipped."""
    name = f"fleet-{uuid.uuid4().hex[:8]}"
    core = client.CoreV1Api(admin)
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    rbac = client.RbacAuthorizationV1Api(admin)
    for doc in copy.deepcopy(fleet_rbac):
        doc["metadata"]["namespace"] = name
        if doc["kind"] == "ServiceAccount":
            core.create_namespaced_service_account(name, doc)
        elif doc["kind"] == "Role":
            rbac.create_namespaced_role(name, doc)
        else:
            for subject in doc["subjects"]:
                subject["namespace"] = name
            rbac.create_namespaced_role_binding(name, doc)
    yield name
    core.delete_namespace(name)


@pytest.fixture
def fleet_kubeconfig(cluster: KubeCluster, admin: client.ApiClient, namespace: str, tmp_path: Path) -> Path:
    """A kubeconfig holding the fleet service account's own token (made by the controller
    manager), as a pod of that account would have."""
    core = client.CoreV1Api(admin)

    def token() -> str | None:
        account = core.read_namespaced_service_account(ACCOUNT, namespace)
        for ref in account.secrets or []:
            secret = core.read_namespaced_secret(ref.name, namespace)
            if secret.data and "token" in secret.data:
                return base64.b64decode(secret.data["token"]).decode()
        return None

    path = tmp_path / "fleet.kubeconfig"
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config",
        "clusters": [{"name": "test",
                      "cluster": {"server": cluster.server, "certificate-authority": str(cluster.ca_file)}}],
        "users": [{"name": ACCOUNT, "user": {"token": eventually(token, what="the service account's token")}}],
        "contexts": [{"name": "fleet", "context": {"cluster": "test", "user": ACCOUNT}}],
        "current-context": "fleet",
    }))
    return path


@pytest.fixture
def start_fleet(fleet_kubeconfig: Path, namespace: str, tmp_path: Path) -> Iterator[Callable[..., Fleet]]:
    started: list[Fleet] = []

    def start(identity: str, *extra: str) -> Fleet:
        fleet = Fleet(fleet_kubeconfig, namespace, identity, tmp_path, *extra)
        started.append(fleet)
        return fleet

    yield start
    for fleet in started:
        fleet.stop(signal.SIGKILL)
        print(f"--- {fleet.identity}'s log (shown when a test fails) ---\n{fleet.log()[-3000:]}")


def put_doors(admin: client.ApiClient, namespace: str, text: str) -> client.V1ConfigMap:
    core = client.CoreV1Api(admin)
    body = client.V1ConfigMap(metadata=client.V1ObjectMeta(name="facegate-doors"), data={"doors.yaml": text})
    try:
        return core.replace_namespaced_config_map("facegate-doors", namespace, body)
    except ApiException as exc:
        if exc.status != 404:
            raise
        return core.create_namespaced_config_map(namespace, body)


def agents(admin: client.ApiClient, namespace: str) -> dict[str, Any]:
    """door id -> its agent Deployment."""
    found = client.AppsV1Api(admin).list_namespaced_deployment(namespace)
    return {(d.metadata.annotations or {}).get("facegate.io/door-id"): d for d in found.items}


def status(admin: client.ApiClient, namespace: str) -> dict[str, str]:
    try:
        return client.CoreV1Api(admin).read_namespaced_config_map("facegate-fleet-status", namespace).data or {}
    except ApiException:
        return {}


def events(admin: client.ApiClient, namespace: str) -> list[tuple[str, str, str]]:
    found = client.CoreV1Api(admin).list_namespaced_event(namespace).items
    return [(e.type, e.reason, e.message) for e in found]


def holder(admin: client.ApiClient, namespace: str) -> str | None:
    try:
        lease = client.CoordinationV1Api(admin).read_namespaced_lease("facegate-fleet", namespace)
    except ApiException:
        return None
    return lease.spec.holder_identity if lease.spec else None


def args_of(deployment: Any) -> list[str]:
    return list(deployment.spec.template.spec.containers[0].args)


def test_each_door_camera_gets_an_agent_owned_by_the_doors_and_labelled_by_site_and_door(
        admin: client.ApiClient, namespace: str, start_fleet: Callable[..., Fleet]) -> None:
    doors = put_doors(admin, namespace, DOORS)
    start_fleet("fleet-a")
    found = eventually(lambda: (a := agents(admin, namespace)) and len(a) == 2 and a, what="two agents")
    assert set(found) == {"hq-lobby", "lab-bench"}  # hq-back has no camera
    lobby = found["hq-lobby"]
    assert lobby.metadata.labels[SITE_LABEL] == "hq" and lobby.metadata.labels[DOOR_LABEL] == "hq-lobby"
    owner, = lobby.metadata.owner_references
    assert (owner.kind, owner.name, owner.uid) == ("ConfigMap", "facegate-doors", doors.metadata.uid)
    assert "rtsp://cam:$(LOBBY_PASSWORD)@10.0.0.7/stream" in args_of(lobby)
    # The controller manager gives each a ReplicaSet and a pod (no node here: it stays Pending).
    report = eventually(lambda: (s := status(admin, namespace)).get("summary", "").startswith("2 agents") and s,
                        what="the status ConfigMap")
    assert report["leader"] == "fleet-a" and report["doors_valid"] == "true"
    lines = {line["door"]: line for line in json.loads(report["agents.json"])}
    assert lines["hq-lobby"]["source"] == "rtsp://***:$(LOBBY_PASSWORD)@10.0.0.7/stream"
    assert lines["hq-lobby"]["state"] == "starting" and lines["hq-lobby"]["ready"] == "0/1"
    assert eventually(lambda: client.AppsV1Api(admin).list_namespaced_replica_set(namespace).items,
                      what="ReplicaSets of the agents")
    created = [e for e in events(admin, namespace) if e[1] == "AgentCreated"]
    assert len(created) == 2


def test_editing_the_doors_file_updates_adds_and_removes_agents(
        admin: client.ApiClient, namespace: str, start_fleet: Callable[..., Fleet]) -> None:
    put_doors(admin, namespace, DOORS)
    start_fleet("fleet-a")
    eventually(lambda: len(agents(admin, namespace)) == 2, what="two agents")
    put_doors(admin, namespace, DOORS.replace("rtsp://10.0.1.9/stream", "rtsp://10.0.1.10/stream")
              .replace("  - {id: hq-lobby, site: hq, camera: \"rtsp://cam:$(LOBBY_PASSWORD)@10.0.0.7/stream\"}\n", "")
              .replace("{id: hq-back, site: hq}", "{id: hq-back, site: hq, camera: \"0\"}"))
    found = eventually(lambda: (a := agents(admin, namespace)).keys() == {"hq-back", "lab-bench"}
                       and "rtsp://10.0.1.10/stream" in args_of(a["lab-bench"]) and a,
                       what="agents following the edit")
    assert "rtsp://10.0.1.10/stream" in args_of(found["lab-bench"])
    # Each Event is recorded just after its change is applied: wait for them, not only the changes.
    eventually(lambda: {"AgentCreated", "AgentUpdated", "AgentDeleted"} <= {e[1] for e in events(admin, namespace)},
               what="an Event for each change")


def test_a_hand_edit_of_an_agent_is_undone_at_the_next_resync(
        admin: client.ApiClient, namespace: str, start_fleet: Callable[..., Fleet]) -> None:
    put_doors(admin, namespace, DOORS)
    start_fleet("fleet-a")
    lobby = eventually(lambda: agents(admin, namespace).get("hq-lobby"), what="the lobby's agent")
    client.AppsV1Api(admin).patch_namespaced_deployment(lobby.metadata.name, namespace, {
        "spec": {"template": {"spec": {"containers": [{"name": "agent", "image": "someone/else:latest"}]}}}})
    eventually(lambda: agents(admin, namespace)["hq-lobby"].spec.template.spec.containers[0].image
               == "registry.example/facegate:1", what="the image put back by the resync (3 s)")


@pytest.mark.parametrize("broken, why", [
    (DOORS.replace("site: lab,", "site: nowhere,"), "nowhere"),
    ("", "no `doors:` list"),  # a blank value (a half-done edit) is not "no doors": that is `doors: []`
    ("# doors to come\n", "no `doors:` list"),
])
def test_an_invalid_or_empty_doors_file_leaves_the_agents_as_they_are_and_says_why(
        admin: client.ApiClient, namespace: str, start_fleet: Callable[..., Fleet], broken: str, why: str) -> None:
    put_doors(admin, namespace, DOORS)
    start_fleet("fleet-a")
    eventually(lambda: len(agents(admin, namespace)) == 2, what="two agents")
    put_doors(admin, namespace, broken)
    report = eventually(lambda: (s := status(admin, namespace)).get("doors_valid") == "false" and s,
                        what="the status saying the file is invalid")
    assert why in report["error"] and "agents left as they are" in report["error"]
    warning = eventually(lambda: [e for e in events(admin, namespace) if e[1] == "InvalidDoors"],
                         what="a Warning event")
    assert warning[0][0] == "Warning" and why in warning[0][2]
    time.sleep(4)  # more than a resync: the agents must still be there
    assert set(agents(admin, namespace)) == {"hq-lobby", "lab-bench"}


def test_a_door_whose_camera_url_does_not_parse_keeps_its_agent_and_the_others_carry_on(
        admin: client.ApiClient, namespace: str, start_fleet: Callable[..., Fleet]) -> None:
    put_doors(admin, namespace, DOORS)
    start_fleet("fleet-a")
    eventually(lambda: len(agents(admin, namespace)) == 2, what="two agents")
    put_doors(admin, namespace, DOORS.replace("rtsp://10.0.1.9/stream", "rtsp://admin:pw@10.0.1.9:55x/stream")
              .replace("{id: hq-back, site: hq}", "{id: hq-back, site: hq, camera: \"0\"}"))
    eventually(lambda: "hq-back" in agents(admin, namespace), what="the other doors still reconciled")
    warning = eventually(lambda: [e for e in events(admin, namespace) if e[1] == "AgentNotPossible"],
                         what="a Warning event for the bad URL")
    assert "lab-bench" in warning[0][2] and "pw" not in warning[0][2]
    assert "rtsp://10.0.1.9/stream" in args_of(agents(admin, namespace)["lab-bench"])  # kept as it was
    # The pass writes its status after its events, so the status is waited for too.
    def lab_bench_failed() -> dict[str, str] | None:
        lines = {line["door"]: line for line in json.loads(status(admin, namespace).get("agents.json", "[]"))}
        return lines["lab-bench"] if lines.get("lab-bench", {}).get("state") == "failed" else None

    line = eventually(lab_bench_failed, what="the status saying lab-bench's agent failed")
    assert "not a valid URL" in line["message"]


def test_deleting_the_doors_configmap_deletes_every_agent(
        admin: client.ApiClient, namespace: str, start_fleet: Callable[..., Fleet]) -> None:
    put_doors(admin, namespace, DOORS)
    start_fleet("fleet-a")
    eventually(lambda: len(agents(admin, namespace)) == 2, what="two agents")
    client.CoreV1Api(admin).delete_namespaced_config_map("facegate-doors", namespace)
    eventually(lambda: not agents(admin, namespace), what="the garbage collector deleting the agents")


def test_only_the_lease_holder_acts_and_a_killed_one_is_replaced(
        admin: client.ApiClient, namespace: str, start_fleet: Callable[..., Fleet]) -> None:
    put_doors(admin, namespace, DOORS)
    first = start_fleet("fleet-a")
    eventually(lambda: holder(admin, namespace) == "fleet-a", what="fleet-a holding the lease")
    second = start_fleet("fleet-b")
    eventually(lambda: len(agents(admin, namespace)) == 2, what="two agents")
    time.sleep(3)  # the follower has had time to act, were it going to
    assert holder(admin, namespace) == "fleet-a"
    assert "applied agent" not in second.log()
    assert (first.metric("facegate_fleet_leader"), second.metric("facegate_fleet_leader")) == (1.0, 0.0)
    assert first.metric('facegate_fleet_reconciles_total{result="ok"}') >= 1
    assert second.metric('facegate_fleet_reconciles_total{result="ok"}') == 0
    assert first.healthz() == second.healthz() == (200, "ok")
    assert status(admin, namespace)["leader"] == "fleet-a"
    first.stop(signal.SIGKILL)  # no chance to hand over: fleet-b waits out the lease (5 s)
    eventually(lambda: holder(admin, namespace) == "fleet-b", timeout=20, what="fleet-b taking the lease")
    put_doors(admin, namespace, DOORS.replace("{id: hq-back, site: hq}", "{id: hq-back, site: hq, camera: \"0\"}"))
    eventually(lambda: "hq-back" in agents(admin, namespace), what="the new leader acting on an edit")
    assert eventually(lambda: status(admin, namespace).get("leader") == "fleet-b", what="status by fleet-b")


def test_a_leader_that_stops_hands_the_lease_over_at_once(
        admin: client.ApiClient, namespace: str, start_fleet: Callable[..., Fleet]) -> None:
    put_doors(admin, namespace, DOORS)
    first = start_fleet("fleet-a")
    eventually(lambda: holder(admin, namespace) == "fleet-a", what="fleet-a holding the lease")
    start_fleet("fleet-b")
    time.sleep(1.5)
    stopped = time.monotonic()
    assert first.stop(signal.SIGTERM) == 0
    eventually(lambda: holder(admin, namespace) == "fleet-b", timeout=20, what="fleet-b taking the lease")
    assert time.monotonic() - stopped < 5, "released: no need to wait out the 5 s lease"


def test_with_an_issuer_each_agent_gets_a_certificate_naming_its_door(
        admin: client.ApiClient, cluster: KubeCluster, namespace: str, start_fleet: Callable[..., Fleet]) -> None:
    install_certificate_crd(admin)
    put_doors(admin, namespace, DOORS)
    start_fleet("fleet-a", "--issuer", "facegate-ca")
    custom = client.CustomObjectsApi(admin)

    def certificates() -> dict[str, Any]:
        found = custom.list_namespaced_custom_object("cert-manager.io", "v1", namespace, "certificates")["items"]
        return {c["metadata"]["annotations"]["facegate.io/door-id"]: c for c in found}

    found = eventually(lambda: len(c := certificates()) == 2 and c, what="two Certificates")
    assert found["hq-lobby"]["spec"]["uris"] == ["spiffe://facegate/hq/camera/hq-lobby"]
    assert found["hq-lobby"]["spec"]["issuerRef"] == {"name": "facegate-ca", "kind": "Issuer"}
    put_doors(admin, namespace, DOORS.replace("  - {id: hq-back, site: hq}\n", "")
              .replace("  - {id: lab-bench, site: lab, camera: \"rtsp://10.0.1.9/stream\"}\n", ""))
    eventually(lambda: set(certificates()) == {"hq-lobby"}, what="the removed door's Certificate deleted")


def test_the_fleet_account_can_do_what_it_needs_and_nothing_more(
        cluster: KubeCluster, fleet_kubeconfig: Path, namespace: str) -> None:
    from facegate.fleet.controller import api_client

    fleet = api_client(str(fleet_kubeconfig))
    core, apps = client.CoreV1Api(fleet), client.AppsV1Api(fleet)
    assert apps.list_namespaced_deployment(namespace).items == []
    for forbidden in (lambda: core.list_namespaced_secret(namespace),
                      lambda: core.list_namespaced_pod(namespace),
                      lambda: apps.list_namespaced_deployment("default"),
                      lambda: core.patch_namespaced_config_map("facegate-doors", namespace, {"data": {}}),
                      lambda: core.read_namespaced_config_map("facegate-config", namespace),
                      lambda: core.list_namespaced_config_map(namespace)):
        with pytest.raises(ApiException) as denied:
            forbidden()
        assert denied.value.status == 403


def install_certificate_crd(admin: client.ApiClient) -> None:
    """cert-manager's Certificate kind, its schema left open: enough to store and list them
    (the real CRD validates more; cert-manager itself does not run here)."""
    crd = {
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "certificates.cert-manager.io"},
        "spec": {"group": "cert-manager.io", "scope": "Namespaced",
                 "names": {"plural": "certificates", "singular": "certificate", "kind": "Certificate"},
                 "versions": [{"name": "v1", "served": True, "storage": True,
                               "schema": {"openAPIV3Schema": {"type": "object",
                                                              "x-kubernetes-preserve-unknown-fields": True}}}]},
    }
    extensions = client.ApiextensionsV1Api(admin)
    try:
        extensions.create_custom_resource_definition(crd)
    except ApiException as exc:
        if exc.status != 409:
            raise

    def established() -> bool:
        found = extensions.read_custom_resource_definition("certificates.cert-manager.io")
        return any(c.type == "Established" and c.status == "True" for c in (found.status.conditions or []))

    eventually(established, what="the Certificate CRD established")


def test_a_leader_whose_renewals_are_refused_stops_acting_before_its_lease_runs_out(
        admin: client.ApiClient, namespace: str, fleet_kubeconfig: Path) -> None:
    from facegate.fleet.controller import api_client
    from facegate.fleet.leadership import Leadership

    leadership = Leadership(api_client(str(fleet_kubeconfig)), namespace, "facegate-fleet", "fleet-x",
                            lease=5, renew=3, retry=1)
    leadership.start()
    eventually(leadership.is_leading, what="leading")
    client.RbacAuthorizationV1Api(admin).delete_namespaced_role_binding(ACCOUNT, namespace)  # renewals now 403
    refused = time.monotonic()
    eventually(lambda: not leadership.is_leading(), timeout=10, what="no longer leading")
    stopped = time.monotonic() - refused
    assert stopped < 3 + 0.5, f"acted {stopped:.1f} s after its last renewal; another may lead after 5 s"
    eventually(leadership.lost.is_set, timeout=10, what="the loss reported (the process exits on it)")
    eventually(lambda: not leadership.alive(), timeout=10, what="the election thread ended")


def test_an_unreachable_api_server_keeps_the_election_running_with_nobody_leading(tmp_path: Path) -> None:
    from facegate.fleet.leadership import Leadership

    configuration = client.Configuration(host=f"https://127.0.0.1:{free_port()}")  # nothing listens there
    leadership = Leadership(client.ApiClient(configuration), "facegate", "facegate-fleet", "fleet-x",
                            lease=5, renew=3, retry=1)
    leadership.start()
    time.sleep(3)  # several attempts, each a connection refused
    assert leadership.alive() and not leadership.is_leading() and not leadership.lost.is_set()
    leadership.release()
