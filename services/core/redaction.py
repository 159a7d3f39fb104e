"""Database targets fit for messages and logs: the passwords they hold replaced by ***.

A target is what --audit-db and --review-db take: a file path, a libpq URI
(`postgresql://user:password@host/db?password=...`) or, refused by the gateway but possibly typed,
a libpq keyword string (`host=db password=...`). A malformed one must not leak either, and the
errors libpq raises about it repeat it, or the part it could not read: `without_password` takes
the passwords out of the target itself or of any message about it.
"""

from __future__ import annotations

import re
from urllib.parse import unquote

HIDDEN = "***"
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")
# password=... in a URI's query or a keyword string (quoted or not)
_PASSWORD_PARAMETER = re.compile(r"(\bpassword\s*=\s*)('(?:[^'\\]|\\.)*'|[^&\s]*)", re.IGNORECASE)


def passwords_in(target: str) -> list[str]:
    """The passwords `target` holds, as written in it and percent-decoded, longest first. The
    user information of a URI ends at its last "@" (an unencoded "@" or "/" in a password is read
    as part of it: more is hidden rather than less)."""
    found = []
    scheme = _SCHEME.match(target)
    if scheme:
        userinfo, at, _ = target[scheme.end():].rpartition("@")
        if at and ":" in userinfo:
            found.append(userinfo.split(":", 1)[1])
    found += [match.group(2) for match in _PASSWORD_PARAMETER.finditer(target)]
    written = [password for password in found if password]
    return sorted({*written, *(unquote(password) for password in written)}, key=len, reverse=True)


def without_password(target: str, text: str | None = None) -> str:
    """`text` (default: `target` itself; or a message about it, such as libpq's error) with every
    password `target` holds replaced by ***."""
    shown = target if text is None else text
    for password in passwords_in(target):
        shown = shown.replace(password, HIDDEN)
    return shown
