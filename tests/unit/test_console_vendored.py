"""The console's vendored browser libraries are the files VENDORED.md names: an edit of one is deliberate."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pytest

VENDOR = Path(__file__).resolve().parents[2] / "services" / "console" / "static" / "vendor"
ROW = re.compile(r"^\|\s*(?P<file>[^|\s]+)\s*\|[^|]*\|[^|]*\|[^|]*\|\s*(?P<sha256>[0-9a-f]{64})\s*\|$")


def table() -> dict[str, str]:
    """file -> sha256, from VENDORED.md's table."""
    rows = (ROW.match(line.strip()) for line in (VENDOR / "VENDORED.md").read_text().splitlines())
    return {m["file"]: m["sha256"] for m in rows if m}


def test__the_table_lists_every_vendored_script_and_only_those():
    assert set(table()) == {p.name for p in VENDOR.glob("*.js")} == {"htmx.min.js", "sse.min.js"}


@pytest.mark.parametrize("name", ["htmx.min.js", "sse.min.js"])
def test__each_vendored_script_matches_its_recorded_sha256(name):
    digest = hashlib.sha256((VENDOR / name).read_bytes()).hexdigest()

    assert digest == table()[name], f"{name} changed: if deliberate, record its new sha256 in VENDORED.md"
