"""The Kubernetes manifests hold what the SRE team relies on for every container."""

from __future__ import annotations

import yaml

from tests.conftest import REPO

K8S = REPO / "deploy" / "k8s"


def documents():
    for path in sorted(K8S.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                yield path.name, doc


def test__kustomization_lists_every_manifest():
    listed = set(yaml.safe_load((K8S / "kustomization.yaml").read_text())["resources"])

    assert listed == {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}


def test__every_container_has_probes_limits_and_a_locked_down_security_context():
    workloads = [(name, doc) for name, doc in documents() if doc["kind"] in ("Deployment", "StatefulSet")]

    assert {doc["metadata"]["name"] for _, doc in workloads} == {"detector", "embedder", "matcher", "gateway",
                                                                  "console"}
    for name, doc in workloads:
        pod = doc["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True, name
        for container in pod["containers"]:
            kind = "httpGet" if doc["metadata"]["name"] == "console" else "grpc"  # the console is a web server
            assert kind in container["readinessProbe"] and kind in container["livenessProbe"], name
            assert {"cpu", "memory"} <= set(container["resources"]["requests"]), name
            assert {"cpu", "memory"} <= set(container["resources"]["limits"]), name
            security = container["securityContext"]
            assert security["readOnlyRootFilesystem"] and not security["allowPrivilegeEscalation"], name
            assert security["capabilities"]["drop"] == ["ALL"], name


def test__backends_are_headless_so_clients_balance_over_replicas():
    services = {doc["metadata"]["name"]: doc for _, doc in documents() if doc["kind"] == "Service"}

    for name in ("detector", "embedder", "matcher"):
        assert services[name]["spec"]["clusterIP"] == "None"


def test__the_shipped_door_configmap_is_a_valid_door_configuration():
    from services.core.model_card import DEFAULT_MODEL, bundled_card
    from services.gateway.doors import parse_doors

    configmap = next(doc for _, doc in documents()
                     if doc["kind"] == "ConfigMap" and doc["metadata"]["name"] == "facegate-doors")
    calibrated = tuple(float(f) for f in bundled_card(DEFAULT_MODEL).far_thresholds)

    config = parse_doors(yaml.safe_load(configmap["data"]["doors.yaml"]), calibrated)

    assert set(config.doors) == {"hq-lobby", "hq-server-room"}


def test__the_production_image_leaves_out_the_test_harness_and_the_demo():
    ignored = {line.strip() for line in (REPO / ".dockerignore").read_text().splitlines()
               if line.strip() and not line.startswith("#")}
    dockerfile = (REPO / "deploy" / "Dockerfile").read_text()

    assert {"facegate/harness", "facegate/demo.py", "tests", "bench"} <= ignored
    assert "COPY facegate ./facegate" in dockerfile  # the CLI ships; the ignored parts do not


def test__every_workload_serves_mutual_tls_from_its_own_secret_and_is_probed_on_the_health_port():
    config = next(doc for _, doc in documents() if doc["kind"] == "ConfigMap" and
                  doc["metadata"]["name"] == "facegate-config")["data"]
    health_port = int(config["FACEGATE_HEALTH_PORT"])

    for _, doc in documents():
        if doc["kind"] not in ("Deployment", "StatefulSet"):
            continue
        name, pod = doc["metadata"]["name"], doc["spec"]["template"]["spec"]
        secrets = {v["name"]: v["secret"]["secretName"] for v in pod["volumes"] if "secret" in v}
        container = pod["containers"][0]
        mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
        assert secrets[mounts[config["FACEGATE_TLS_DIR"]]] == f"{name}-tls", name
        assert "--insecure" not in " ".join(container["args"]), name
        if name == "console":  # not a gRPC server: probed over its own HTTPS (/healthz, /readyz)
            assert {container[p]["httpGet"]["path"] for p in ("readinessProbe", "livenessProbe")} == \
                {"/readyz", "/healthz"}
            continue
        for probe in ("readinessProbe", "livenessProbe"):
            assert container[probe]["grpc"]["port"] == health_port, name


def test__cert_manager_issues_each_service_a_certificate_for_the_names_it_is_dialled_at():
    config = next(doc for _, doc in documents() if doc["kind"] == "ConfigMap" and
                  doc["metadata"]["name"] == "facegate-config")["data"]
    issued = {doc["spec"]["secretName"]: doc["spec"] for doc in
              yaml.safe_load_all((K8S / "cert-manager" / "certificates.yaml").read_text())
              if doc["kind"] == "Certificate"}

    for name in ("gateway", "detector", "embedder", "matcher"):
        spec = issued[f"{name}-tls"]
        assert spec["uris"] == [f"spiffe://facegate/service/{name}"]
        assert {"server auth", "client auth"} <= set(spec["usages"])
        assert spec["privateKey"]["algorithm"] == "ECDSA"  # gRPC's TLS refuses Ed25519 keys
    for name in ("detector", "embedder", "matcher"):  # the gateway dials these addresses
        host = config[f"FACEGATE_{name.upper()}_ADDRESS"].removeprefix("dns:///").rsplit(":", 1)[0]
        assert host in issued[f"{name}-tls"]["dnsNames"], name


def test__every_workload_reads_the_shipped_access_policy_and_it_is_valid():
    from services.core.access import parse_policy

    config = next(doc for _, doc in documents() if doc["kind"] == "ConfigMap" and
                  doc["metadata"]["name"] == "facegate-config")["data"]
    access = next(doc for _, doc in documents() if doc["kind"] == "ConfigMap" and
                  doc["metadata"]["name"] == "facegate-access")["data"]
    policy = parse_policy(yaml.safe_load(access["access.yaml"]))
    directory, file = config["FACEGATE_ACCESS_POLICY"].rsplit("/", 1)

    assert file in access
    assert policy.caller("spiffe://facegate/service/gateway").roles == {"service"}  # type: ignore[union-attr]
    assert policy.caller("spiffe://facegate/user/anyone") is None  # people are added by the site, not shipped
    for _, doc in documents():
        # the console serves no gRPC: the services it calls check its users against the policy
        if doc["kind"] in ("Deployment", "StatefulSet") and doc["metadata"]["name"] != "console":
            pod = doc["spec"]["template"]["spec"]
            mounts = {m["mountPath"]: m["name"] for m in pod["containers"][0]["volumeMounts"]}
            maps = {v["name"]: v["configMap"]["name"] for v in pod["volumes"] if "configMap" in v}
            assert maps[mounts[directory]] == "facegate-access", doc["metadata"]["name"]


def test__every_port_of_every_workload_is_reachable_only_as_a_network_policy_allows():
    """Default deny, then per workload: every container port is named by some policy, and the
    backends' gRPC only from the gateway (and, for the matcher, labelled clients)."""
    policies = {doc["metadata"]["name"]: doc["spec"] for _, doc in documents() if doc["kind"] == "NetworkPolicy"}
    deny = policies.pop("default-deny-ingress")
    assert deny["podSelector"] == {} and deny["policyTypes"] == ["Ingress"] and "ingress" not in deny

    def allowed(app: str) -> dict[int, list]:
        ports: dict[int, list] = {}
        for spec in policies.values():
            selector = spec["podSelector"]
            selected = selector.get("matchLabels", {}).get("app") == app or any(
                e["key"] == "app" and app in e["values"] for e in selector.get("matchExpressions", []))
            for rule in spec.get("ingress", []) if selected else []:
                for port in rule["ports"]:
                    ports.setdefault(port["port"], []).append(rule.get("from"))
        return ports

    for name, doc in documents():
        if doc["kind"] != "Deployment" and doc["kind"] != "StatefulSet":
            continue
        app = doc["spec"]["template"]["metadata"]["labels"]["app"]
        ports = {p["containerPort"]: p["name"] for c in doc["spec"]["template"]["spec"]["containers"]
                 for p in c["ports"]}
        rules = allowed(app)
        assert set(ports) <= set(rules), (name, set(ports) - set(rules))
        if app in ("detector", "embedder", "matcher"):
            grpc_port = next(port for port, kind in ports.items() if kind == "grpc")
            sources = [source for source in rules[grpc_port]]
            assert all(source for source in sources), name  # never "from anywhere"
            assert {"podSelector": {"matchLabels": {"app": "gateway"}}} in [s for src in sources for s in src], name
