"""FaceGate watched by a real Prometheus: the shipped rules (deploy/monitoring/prometheusrule.yaml)
and dashboard (deploy/monitoring/dashboards/facegate.json) against a live stack.

Prometheus runs on 127.0.0.1 (Debian's package, `make prometheus`), scraping every second the
session's detector and embedder and a matcher and a gateway of this module's own (the matcher
is killed here; the gateway has a door file: one door whose camera streams real photos, one
whose camera never connects). The rules are loaded as shipped except for every alert's `for:`,
rewritten to 10 s so the test does not wait minutes; the expressions are unchanged. There is no
Grafana server here: the dashboard's queries are run as Grafana would send them, with its
variables filled in.
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import pytest

from facegate.harness.prometheus import PrometheusServer, rule_groups, write_rule_file
from facegate.harness.stack import ServiceProcess
from services.contracts.v1 import gateway_pb2, gateway_pb2_grpc
from tests.conftest import REPO, camera, channel
from tests.system.test_gateway_faults import start_gateway, start_matcher
from tests.system.test_services import photo

MONITORING = REPO / "deploy" / "monitoring"
SITE = "monitoring"
FRONT, BACK = "mon-front", "mon-back"  # BACK is configured and never streams
DOORS = f"""
sites:
  {SITE}: {{timezone: UTC}}
doors:
  - {{id: {FRONT}, site: {SITE}}}
  - {{id: {BACK}, site: {SITE}}}
