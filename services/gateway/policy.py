"""Access policy: may this recognised person pass this door now?"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from services.gateway.doors import Door


@dataclass(frozen=True)
class PolicyAnswer:
    allowed: bool
    reason: str


def may_pass(door: Door, identity_groups: tuple[str, ...] | list[str], moment: dt.datetime) -> PolicyAnswer:
    """Allowed when the door's schedule is open at `moment` (in its site's time zone) and the
    person is in one of the door's groups (a door without groups admits anyone enrolled)."""
    if not door.open_now(moment):
        local = moment.astimezone(door.schedule_zone()).strftime("%a %H:%M")
        return PolicyAnswer(False, f"outside the door's schedule ({local} {door.timezone})")
    if door.groups and not door.groups.intersection(identity_groups):
        held = ", ".join(sorted(identity_groups)) or "none"
        return PolicyAnswer(False, f"not in a group allowed here ({', '.join(sorted(door.groups))}; has {held})")
    return PolicyAnswer(True, "allowed")
