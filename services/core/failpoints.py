"""Failpoints: named places where a test can have the process killed, to prove that a crash
there leaves nothing unsafe behind (as etcd's and TiKV's failpoints do).

`FACEGATE_FAILPOINTS=gallery.enroll.before_stale_delete` (comma-separated names) makes the
process SIGKILL itself when it reaches that point. Unset (always, outside tests) it costs one
set lookup.
"""

from __future__ import annotations

import os
import signal

_ACTIVE = frozenset(filter(None, os.environ.get("FACEGATE_FAILPOINTS", "").split(",")))


def failpoint(name: str) -> None:
    """Die here, as abruptly as a power cut, if the test armed `name`."""
    if name in _ACTIVE:
        os.kill(os.getpid(), signal.SIGKILL)
