"""The Kubernetes cluster the fleet controller's tests run against (facegate/harness/kube.py) is
the real thing: a 1.20.2 API server on etcd that stores, applies server-side, watches and
enforces RBAC, and a controller manager that turns Deployments into ReplicaSets and collects
garbage by owner reference. Each test works in a namespace of its own."""

from __future__ import annotations

import contextlib
import ipaddress
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest
from kubernetes import client, watch
from kubernetes.client.rest import ApiException

T = TypeVar("T")
FIELD_MANAGER = "facegate-fleet-test"


def eventually(probe: Callable[[], T | None], timeout: float = 30.0, what: str = "") -> T:
    """`probe()`'s first result that is not None (or false), polling until `timeout`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = probe()
        if result:
            return result
        time.sleep(0.2)
    raise AssertionError(f"not within {timeout} s: {what}")


def deployment(name: str) -> dict:
    """A Deployment as the fleet controller would apply it (the image is never pulled: no kubelet)."""
    labels = {"app.kubernetes.io/name": name}
    return {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "labels": labels},
        "spec": {
            "replicas": 2, "selector": {"matchLabels": labels},
            "template": {"metadata": {"labels": labels},
                         "spec": {"containers": [{"name": "gateway", "image": "facegate/gateway:test"}]}},
        },
    }


@pytest.fixture
def admin(kube_cluster) -> Iterator[client.ApiClient]:
    with kube_cluster.api_client() as api:
        yield api


@pytest.fixture
def namespace(admin) -> Iterator[str]:
    name = f"test-{uuid.uuid4().hex[:10]}"
    client.CoreV1Api(admin).create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    yield name
    client.CoreV1Api(admin).delete_namespace(name)


def test__the_api_server_is_kubernetes_1_20_on_loopback_with_verified_tls(kube_cluster, admin):
    version = client.VersionApi(admin).get_code()

    assert version.git_version == "v1.20.2"
    assert kube_cluster.server.startswith("https://127.0.0.1:")
    with client.ApiClient(client.Configuration(host=kube_cluster.server)) as untrusting:  # the system's CAs only
        with pytest.raises(Exception, match="CERTIFICATE_VERIFY_FAILED"):
            client.VersionApi(untrusting).get_code(_request_timeout=5)


def test__no_process_of_the_cluster_listens_anywhere_but_127_0_0_1(kube_cluster):
    addresses = {name: listening_addresses(pid) for name, pid in kube_cluster.pids().items()}

    assert set(addresses) == {"etcd", "kube-apiserver", "kube-controller-manager"}
    assert addresses["kube-apiserver"] == {f"127.0.0.1:{kube_cluster.port}"}
    assert all(address.startswith("127.0.0.1:") for found in addresses.values() for address in found), addresses


def test__a_configmap_created_in_a_namespace_reads_back(admin, namespace):
    core = client.CoreV1Api(admin)

    core.create_namespaced_config_map(namespace, client.V1ConfigMap(
        metadata=client.V1ObjectMeta(name="doors"), data={"front": "open"}))

    assert core.read_namespaced_config_map("doors", namespace).data == {"front": "open"}
    assert [item.metadata.name for item in core.list_namespaced_config_map(namespace).items
            if item.metadata.name == "doors"] == ["doors"]


def test__a_server_side_applied_deployment_reads_back_owned_by_its_field_manager(admin, namespace):
    apps = client.AppsV1Api(admin)

    apps.patch_namespaced_deployment("gateway", namespace, deployment("gateway"), field_manager=FIELD_MANAGER,
                                     _content_type="application/apply-patch+yaml")
    changed = deployment("gateway")
    changed["spec"]["replicas"] = 3
    apps.patch_namespaced_deployment("gateway", namespace, changed, field_manager=FIELD_MANAGER,
                                     _content_type="application/apply-patch+yaml")

    stored = apps.read_namespaced_deployment("gateway", namespace)
    assert stored.spec.replicas == 3
    assert stored.spec.template.spec.containers[0].image == "facegate/gateway:test"
    assert [(field.manager, field.operation) for field in stored.metadata.managed_fields
            if field.manager == FIELD_MANAGER] == [(FIELD_MANAGER, "Apply")]


def test__a_second_field_manager_applying_a_field_it_does_not_own_is_a_conflict(admin, namespace):
    apps = client.AppsV1Api(admin)
    apps.patch_namespaced_deployment("gateway", namespace, deployment("gateway"), field_manager=FIELD_MANAGER,
                                     _content_type="application/apply-patch+yaml")
    other = deployment("gateway")
    other["spec"]["replicas"] = 5

    with pytest.raises(ApiException) as refused:
        apps.patch_namespaced_deployment("gateway", namespace, other, field_manager="someone-else",
                                         _content_type="application/apply-patch+yaml")

    assert refused.value.status == 409


def test__a_watch_from_a_resource_version_sees_the_configmap_created_after_it(admin, namespace):
    core = client.CoreV1Api(admin)
    since = core.list_namespaced_config_map(namespace).metadata.resource_version
    core.create_namespaced_config_map(namespace, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="seen")))

    events = watch.Watch().stream(core.list_namespaced_config_map, namespace, resource_version=since,
                                  timeout_seconds=10)
    first = next(event for event in events if event["object"].metadata.name == "seen")

    assert first["type"] == "ADDED"


def test__a_user_nothing_binds_is_forbidden_until_a_role_binding_grants_it(kube_cluster, admin, namespace):
    with kube_cluster.api_client("nobody") as nobody:
        with pytest.raises(ApiException) as denied:
            client.CoreV1Api(nobody).list_namespaced_config_map(namespace)
        assert denied.value.status == 403

        rbac = client.RbacAuthorizationV1Api(admin)
        rbac.create_namespaced_role(namespace, client.V1Role(
            metadata=client.V1ObjectMeta(name="read-configmaps"),
            rules=[client.V1PolicyRule(api_groups=[""], resources=["configmaps"], verbs=["get", "list"])]))
        rbac.create_namespaced_role_binding(namespace, client.V1RoleBinding(
            metadata=client.V1ObjectMeta(name="nobody-reads-configmaps"),
            role_ref=client.V1RoleRef(api_group="rbac.authorization.k8s.io", kind="Role", name="read-configmaps"),
            subjects=[client.RbacV1Subject(api_group="rbac.authorization.k8s.io", kind="User", name="nobody")]))

        eventually(lambda: may_list_configmaps(nobody, namespace), 10, "the binding lets nobody list configmaps")
        with pytest.raises(ApiException) as still_denied:  # only what the role grants
            client.CoreV1Api(nobody).list_namespaced_secret(namespace)
        assert still_denied.value.status == 403


def test__a_wrong_token_is_unauthorized(kube_cluster):
    configuration = client.Configuration(host=kube_cluster.server, api_key={"authorization": "not-a-token"},
                                         api_key_prefix={"authorization": "Bearer"})
    configuration.ssl_ca_cert = str(kube_cluster.ca_file)
    with client.ApiClient(configuration) as stranger, pytest.raises(ApiException) as refused:
        client.CoreV1Api(stranger).list_namespace()

    assert refused.value.status == 401


def test__a_custom_resource_is_created_and_server_side_applied_and_the_server_stays_up(admin, namespace):
    """Writing a custom resource makes the server encode an unstructured object (nested maps) with
    json-iterator; built against reflect2 < 1.0.2 with Go >= 1.18 that killed the API server
    (`fatal error: fault` in runtime.mapiternext): tools/build_kube.sh builds with reflect2 1.0.2."""
    custom = client.CustomObjectsApi(admin)
    with custom_resource_definition(admin, "widgets.test.facegate.io"):
        custom.create_namespaced_custom_object(GROUP, "v1", namespace, "widgets", widget("created", size=1))
        custom.patch_namespaced_custom_object(GROUP, "v1", namespace, "widgets", "applied", widget("applied", size=2),
                                              field_manager=FIELD_MANAGER,
                                              _content_type="application/apply-patch+yaml")
        custom.patch_namespaced_custom_object(GROUP, "v1", namespace, "widgets", "applied", widget("applied", size=3),
                                              field_manager=FIELD_MANAGER,
                                              _content_type="application/apply-patch+yaml")

        stored = {item["metadata"]["name"]: item
                  for item in custom.list_namespaced_custom_object(GROUP, "v1", namespace, "widgets")["items"]}
        assert {name: item["spec"]["size"] for name, item in stored.items()} == {"created": 1, "applied": 3}
        assert stored["applied"]["spec"]["labels"] == {"b": {"nested": ["x", 3]}, "a": "first"}
        assert [(field["manager"], field["operation"]) for field in stored["applied"]["metadata"]["managedFields"]
                if field["manager"] == FIELD_MANAGER] == [(FIELD_MANAGER, "Apply")]
    assert client.VersionApi(admin).get_code().git_version == "v1.20.2"  # still serving


GROUP = "test.facegate.io"


def widget(name: str, size: int) -> dict:
    """A custom object whose spec holds maps in maps, which the server encodes with sorted keys."""
    return {"apiVersion": f"{GROUP}/v1", "kind": "Widget", "metadata": {"name": name, "labels": {"size": str(size)}},
            "spec": {"size": size, "labels": {"b": {"nested": ["x", size]}, "a": "first"}}}


@contextlib.contextmanager
def custom_resource_definition(admin: client.ApiClient, name: str) -> Iterator[None]:
    """A namespaced CRD `name` (plural.group) with an open schema, established; deleted after."""
    plural, group = name.split(".", 1)
    kind = plural.removesuffix("s").capitalize()
    extensions = client.ApiextensionsV1Api(admin)
    extensions.create_custom_resource_definition({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition", "metadata": {"name": name},
        "spec": {"group": group, "scope": "Namespaced",
                 "names": {"plural": plural, "singular": plural.removesuffix("s"), "kind": kind},
                 "versions": [{"name": "v1", "served": True, "storage": True,
                               "schema": {"openAPIV3Schema": {"type": "object",
                                                              "x-kubernetes-preserve-unknown-fields": True}}}]},
    })
    try:
        def established() -> bool:
            found = extensions.read_custom_resource_definition(name)
            return any(c.type == "Established" and c.status == "True" for c in (found.status.conditions or []))

        eventually(established, 30, f"the CRD {name} established")
        yield
    finally:
        extensions.delete_custom_resource_definition(name)


def test__the_controller_manager_gives_a_deployment_its_replicaset(admin, namespace):
    apps = client.AppsV1Api(admin)
    apps.patch_namespaced_deployment("matcher", namespace, deployment("matcher"), field_manager=FIELD_MANAGER,
                                     _content_type="application/apply-patch+yaml")

    def owned_replicasets() -> list[client.V1ReplicaSet]:
        return [rs for rs in apps.list_namespaced_replica_set(namespace).items
                if [(ref.kind, ref.name) for ref in rs.metadata.owner_references or []] == [("Deployment", "matcher")]]

    replicasets = eventually(owned_replicasets, 30, "a ReplicaSet owned by the Deployment")
    assert [rs.spec.replicas for rs in replicasets] == [2]


def test__deleting_an_owner_garbage_collects_what_its_owner_references_point_at(admin, namespace):
    core = client.CoreV1Api(admin)
    owner = core.create_namespaced_config_map(namespace, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="owner")))
    core.create_namespaced_config_map(namespace, client.V1ConfigMap(metadata=client.V1ObjectMeta(
        name="dependent",
        owner_references=[client.V1OwnerReference(api_version="v1", kind="ConfigMap", name="owner",
                                                  uid=owner.metadata.uid)])))
    core.create_namespaced_config_map(namespace, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="bystander")))

    core.delete_namespaced_config_map("owner", namespace)

    eventually(lambda: not exists(core, "dependent", namespace), 30, "the dependent ConfigMap collected")
    assert exists(core, "bystander", namespace)


def may_list_configmaps(api: client.ApiClient, namespace: str) -> bool:
    try:
        client.CoreV1Api(api).list_namespaced_config_map(namespace)
    except ApiException as exc:
        if exc.status == 403:
            return False
        raise
    return True


def exists(core: client.CoreV1Api, name: str, namespace: str) -> bool:
    try:
        core.read_namespaced_config_map(name, namespace)
    except ApiException as exc:
        if exc.status == 404:
            return False
        raise
    return True


def listening_addresses(pid: int) -> set[str]:
    """The TCP addresses process `pid` listens on ("127.0.0.1:2379"; IPv6 as "[::]:80"), from /proc."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = fd.readlink().as_posix()
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[len("socket:["):-1])
    found = set()
    for table, ipv6 in (("/proc/net/tcp", False), ("/proc/net/tcp6", True)):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] != "0A" or fields[9] not in inodes:  # 0A: LISTEN
                continue
            address, port = fields[1].split(":")
            found.add(f"{decode_address(address, ipv6)}:{int(port, 16)}")
    return found


def decode_address(hex_address: str, ipv6: bool) -> str:
    raw = bytes.fromhex(hex_address)
    words = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))  # each 32-bit word is host order
    return f"[{ipaddress.IPv6Address(words)}]" if ipv6 else str(ipaddress.IPv4Address(words))
