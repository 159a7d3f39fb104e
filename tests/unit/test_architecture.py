"""The floors of docs/architecture.md hold: no service imports another, the core imports no client,
nothing shipped imports the harness (import-linter, configured in pyproject.toml)."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

from tests.conftest import REPO

LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"


def contracts() -> list[dict]:
    return tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]


def test__the_import_rules_between_the_floors_are_kept():
    result = subprocess.run([str(LINT_IMPORTS), "--no-cache"], cwd=REPO, capture_output=True, text=True)

    assert result.returncode == 0, result.stdout + result.stderr


def test__the_floors_in_the_architecture_document_are_the_ones_enforced():
    document = (REPO / "docs" / "architecture.md").read_text()
    block = re.search(r"<!-- floors:.*?-->\s*```\n(.*?)```", document, re.DOTALL)
    layers = next(c for c in contracts() if c["type"] == "layers")["layers"]

    assert block is not None, "docs/architecture.md lost its floors block"
    assert block.group(1).strip().splitlines() == layers


def test__every_service_folder_is_on_a_floor():
    layers = " | ".join(next(c for c in contracts() if c["type"] == "layers")["layers"])
    on_a_floor = set(re.findall(r"services\.(\w+)", layers))
    folders = {p.name for p in (REPO / "services").iterdir() if (p / "__init__.py").is_file()}

    assert folders == on_a_floor, "a new folder under services/ must be placed in [tool.importlinter] layers"
