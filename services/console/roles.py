"""What each console role may do, page by page, and what it may ask the services for.

The console checks a page's permission before it does anything; the services check again: every
call the console makes for a person carries a token naming them with the service roles of
`SCOPES` (narrowed to those by the token), so a console bug cannot give a viewer an operator's
powers at the gateway or the matcher.
"""

from __future__ import annotations

ROLES = ("admin", "operator", "auditor", "viewer")

# permission -> console roles that have it
PERMISSIONS: dict[str, frozenset[str]] = {
    "doors": frozenset({"admin", "operator", "auditor", "viewer"}),  # live doors
    "events": frozenset({"admin", "operator", "auditor"}),  # decisions and admin actions, CSV
    "people": frozenset({"admin", "operator"}),  # the gallery: search, details
    "enrol": frozenset({"admin", "operator"}),  # enrol, edit, erase, import
    "review": frozenset({"admin", "operator"}),  # answer reviews, add templates
    "accounts": frozenset({"admin"}),  # console accounts
}

# console role -> the service roles (services/core/access.py) its tokens carry
SCOPES: dict[str, tuple[str, ...]] = {
    "admin": ("operator", "auditor"),
    "operator": ("operator", "auditor"),
    "auditor": ("auditor",),
    "viewer": ("auditor",),  # WatchDecisions/ListDecisions for the live page; the console shows it nothing else
}

DESCRIPTIONS = {
    "admin": "everything, and the console's accounts",
    "operator": "enrol and erase people, answer reviews, see doors and events",
    "auditor": "see doors, events and admin actions (read only)",
    "viewer": "see the live doors only",
}


def allowed(role: str, permission: str) -> bool:
    return role in PERMISSIONS[permission]
