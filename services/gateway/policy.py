"""Access policy: may this recognised person pass this door now?"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from services.gateway.doors import Door


@dataclass(frozen=True)
class PolicyAnswer:
    allowed: bool
    reason: str


def may_pass(door: Door, identity_groups: tuple[str, ...] | list[str], moment: dt.datetime,
             identity_site: str = "") -> PolicyAnswer:
    """Allowed when the person belongs to the door's site or to no site, the door's schedule is
    open at `moment` (in its site's time zone) and the person is in one of the door's groups (a
    door without groups admits anyone enrolled). The site is checked here as well as by the
    matcher's search: templates a crash left under a person's former site must not open its doors."""
    if identity_site and identity_site != door.site:
        return PolicyAnswer(False, f"enrolled at site {identity_site!r}, not at this door's site {door.site!r}")
    if not door.open_now(moment):
        local = moment.astimezone(door.schedule_zone()).strftime("%a %H:%M")
        return PolicyAnswer(False, f"outside the door's schedule ({local} {door.timezone})")
    if door.groups and not door.groups.intersection(identity_groups):
        held = ", ".join(sorted(identity_groups)) or "none"
        return PolicyAnswer(False, f"not in a group allowed here ({', '.join(sorted(door.groups))}; has {held})")
    return PolicyAnswer(True, "allowed")
