"""The generated code matches the protos (regenerate with `make proto`)."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import REPO


def test__generated_code_is_not_stale():
    result = subprocess.run([sys.executable, "tools/gen_proto.py", "--check"], cwd=REPO, capture_output=True, text=True)

    assert result.returncode == 0, result.stderr
