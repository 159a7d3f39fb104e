"""Failpoints: named places where a test can make the process die or a call fail, to prove that
a crash or a failure there leaves nothing unsafe behind (as etcd's and TiKV's failpoints do).

`FACEGATE_FAILPOINTS` holds comma-separated `name` (the process SIGKILLs itself there, as
abruptly as a power cut), `name=unavailable` (the call fails with UNAVAILABLE there) or
`name=error` (an unexpected exception there, as a bug would raise), e.g.
`gallery.enroll.before_stale_delete`. Unset (always, outside tests) a failpoint costs one dict
lookup.
"""

from __future__ import annotations

import os
import signal

from services.core.errors import Unavailable

ACTIONS = ("kill", "unavailable", "error")


def _parse(text: str) -> dict[str, str]:
    armed = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, _, action = item.partition("=")
        if (action or "kill") not in ACTIONS:
            raise SystemExit(f"FACEGATE_FAILPOINTS: {item!r}; the action must be one of {', '.join(ACTIONS)}")
        armed[name] = action or "kill"
    return armed


_ARMED = _parse(os.environ.get("FACEGATE_FAILPOINTS", ""))


def failpoint(name: str) -> None:
    """Die or fail here if a test armed `name`."""
    action = _ARMED.get(name)
    if action == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    elif action == "error":
        raise RuntimeError(f"failpoint {name} is armed: an unexpected error with internals in its text "
                           "(/srv/secret/path, SELECT * FROM templates)")
    elif action == "unavailable":
        raise Unavailable(f"failpoint {name} is armed (FACEGATE_FAILPOINTS): failing as a broken backend would")