"""
ALERT_FOR = "10s"
# The dashboard's variables as Grafana fills them in: both doors picked in the door list (a
# multi-value becomes a regex alternation), and a rate window that covers the whole test.
VARIABLES = {"$site": SITE, "$door": f"({FRONT}|{BACK})", "$__rate_interval": "2m"}
CRITICAL_ON_A_DEAD_MATCHER = {("FaceGateServiceDown", "job", "matcher"),
                              ("FaceGateBackendErrors", "service", "matcher"),
                              ("FaceGateDecisionErrors", "site", SITE)}


class DoorCamera:
    """The camera of door FRONT, streaming real photos until closed: first a burst (more frames
    at once than the gateway queues for a door, so some are dropped), then visits 5 camera-
    seconds apart (each a new face track), Obama (enrolled) and Biden (not) by turns, three
    frames each, 0.2 s apart in real time."""

    def __init__(self, address: str, demo_photos: dict[str, Path]) -> None:
        self._photos = {name: photo(demo_photos, name) for name in ("obama2.jpg", "biden.jpg")}
        self._stop = threading.Event()
        self.decisions: list[gateway_pb2.Decision] = []
        self._call = camera(address, FRONT, SITE).StreamCamera(self._frames(), timeout=600)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _frames(self) -> Iterator[gateway_pb2.CameraFrame]:
        clock, sequence = time.time(), 0

        def frame(name: str, at: float) -> gateway_pb2.CameraFrame:
            nonlocal sequence
            sequence += 1
            made = gateway_pb2.CameraFrame(door_id=FRONT, sequence=sequence, frame=self._photos[name])
            made.captured_at.FromNanoseconds(int(at * 1e9))
            return made

        for i in range(12):
            yield frame("obama2.jpg", clock + 0.04 * i)
        while not self._stop.is_set():
            for name in ("obama2.jpg", "biden.jpg"):
                clock += 5
                for i in range(3):
                    yield frame(name, clock + 0.2 * i)
                    time.sleep(0.2)

    def _read(self) -> None:
        try:
            for decision in self._call:
                self.decisions.append(decision)
        except grpc.RpcError:
            pass

    def close(self) -> None:
        self._stop.set()
        self._call.cancel()
        self._reader.join(10)


@dataclass
class Watched:
    """The scenario's record: Prometheus, what the camera was told, and every alert's states in
    the order seen (pending, firing), by (alertname, the label that says where)."""

    prometheus: PrometheusServer
    gateway: ServiceProcess
    decisions: list[gateway_pb2.Decision]
    critical_before_the_fault: list[dict]
    states: dict[tuple[str, str, str], list[str]] = field(default_factory=dict)
    alerts: list[dict] = field(default_factory=list)
    seen_at: dict[tuple[str, str, str, str], float] = field(default_factory=dict)  # + state -> monotonic time
    killed_at: float = 0.0


def where(alert: dict) -> tuple[str, str, str]:
    labels = alert["labels"]
    for name in ("job", "service", "door", "site"):
        if name in labels:
            return labels["alertname"], name, labels[name]
    return labels["alertname"], "", ""


def follow_alerts(watched: Watched) -> list[dict]:
    alerts = watched.prometheus.alerts()
    for alert in alerts:
        seen = watched.states.setdefault(where(alert), [])
        if not seen or seen[-1] != alert["state"]:
            seen.append(alert["state"])
            watched.seen_at.setdefault((*where(alert), alert["state"]), time.monotonic())
    return alerts


def has(prometheus: PrometheusServer, expr: str) -> bool:
    return any(float(sample["value"][1]) > 0 for sample in prometheus.query(expr))


@pytest.fixture(scope="module")
def watched(stack, demo_photos, tmp_path_factory) -> Iterator[Watched]:
    """A stack under Prometheus with a camera streaming, whose matcher is then killed; returns
    when the alerts that must page for it are firing (or after 2 minutes)."""
    work = tmp_path_factory.mktemp("monitoring")
    (work / "doors.yaml").write_text(DOORS)
    with ExitStack() as cleanup:  # stopped in reverse: camera, Prometheus, gateway, matcher
        matcher = start_matcher(work)
        cleanup.callback(matcher.stop)
        gateway = start_gateway(stack, work, "--doors", str(work / "doors.yaml"), matcher_address=matcher.address)
        cleanup.callback(gateway.stop)
        rules = write_rule_file(MONITORING / "prometheusrule.yaml", work / "facegate-rules.yaml",
                                alert_for=ALERT_FOR)
        targets = {"detector": [f"127.0.0.1:{stack.services['detector'].metrics_port}"],
                   "embedder": [f"127.0.0.1:{stack.services['embedder'].metrics_port}"],
                   "matcher": [f"127.0.0.1:{matcher.metrics_port}"],
                   "gateway": [f"127.0.0.1:{gateway.metrics_port}"]}
        prometheus = cleanup.enter_context(PrometheusServer(targets, [rules], interval="1s"))

        gateway_pb2_grpc.GatewayStub(channel(gateway.address)).EnrollFromImages(gateway_pb2.EnrollFromImagesRequest(
            identity_id="obama", display_name="Barack Obama", site=SITE,
            images=[photo(demo_photos, "obama.jpg")]), timeout=60)
        refused = camera(gateway.address, "mon-nowhere", SITE).StreamCamera(iter([gateway_pb2.CameraFrame(
            door_id="mon-nowhere", frame=photo(demo_photos, "biden.jpg"))]), timeout=30)
        with pytest.raises(grpc.RpcError) as caught:  # a camera for a door not in the file: an RPC error
            list(refused)
        assert caught.value.code() == grpc.StatusCode.NOT_FOUND

        door_camera = DoorCamera(gateway.address, demo_photos)
        cleanup.callback(door_camera.close)
        watched = Watched(prometheus, gateway, door_camera.decisions, [])
        for outcome in ("OUTCOME_GRANTED", "OUTCOME_DENIED_UNKNOWN"):
            prometheus.wait_for(f"{outcome} decisions at {FRONT}", lambda o=outcome: has(
                prometheus, f'facegate_gateway_decisions_total{{door="{FRONT}", outcome="{o}"}}'), timeout=90)
        time.sleep(5)  # a few more scrapes and evaluations of the healthy stack
        watched.critical_before_the_fault = [a for a in follow_alerts(watched)
                                             if a["labels"]["severity"] == "critical"]

        matcher.kill()  # SIGKILL: the fault
        watched.killed_at = time.monotonic()

        def paged() -> bool:
            watched.alerts = follow_alerts(watched)
            firing = {where(a) for a in watched.alerts if a["state"] == "firing"}
            return CRITICAL_ON_A_DEAD_MATCHER <= firing

        try:
            prometheus.wait_for("the alerts for a dead matcher firing", paged, timeout=120, every=0.2)
        except TimeoutError:
            pass  # the tests say which alert is missing
        yield watched


def test__before_the_fault_no_critical_alert_is_pending_or_firing(watched):
    assert watched.critical_before_the_fault == []
    assert {d.outcome for d in watched.decisions} >= {gateway_pb2.Decision.OUTCOME_GRANTED,
                                                      gateway_pb2.Decision.OUTCOME_DENIED_UNKNOWN}


def test__a_killed_matcher_takes_the_shipped_alerts_from_pending_to_firing(watched):
    for key in sorted(CRITICAL_ON_A_DEAD_MATCHER):
        print(key, {state: f"{watched.seen_at[(*key, state)] - watched.killed_at:.1f} s after the kill"
                    for state in watched.states.get(key, []) if (*key, state) in watched.seen_at})
    for key in sorted(CRITICAL_ON_A_DEAD_MATCHER):
        assert watched.states.get(key) == ["pending", "firing"], (key, watched.states)
    assert any(d.outcome == gateway_pb2.Decision.OUTCOME_ERROR for d in watched.decisions)  # the door said so


def test__the_door_whose_camera_never_connected_is_reported_silent_and_the_streaming_one_is_not(watched):
    assert watched.states.get(("FaceGateCameraSilent", "door", BACK), [])[-1:] == ["firing"]
    assert ("FaceGateCameraSilent", "door", FRONT) not in watched.states


def test__the_alerts_tell_the_on_call_what_happened_in_plain_words(watched):
    firing = [a for a in watched.alerts if a["state"] == "firing"]
    down = next(a for a in firing if where(a) == ("FaceGateServiceDown", "job", "matcher"))

    assert down["annotations"]["summary"].startswith("FaceGate matcher at 127.0.0.1:")
    assert "kubectl -n facegate get pods -l app=matcher" in down["annotations"]["description"]
    for alert in firing:
        for text in alert["annotations"].values():
            assert "expanding template" not in text and "<no value>" not in text, alert


def test__every_rule_evaluates_without_error_on_the_live_series(watched):
    rules = [rule for group in watched.prometheus.rules() for rule in group["rules"]]
    shipped = [rule for group in rule_groups(MONITORING / "prometheusrule.yaml")["groups"] for rule in group["rules"]]

    assert len(rules) == len(shipped)
    assert [(r["name"], r.get("lastError")) for r in rules if r["health"] != "ok"] == []


def dashboard_queries() -> list[tuple[str, str]]:
    """(where, PromQL) of every query in the dashboard: each panel's targets and the annotations."""
    model = json.loads((MONITORING / "dashboards" / "facegate.json").read_text())
    queries = [(f"panel {p['title']!r} {t['refId']}", t["expr"]) for p in model["panels"] for t in p.get("targets", [])]
    queries += [(f"annotation {a['name']!r}", a["expr"]) for a in model["annotations"]["list"] if "expr" in a]
    return queries


def filled_in(expr: str) -> str:
    for variable, value in sorted(VARIABLES.items(), key=lambda kv: -len(kv[0])):  # $__rate_interval first
        expr = expr.replace(variable, value)
    return expr


def test__every_dashboard_query_returns_numbers_from_the_live_stack(watched):
    queries = dashboard_queries()
    empty = []
    for name, expr in queries:
        samples = watched.prometheus.query(filled_in(expr))
        print(f"{name}: {len(samples)} series")
        if not any(not math.isnan(float(s["value"][1])) for s in samples):
            empty.append((name, filled_in(expr), samples))

    assert len(queries) >= 20
    assert empty == []
