"""Bearer-token issuing (`facegate tokens keygen|issue`): the signing side of
`services/core/tokens.py`.

An issuer is an Ed25519 key pair: `token.key` stays with whoever issues tokens (a console, an
operator's workstation), `token.pub` goes beside the access policy, under `token_issuers`. The
tokens are JWTs with the claims the services require; short lifetimes are the revocation story.
"""

from __future__ import annotations

from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from facegate.certs import write_files
from services.core.tokens import Signer, TokenError

KEY, PUBLIC = "token.key", "token.pub"


class TokenIssueError(ValueError):
    """A token or key cannot be made as asked."""


def keygen(directory: Path) -> Path:
    """A new issuer key pair in `directory` (refuses to overwrite one); returns the public key's path."""
    directory.mkdir(parents=True, exist_ok=True)
    if (directory / KEY).exists():
        raise TokenIssueError(f"{directory / KEY} exists; use it, or choose another directory")
    key = ed25519.Ed25519PrivateKey.generate()
    write_files(directory, {  # the key readable by its owner only
        KEY: key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                               serialization.NoEncryption()),
        PUBLIC: key.public_key().public_bytes(serialization.Encoding.PEM,
                                              serialization.PublicFormat.SubjectPublicKeyInfo)})
    return directory / PUBLIC


def issue(key_file: Path, issuer: str, subject: str, scopes: list[str], minutes: float) -> str:
    """A signed token for `subject` with `scopes` (roles), valid for `minutes` from now."""
    try:
        return Signer(key_file, issuer).sign(subject, scopes, minutes)
    except TokenError as exc:
        raise TokenIssueError(str(exc)) from None
