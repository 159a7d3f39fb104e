"""deploy/monitoring: the dashboard is the one tools/gen_dashboard.py makes, in Grafana's import
format; kustomize ships it to Grafana's sidecar with the rules and the PodMonitor, all selected
by the same kube-prometheus-stack release. (Every panel's query against a live Prometheus:
tests/system/test_monitoring.py; the rules under promtool: tests/system/test_alert_rules.py.)"""

from __future__ import annotations

import json
import subprocess
import sys

import yaml

from tests.conftest import REPO

MONITORING = REPO / "deploy" / "monitoring"


def dashboard() -> dict:
    return json.loads((MONITORING / "dashboards" / "facegate.json").read_text())


def manifest(name: str) -> dict:
    return yaml.safe_load((MONITORING / name).read_text())


def test__the_dashboard_json_is_what_tools_gen_dashboard_makes():
    result = subprocess.run([sys.executable, "tools/gen_dashboard.py", "--check"], cwd=REPO, capture_output=True,
                            text=True)

    assert result.returncode == 0, result.stderr


def test__the_dashboard_is_a_grafana_dashboard_model_for_import():
    model = dashboard()
    panels = model["panels"]

    assert model["id"] is None and model["uid"] == "facegate" and model["title"] == "FaceGate"
    assert model["schemaVersion"] >= 39  # Grafana 11
    assert [p["id"] for p in panels] == list(range(1, len(panels) + 1))
    assert all({"x", "y", "w", "h"} <= set(p["gridPos"]) for p in panels)
    assert [v["name"] for v in model["templating"]["list"]] == ["datasource", "site", "door"]
    for panel in panels:
        for target in panel.get("targets", []):
            assert target["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
            assert target["refId"] and target["expr"], panel["title"]


def test__the_dashboard_has_a_row_per_concern_with_the_panels_the_on_call_needs():
    titles = {p["title"] for p in dashboard()["panels"]}

    assert {"Decisions", "Cameras and frames", "Services", "Operations"} <= titles  # the rows
    assert {"Decisions by outcome", "Decision latency per site", "Frames in and dropped", "Queue depth",
            "Batch sizes", "Backend errors", "RPC errors", "Review backlog", "Certificates expire in",
            "Silent cameras", "Time since the last frame"} <= titles


def test__kustomize_ships_the_rules_the_podmonitor_and_the_dashboard_for_grafanas_sidecar():
    kustomization = manifest("kustomization.yaml")
    [generated] = kustomization["configMapGenerator"]

    assert set(kustomization["resources"]) == {p.name for p in MONITORING.glob("*.yaml")} - {"kustomization.yaml"}
    assert generated["files"] == ["dashboards/facegate.json"]
    assert generated["options"]["labels"] == {"grafana_dashboard": "1"}
    assert generated["options"]["disableNameSuffixHash"] is True


def test__the_rules_and_the_podmonitors_are_picked_up_by_the_same_prometheus():
    rule = manifest("prometheusrule.yaml")
    services, fleet = yaml.safe_load_all((MONITORING / "podmonitor.yaml").read_text())

    for monitor in (services, fleet):
        assert rule["apiVersion"] == monitor["apiVersion"] == "monitoring.coreos.com/v1"
        assert (rule["kind"], monitor["kind"]) == ("PrometheusRule", "PodMonitor")
        assert rule["metadata"]["labels"]["release"] == monitor["metadata"]["labels"]["release"]
        assert monitor["spec"]["jobLabel"] == "app"  # the rules' and the dashboard's job names are the apps'
    [scraped] = services["spec"]["selector"]["matchExpressions"]
    assert set(scraped["values"]) == {"detector", "embedder", "matcher", "gateway", "console"}
    # the fleet alerts need the fleet controller scraped wherever the rules are (it runs in every overlay)
    assert fleet["spec"]["selector"] == {"matchLabels": {"app": "facegate-fleet"}}
