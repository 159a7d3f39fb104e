"""The shipped rules (deploy/monitoring/prometheusrule.yaml) under the real `promtool`: they
parse, every alert says who must act and what to check, every alert is tested both firing and
not firing and every recording rule's value is tested (deploy/monitoring/tests/), and those
tests pass."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from facegate.harness.prometheus import binary, rule_groups, write_rule_file
from tests.conftest import REPO

MONITORING = REPO / "deploy" / "monitoring"
PROMETHEUS_RULE = MONITORING / "prometheusrule.yaml"
RULE_TESTS = sorted((MONITORING / "tests").glob("*.yaml"))


def promtool(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([binary("promtool"), *args], cwd=cwd, capture_output=True, text=True, timeout=300)


def shipped_rules() -> list[dict]:
    return [rule for group in rule_groups(PROMETHEUS_RULE)["groups"] for rule in group["rules"]]


@pytest.fixture(scope="module")
def promtool_dir(tmp_path_factory) -> Path:
    """The rule tests beside the rules they name (facegate-rules.yaml: promtool reads rule
    files, not the PrometheusRule resource), with the alerts' summaries only (see the tests)."""
    directory = tmp_path_factory.mktemp("promtool")
    write_rule_file(PROMETHEUS_RULE, directory / "facegate-rules.yaml", keep_annotations=["summary"])
    for test in RULE_TESTS:
        shutil.copyfile(test, directory / test.name)
    return directory


def test__the_prometheusrule_holds_rules_and_templates_promtool_accepts(tmp_path):
    rules = write_rule_file(PROMETHEUS_RULE, tmp_path / "facegate-rules.yaml")  # descriptions and all

    checked = promtool("check", "rules", str(rules), cwd=tmp_path)

    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"SUCCESS: {len(shipped_rules())} rules found" in checked.stdout


def test__every_alert_has_a_severity_a_delay_and_tells_the_on_call_what_to_check():
    alerts = [rule for rule in shipped_rules() if "alert" in rule]

    assert alerts
    for alert in alerts:
        assert alert["labels"]["severity"] in ("critical", "warning"), alert["alert"]
        assert alert.get("for"), alert["alert"]  # one bad scrape or evaluation never pages
        assert alert["annotations"]["summary"] and len(alert["annotations"]["description"]) > 100, alert["alert"]


def test__every_alert_is_tested_firing_and_not_firing_and_every_recording_rule_is_tested():
    alerts = {rule["alert"] for rule in shipped_rules() if "alert" in rule}
    records = {rule["record"] for rule in shipped_rules() if "record" in rule}
    fired, quiet, computed = set(), set(), set()
    for path in RULE_TESTS:
        for test in yaml.safe_load(path.read_text())["tests"]:
            for case in test.get("alert_rule_test", []):
                (fired if case["exp_alerts"] else quiet).add(case["alertname"])
            computed.update(case["expr"] for case in test.get("promql_expr_test", []))

    assert fired == alerts
    assert quiet == alerts
    assert records <= computed


def test__the_rule_tests_pass(promtool_dir):
    tested = promtool("test", "rules", *(test.name for test in RULE_TESTS), cwd=promtool_dir)

    print(tested.stdout)
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert tested.stdout.count("SUCCESS") == len(RULE_TESTS)
