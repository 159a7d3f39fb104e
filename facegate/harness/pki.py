"""Certificates for local stacks (tests, benchmarks, the demo): one CA per process, in a temp
directory removed at exit, and a certificate per identity issued on first use.

Services get `localhost` and `127.0.0.1` as names (the harness reaches them there); clients get
the identity asked for. Everything a local stack runs is mutual TLS, as a deployment is.
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
import threading
from pathlib import Path

from facegate import certs, tokens

ADMIN = "admin"  # the user the harness calls services as (operator and auditor)
POLICY = """# Who may call what on a local stack (services/core/access.py explains the roles).
callers:
  - {id: "spiffe://facegate/service/*", roles: [service]}
  - {id: "spiffe://facegate/user/admin", roles: [operator, auditor]}
  - {id: "spiffe://facegate/user/auditor", roles: [auditor]}
  - {id: "spiffe://facegate/*/camera/*", roles: [camera]}
  - {id: "spiffe://facegate/*/door-controller/*", roles: [door-controller]}
  - {id: "spiffe://facegate/integration/*", roles: [integration]}
  # the console's people: their console role narrows this (services/console/roles.py)
  - {id: "spiffe://facegate/console/*", roles: [operator, auditor]}
token_issuers:  # bearer tokens for people and integrations (LocalPKI.token)
  - {issuer: facegate-local, public_key_file: tokens/token.pub, max_minutes: 60,
     subjects: ["spiffe://facegate/user/*", "spiffe://facegate/integration/*"]}
  - {issuer: facegate-console, public_key_file: console-token/token.pub, max_minutes: 15,
     subjects: ["spiffe://facegate/console/*"]}
"""
TOKEN_ISSUER = "facegate-local"


class LocalPKI:
    """A CA in `root` and the certificates issued from it (`root/<kind>/<name>/`)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._lock = threading.Lock()
        if not (root / "ca" / "ca.key").exists():
            certs.init_ca(root / "ca")
        for issuer in ("tokens", "console-token"):  # ours (tests), the console's
            if not (root / issuer / tokens.KEY).exists():
                tokens.keygen(root / issuer)
        self.policy = root / "access.yaml"  # the services' --access-policy
        if not self.policy.exists():
            self.policy.write_text(POLICY)

    def _issued(self, identity: certs.Identity) -> Path:
        out = self.root / identity.kind / (f"{identity.site}-{identity.name}" if identity.site else identity.name)
        with self._lock:
            if not (out / "tls.crt").exists():
                self.reissue(out, identity)
        return out

    def service(self, name: str) -> Path:
        return self._issued(certs.Identity("service", name))

    def user(self, name: str = ADMIN) -> Path:
        return self._issued(certs.Identity("user", name))

    def camera(self, site: str, door: str) -> Path:
        return self._issued(certs.Identity("camera", door, site))

    def door_controller(self, site: str, door: str) -> Path:
        return self._issued(certs.Identity("door-controller", door, site))

    def integration(self, name: str) -> Path:
        return self._issued(certs.Identity("integration", name))

    def token(self, subject: str, scopes: list[str], minutes: float = 15.0) -> str:
        """A bearer token from this PKI's issuer (trusted by its policy for users and integrations)."""
        return tokens.issue(self.root / "tokens" / tokens.KEY, TOKEN_ISSUER, subject, scopes, minutes)

    @property
    def console_token_key(self) -> Path:
        """The key the console signs its users' tokens with (issuer facegate-console)."""
        return self.root / "console-token" / tokens.KEY

    @property
    def ca_file(self) -> Path:
        """The CA certificate, for token callers that present no certificate."""
        return self.root / "ca" / "ca.crt"

    def reissue(self, directory: Path, identity: certs.Identity, hours: float = certs.LEAF_HOURS) -> None:
        """A new key and certificate into `directory` (re-issuing into the same one rotates it)."""
        local = identity.kind == "service"  # servers are reached at localhost / 127.0.0.1 here
        certs.issue(self.root / "ca", directory, identity, ("localhost",) if local else (),
                    ("127.0.0.1",) if local else (), hours)


_default: LocalPKI | None = None
_default_lock = threading.Lock()


def default_pki() -> LocalPKI:
    """This process's PKI for local stacks (created on first use, removed at exit)."""
    global _default
    with _default_lock:
        if _default is None:
            root = Path(tempfile.mkdtemp(prefix="facegate-pki-"))
            atexit.register(shutil.rmtree, root, ignore_errors=True)
            _default = LocalPKI(root)
        return _default
