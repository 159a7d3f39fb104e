"""Generate FaceGate's Grafana dashboard, deploy/monitoring/dashboards/facegate.json (or check that it is fresh).

    python tools/gen_dashboard.py          # regenerate
    python tools/gen_dashboard.py --check  # exit 1 if the JSON differs from what this file makes

Built with grafana-foundation-sdk (the 11.6 flavour, pinned in pyproject.toml): the output is
Grafana's dashboard JSON model (schemaVersion 41), what Grafana's "Import dashboard" page, its
HTTP API (`POST /api/dashboards/db`, wrapped as {"dashboard": ..., "overwrite": true}) and the
kube-prometheus-stack sidecar (deploy/monitoring/kustomization.yaml) take. The file is never
edited by hand: tests/unit/test_monitoring_manifests.py fails when it is stale, and
tests/system/test_monitoring.py runs every query below against a live Prometheus scraping a
live stack.

Variables: the Prometheus data source, `site` and `door` (multi-select, "All" = `.*`). Per-door
panels filter on both; the decision latency is per site (its histogram has no door label), the
queue depth per door (it has no site label), the services' panels are not per site (the
detector, embedder and matcher serve every door).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from grafana_foundation_sdk.builders import dashboard, prometheus, stat, table, timeseries
from grafana_foundation_sdk.builders.common import StackingConfig
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models.common import StackingMode
from grafana_foundation_sdk.models.dashboard import (
    DashboardCursorSync,
    DataSourceRef,
    Threshold,
    ThresholdsMode,
    VariableRefresh,
    VariableSort,
)
from grafana_foundation_sdk.models.prometheus import PromQueryFormat

REPO = Path(__file__).resolve().parent.parent
OUTPUT = REPO / "deploy" / "monitoring" / "dashboards" / "facegate.json"
DATASOURCE = DataSourceRef(type_val="prometheus", uid="${datasource}")
DOOR = 'site=~"$site", door=~"$door"'  # the selector of per-door series
SERVICES = "detector|embedder|matcher|gateway|console"  # job names (deploy/monitoring/podmonitor.yaml)


def query(expr: str, legend: str = "", ref: str = "A", instant: bool = False) -> prometheus.Dataquery:
    target = prometheus.Dataquery().expr(expr).ref_id(ref).datasource(DATASOURCE)
    if legend:
        target = target.legend_format(legend)
    if instant:
        target = target.instant().format(PromQueryFormat.TABLE)
    return target


def graph(title: str, description: str, unit: str, *targets: prometheus.Dataquery,
          span: int = 12, stacked: bool = False) -> timeseries.Panel:
    panel = (timeseries.Panel().title(title).description(description).datasource(DATASOURCE).unit(unit)
             .span(span).height(8))
    if stacked:
        panel = panel.stacking(StackingConfig().mode(StackingMode.NORMAL)).fill_opacity(30)
    for target in targets:
        panel = panel.with_target(target)
    return panel


def thresholds(*steps: tuple[float | None, str]) -> dashboard.ThresholdsConfig:
    return dashboard.ThresholdsConfig().mode(ThresholdsMode.ABSOLUTE).steps(
        [Threshold(value=value, color=color) for value, color in steps])


def variables() -> list[dashboard.DatasourceVariable | dashboard.QueryVariable]:
    def labels(name: str, label: str, source: str) -> dashboard.QueryVariable:
        return (dashboard.QueryVariable(name).label(label).datasource(DATASOURCE)
                .query(f"label_values({source}, {name})").refresh(VariableRefresh.ON_TIME_RANGE_CHANGED)
                .sort(VariableSort.ALPHABETICAL_ASC).multi(True).include_all(True).all_value(".*"))

    return [
        dashboard.DatasourceVariable("datasource").label("Prometheus").type("prometheus"),
        labels("site", "Site", "facegate_gateway_frames_total"),
        labels("door", "Door", 'facegate_gateway_frames_total{site=~"$site"}'),
    ]


def decisions_row() -> list[dashboard.Row | timeseries.Panel]:
    by_door = f"facegate_gateway_decisions_total{{{DOOR}}}"
    return [
        dashboard.Row("Decisions"),
        graph("Decisions by outcome", "Decisions per second at the chosen doors, by outcome.", "ops",
              query(f"sum by (outcome) (rate({by_door}[$__rate_interval]))", "{{outcome}}"), stacked=True),
        graph("Decisions by door", "Decisions per second, per door.", "ops",
              query(f"sum by (site, door) (rate({by_door}[$__rate_interval]))", "{{site}} / {{door}}")),
        graph("Decision latency per site", "Frame arrival to decision at the gateway (p50, p95). Usually about "
              "0.2 s; the FaceGateDecisionLatencyHigh alert is at a p95 over 1 s.", "s",
              *(query(f'histogram_quantile({q}, sum by (site, le) (rate(facegate_gateway_decision_seconds_bucket'
                      f'{{site=~"$site"}}[$__rate_interval])))', f"{{{{site}}}} p{int(q * 100)}", ref)
                for q, ref in ((0.5, "A"), (0.95, "B")))),
        graph("Error decisions", "Share of the decisions that were `error` (a backend failed, the door stayed "
              "locked), per site.", "percentunit",
              query(f'sum by (site) (rate(facegate_gateway_decisions_total{{outcome="OUTCOME_ERROR", {DOOR}}}'
                    f'[$__rate_interval])) / sum by (site) (rate({by_door}[$__rate_interval]))', "{{site}}")),
        graph("Unknown faces per door", "Share of the decisions on a face that found nobody in the gallery "
              "(denied_unknown), per door: a jump is a camera that sees worse, or a gallery problem.",
              "percentunit",
              query(f'sum by (site, door) (rate(facegate_gateway_decisions_total{{outcome="OUTCOME_DENIED_UNKNOWN", '
                    f'{DOOR}}}[$__rate_interval])) / sum by (site, door) (rate(facegate_gateway_decisions_total'
                    f'{{outcome!="OUTCOME_ERROR", {DOOR}}}[$__rate_interval]))', "{{site}} / {{door}}"),
              span=24),
    ]


def cameras_row() -> list[dashboard.Row | timeseries.Panel | table.Panel]:
    return [
        dashboard.Row("Cameras and frames"),
        graph("Frames in and dropped", "Frames per second the gateway received from each door's camera, and "
              "those it dropped unprocessed (it keeps the newest few per door: drops mean it cannot keep up).",
              "short",
              query(f"sum by (site, door) (rate(facegate_gateway_frames_total{{{DOOR}}}[$__rate_interval]))",
                    "{{door}} in"),
              query(f"sum by (site, door) (rate(facegate_gateway_frames_dropped_total{{{DOOR}}}[$__rate_interval]))",
                    "{{door}} dropped", "B")),
        graph("Frames searched and gated", "Frames per second by what the gateway did with them: searched by "
              "the detector because something moved (motion), a face is tracked (tracking), the periodic full "
              "search (periodic), or unreadable; not searched because nobody is tracked and nothing moved "
              "(still), or the tracked faces are gone and the empty scene is back (scene). Searches are of the "
              "whole frame or of a region around the tracked faces; 'faces' looks only where undecided "
              "tracked faces were (no search). 'ungated' doors run with "
              "--motion-face-fraction 0.", "short",
              query(f"sum by (reason, area) (rate(facegate_gateway_detections_total{{{DOOR}}}[$__rate_interval])) "
                    f"or sum by (reason) (rate(facegate_gateway_frames_gated_total{{{DOOR}}}[$__rate_interval]))",
                    "{{reason}} {{area}}")),
        graph("Queue depth", "Frames waiting at the gateway, per door.", "short",
              query('max by (door) (facegate_gateway_queue_depth{door=~"$door"})', "{{door}}")),
        graph("Time since the last frame", "Seconds since each door's camera last sent a frame (while a gateway "
              "has seen it since its start).", "s",
              query(f"time() - max by (site, door) (facegate_gateway_last_frame_timestamp_seconds{{{DOOR}}})",
                    "{{site}} / {{door}}")),
        table.Panel().title("Silent cameras").description(
            "Doors in the door file without a frame in the last 5 minutes (the FaceGateCameraSilent alert fires "
            "after 5 more). Empty when every camera streams.").datasource(DATASOURCE).span(12).height(8)
        .with_target(query(f"door:facegate_gateway_camera_silent:5m{{{DOOR}}}", instant=True)),
    ]


def services_row() -> list[dashboard.Row | timeseries.Panel | stat.Panel]:
    return [
        dashboard.Row("Services"),
        stat.Panel().title("Processes up").description(
            "Processes of each service answering Prometheus' scrapes.").datasource(DATASOURCE).span(24).height(4)
        .thresholds(thresholds((None, "red"), (1, "green")))
        .with_target(query(f'sum by (job) (up{{job=~"{SERVICES}"}})', "{{job}}")),
        graph("Batch sizes", "Items per batched call (frames per Detect, crops per Embed): mean and p95. Batches "
              "grow by themselves under load.", "short",
              query("sum by (batcher) (rate(facegate_batch_items_sum[$__rate_interval])) / sum by (batcher) "
                    "(rate(facegate_batch_items_count[$__rate_interval]))", "{{batcher}} mean"),
              query("histogram_quantile(0.95, sum by (batcher, le) (rate(facegate_batch_items_bucket"
                    "[$__rate_interval])))", "{{batcher}} p95", "B")),
        graph("Backend errors", "The gateway's failed calls per second, by service and status code (UNAVAILABLE: "
              "down or unreachable; DEADLINE_EXCEEDED: overloaded; audit or reviews: its database).", "ops",
              query("sum by (service, code) (rate(facegate_gateway_backend_errors_total[$__rate_interval]))",
                    "{{service}} {{code}}")),
        graph("RPC errors", "RPCs per second that ended with another status than OK, by service, method and code.",
              "ops",
              query('sum by (service, method, code) (rate(facegate_rpc_total{code!="OK"}[$__rate_interval]))',
                    "{{service}}.{{method}} {{code}}")),
        graph("RPC latency p95", "Server-side latency of the unary RPCs (streams last as long as a camera "
              "streams: left out).", "s",
              query('histogram_quantile(0.95, sum by (service, method, le) (rate(facegate_rpc_duration_seconds_bucket'
                    '{method!~"StreamCamera|WatchDecisions"}[$__rate_interval])))', "{{service}}.{{method}}")),
    ]


def operations_row() -> list[dashboard.Row | timeseries.Panel | stat.Panel]:
    return [
        dashboard.Row("Operations"),
        graph("Review backlog", "Decisions waiting for a person's review in the console, over all gateways.",
              "short", query("max(facegate_gateway_reviews_pending)", "waiting")),
        stat.Panel().title("Certificates expire in").description(
            "Time left on the certificate each service serves (server) and presents to the others (client). "
            "cert-manager renews at 48 h; the alerts are at 24 h and 4 h.").datasource(DATASOURCE).unit("s")
        .span(12).height(8).thresholds(thresholds((None, "red"), (4 * 3600, "orange"), (24 * 3600, "green")))
        .with_target(query("min by (job, use) (facegate_tls_certificate_expiry_timestamp_seconds) - time()",
                           "{{job}} {{use}}")),
    ]


def build() -> dict:
    board = (dashboard.Dashboard("FaceGate").uid("facegate").description(
        "Doors, decisions and the services behind them. Generated by tools/gen_dashboard.py: edit that, not this.")
        .tags(["facegate"]).time("now-6h", "now").refresh("30s").timezone("browser")
        .tooltip(DashboardCursorSync.CROSSHAIR).editable())
    for variable in variables():
        board = board.with_variable(variable)
    # Firing FaceGate alerts as annotations on every graph.
    board = board.annotation(dashboard.AnnotationQuery().name("FaceGate alerts").datasource(DATASOURCE)
                             .enable(True).icon_color("red")
                             .expr('ALERTS{alertname=~"FaceGate.*", alertstate="firing"}'))
    for item in [*decisions_row(), *cameras_row(), *services_row(), *operations_row()]:
        board = board.with_row(item) if isinstance(item, dashboard.Row) else board.with_panel(item)
    model = json.loads(json.dumps(board.build(), cls=JSONEncoder))
    model["id"] = None  # as Grafana's import and HTTP API take a new dashboard (the uid identifies it)
    for number, panel in enumerate(model["panels"], start=1):  # ids in reading order: links to a panel stay put
        panel["id"] = number
    return model


def render() -> str:
    return json.dumps(build(), indent=2, sort_keys=True) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="exit 1 if the dashboard JSON is stale")
    args = parser.parse_args()
    fresh = render()
    if args.check:
        if not OUTPUT.exists() or OUTPUT.read_text() != fresh:
            print(f"{OUTPUT.relative_to(REPO)} is stale: run `python tools/gen_dashboard.py`", file=sys.stderr)
            return 1
        return 0
    OUTPUT.parent.mkdir(parents=True, exist_ok=True)
    OUTPUT.write_text(fresh)
    return 0


if __name__ == "__main__":
    sys.exit(main())
