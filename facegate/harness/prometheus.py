"""A real Prometheus server (Debian's `prometheus` package) for tests: scraping local services,
evaluating FaceGate's rules, answering queries.

The server runs in a temporary directory (its config, rule files and TSDB) and listens on
127.0.0.1 only, on a free port (`--web.listen-address`; the package's default is every
interface). Scrape targets are the caller's, with short intervals so a test sees series and
alert states within seconds. `rule_groups()` takes the rules out of the PrometheusRule we ship
(deploy/monitoring/prometheusrule.yaml): Prometheus and promtool read plain rule files, not
the Kubernetes resource.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from pathlib import Path
from typing import Any

import httpx
import yaml

from facegate.harness.stack import free_port

DURATION = re.compile(r"(\d+(ms|[smhdwy]))+")


def binary(name: str) -> str:
    """The path of `prometheus` or `promtool` (`make prometheus` installs Debian's package)."""
    found = shutil.which(name)
    if found is None:
        raise RuntimeError(f"{name} not found: `make prometheus` installs Debian's prometheus package")
    return found


def rule_groups(prometheus_rule: Path, alert_for: str | None = None,
                keep_annotations: Collection[str] | None = None) -> dict[str, Any]:
    """The rule file inside a PrometheusRule resource (its `spec`: `groups`). `alert_for`
    replaces every alert's `for:` (tests that cannot wait minutes; the expressions are
    untouched); `keep_annotations`, if given, drops the alerts' other annotations (promtool
    compares annotations whole: its tests spell out the summaries, not the prose for the on-call)."""
    resource = yaml.safe_load(prometheus_rule.read_text())
    if resource.get("kind") != "PrometheusRule":
        raise ValueError(f"{prometheus_rule}: kind {resource.get('kind')!r}, not PrometheusRule")
    groups = resource["spec"]["groups"]
    if alert_for is not None:
        if not DURATION.fullmatch(alert_for):
            raise ValueError(f"alert_for: {alert_for!r} is not a Prometheus duration")
        for group in groups:
            for rule in group["rules"]:
                if "alert" in rule:
                    rule["for"] = alert_for
    if keep_annotations is not None:
        for group in groups:
            for rule in group["rules"]:
                if "annotations" in rule:
                    rule["annotations"] = {k: v for k, v in rule["annotations"].items() if k in keep_annotations}
    return {"groups": groups}


def write_rule_file(prometheus_rule: Path, out: Path, alert_for: str | None = None,
                    keep_annotations: Collection[str] | None = None) -> Path:
    """`rule_groups()` written to `out`, a file Prometheus and promtool read."""
    out.write_text(yaml.safe_dump(rule_groups(prometheus_rule, alert_for, keep_annotations), sort_keys=False))
    return out


class PrometheusError(RuntimeError):
    """The server refused a query, or is not there."""


class PrometheusServer:
    """Prometheus in `root` (default: a new temporary directory, removed at stop) scraping
    `targets` (job name -> "host:port" addresses, /metrics) every `interval`, with the rule
    files `rules` evaluated as often; a context manager. `url` is its HTTP API."""

    def __init__(self, targets: Mapping[str, list[str]], rules: Sequence[Path] = (),
                 interval: str = "1s", root: Path | None = None, start_timeout: float = 30.0) -> None:
        self._owns_root = root is None
        self.root = Path(tempfile.mkdtemp(prefix="facegate-prometheus-")) if root is None else Path(root)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._targets, self._rules, self._interval = dict(targets), list(rules), interval
        self._timeout = start_timeout
        self._process: subprocess.Popen[bytes] | None = None
        self._http = httpx.Client(base_url=self.url, timeout=10.0)

    def _config(self) -> dict[str, Any]:
        rule_files = []
        for i, path in enumerate(self._rules):  # copied in: the server reads them from its own directory
            copy = self.root / f"rules-{i}-{path.name}"
            shutil.copyfile(path, copy)
            rule_files.append(str(copy))
        return {
            "global": {"scrape_interval": self._interval, "scrape_timeout": self._interval,
                       "evaluation_interval": self._interval},
            "rule_files": rule_files,
            "scrape_configs": [{"job_name": job, "static_configs": [{"targets": list(addresses)}]}
                               for job, addresses in self._targets.items()],
        }

    def start(self) -> PrometheusServer:
        self.root.mkdir(parents=True, exist_ok=True)
        config = self.root / "prometheus.yml"
        config.write_text(yaml.safe_dump(self._config(), sort_keys=False))
        checked = subprocess.run([binary("promtool"), "check", "config", str(config)], capture_output=True,
                                 text=True)
        if checked.returncode != 0:
            raise PrometheusError(f"promtool check config: {checked.stdout}{checked.stderr}")
        command = [binary("prometheus"), f"--config.file={config}", f"--storage.tsdb.path={self.root / 'data'}",
                   f"--web.listen-address=127.0.0.1:{self.port}", "--log.level=warn"]
        with open(self.root / "prometheus.log", "ab") as log:
            self._process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + self._timeout
        while True:
            if self._process.poll() is not None:
                raise PrometheusError(f"prometheus exited with {self._process.returncode}:\n{self.log_tail()}")
            try:
                if self._http.get("/-/ready").status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise PrometheusError(f"prometheus not ready on {self.url} in time:\n{self.log_tail()}")
            time.sleep(0.2)

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(15)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        self._http.close()
        if self._owns_root:
            shutil.rmtree(self.root, ignore_errors=True)

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join((self.root / "prometheus.log").read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def _api(self, path: str, params: Mapping[str, str] | None = None) -> Any:
        reply = self._http.get(f"/api/v1/{path}", params=params)
        body = reply.json() if reply.headers.get("content-type", "").startswith("application/json") else {}
        if reply.status_code != 200 or body.get("status") != "success":
            raise PrometheusError(f"{path} {dict(params or {})}: {reply.status_code} "
                                  f"{body.get('errorType', '')} {body.get('error', reply.text[:300])}")
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        """An instant query's result now: [{"metric": {labels}, "value": [time, "value"]}, ...]
        (a scalar or string result comes back as one such item, without labels)."""
        data = self._api("query", {"query": expr})
        if data["resultType"] in ("scalar", "string"):
            return [{"metric": {}, "value": data["result"]}]
        return list(data["result"])

    def alerts(self) -> list[dict[str, Any]]:
        """The active alerts (pending and firing): [{"labels", "annotations", "state", ...}]."""
        return list(self._api("alerts")["alerts"])

    def targets(self) -> list[dict[str, Any]]:
        """The active scrape targets with their health ("up", "down", "unknown")."""
        return list(self._api("targets", {"state": "active"})["activeTargets"])

    def rules(self) -> list[dict[str, Any]]:
        """The loaded rule groups, each rule with its health and last error."""
        return list(self._api("rules")["groups"])

    def wait_for(self, what: str, check: Callable[[], Any], timeout: float = 60.0, every: float = 0.25) -> Any:
        """Poll `check()` until it returns something truthy (returned); TimeoutError naming `what`."""
        deadline = time.monotonic() + timeout
        while True:
            found = check()
            if found:
                return found
            if time.monotonic() > deadline:
                raise TimeoutError(f"Prometheus at {self.url}: {what} not seen within {timeout:.0f} s")
            time.sleep(every)

    def __enter__(self) -> PrometheusServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
