"""Bearer tokens: signed JWTs, the second way in for callers that cannot hold a client
certificate (a web console acting for the person logged in, a script on a laptop).

A token is checked against the issuers the access policy trusts (`token_issuers`): each names
its `iss`, its public key (Ed25519 or EC P-256, so tokens are signed, never shared-secret MACs),
the identities it may speak for, and how long its tokens may live. A token must carry:

    iss    an issuer the policy trusts        aud    "facegate"
    sub    a SPIFFE id (like a certificate's) exp, iat   at most the issuer's max lifetime apart
    scope  space-separated roles: the token's caller gets the roles the policy gives `sub`
           *and* the token names (a token narrows what its subject may do, never widens it)

The algorithm comes from the issuer's key, not from the token's header, so neither "none" nor
an HMAC keyed with the public key is accepted. Tokens are not revocable one by one: keep them
short (minutes) and drop an issuer from the policy to revoke all of its tokens.
"""

from __future__ import annotations

import re
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

AUDIENCE = "facegate"
LEEWAY_SECONDS = 30  # clocks differ a little
MAX_TOKEN_CHARS = 8192
REQUIRED = ["iss", "sub", "aud", "exp", "iat", "scope"]


class TokenError(ValueError):
    """A bearer token is not accepted (the message says why, never echoes the token)."""


@dataclass(frozen=True)
class Issuer:
    """Someone whose tokens the policy accepts."""

    name: str  # the tokens' `iss`
    key: ed25519.Ed25519PublicKey | ec.EllipticCurvePublicKey
    subjects: tuple[re.Pattern[str], ...]  # identities it may speak for
    max_minutes: int

    @property
    def algorithm(self) -> str:
        return "EdDSA" if isinstance(self.key, ed25519.Ed25519PublicKey) else "ES256"


@dataclass(frozen=True)
class Claims:
    """What a verified token says."""

    subject: str
    scopes: frozenset[str]
    issuer: str


def load_public_key(path: Path) -> ed25519.Ed25519PublicKey | ec.EllipticCurvePublicKey:
    """An issuer's public key (PEM): Ed25519 or EC P-256."""
    try:
        key = serialization.load_pem_public_key(path.read_bytes())
    except OSError as exc:
        raise TokenError(f"{path}: cannot read ({exc.strerror})") from exc
    except ValueError as exc:
        raise TokenError(f"{path}: not a PEM public key ({exc})") from exc
    if isinstance(key, ed25519.Ed25519PublicKey):
        return key
    if isinstance(key, ec.EllipticCurvePublicKey) and isinstance(key.curve, ec.SECP256R1):
        return key
    raise TokenError(f"{path}: an Ed25519 or EC P-256 public key is needed, not {type(key).__name__}")


def verify(token: str, issuers: dict[str, Issuer], roles: tuple[str, ...]) -> Claims:
    """The claims of `token` if an issuer in `issuers` signed it, it is current, and it names
    a subject the issuer may speak for and only known `roles`."""
    if len(token) > MAX_TOKEN_CHARS:
        raise TokenError(f"longer than {MAX_TOKEN_CHARS} characters")
    try:
        unverified = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError as exc:
        raise TokenError(f"not a JWT ({exc})") from None
    named = unverified.get("iss")
    issuer = issuers.get(named) if isinstance(named, str) else None
    if issuer is None:
        raise TokenError(f"issuer {str(named)[:64]!r} is not trusted by the access policy")
    try:
        claims = jwt.decode(token, issuer.key, algorithms=[issuer.algorithm], audience=AUDIENCE,
                            issuer=issuer.name, leeway=LEEWAY_SECONDS, options={"require": REQUIRED})
    except jwt.ExpiredSignatureError:
        raise TokenError("expired; ask its issuer for a new one") from None
    except jwt.PyJWTError as exc:
        raise TokenError(f"{exc} (issuer {issuer.name!r})") from None
    if not all(isinstance(claims[t], (int, float)) and not isinstance(claims[t], bool) for t in ("exp", "iat")):
        raise TokenError("exp and iat must be numbers (seconds since the epoch)")
    lifetime = claims["exp"] - claims["iat"]
    if lifetime > issuer.max_minutes * 60:
        raise TokenError(f"lives {lifetime} s; issuer {issuer.name!r} may issue tokens of at most "
                         f"{issuer.max_minutes} minutes")
    subject, scope = claims["sub"], claims["scope"]
    if not isinstance(subject, str) or not any(p.fullmatch(subject) for p in issuer.subjects):
        raise TokenError(f"issuer {issuer.name!r} may not speak for {str(subject)[:140]!r}")
    scopes = frozenset(scope.split()) if isinstance(scope, str) else frozenset()
    if not scopes or not scopes <= set(roles):
        raise TokenError(f"scope {str(scope)[:140]!r}: space-separated roles, some of {', '.join(roles)}")
    return Claims(subject, scopes, issuer.name)


class Signer:
    """The issuing side: an issuer's Ed25519 private key, loaded once (a console signs a token
    per user action; `facegate tokens issue` one at a time)."""

    def __init__(self, key_file: Path, issuer: str) -> None:
        try:
            key = serialization.load_pem_private_key(key_file.read_bytes(), password=None)
        except OSError as exc:
            raise TokenError(f"{key_file}: cannot read ({exc.strerror})") from exc
        except ValueError as exc:
            raise TokenError(f"{key_file}: not a PEM private key ({exc})") from exc
        if not isinstance(key, ed25519.Ed25519PrivateKey):
            raise TokenError(f"{key_file}: an Ed25519 key is needed (`facegate tokens keygen`)")
        self._key, self.issuer = key, issuer

    def sign(self, subject: str, scopes: list[str], minutes: float) -> str:
        """A token for `subject` with `scopes` (roles), valid for `minutes` from now."""
        if not scopes:
            raise TokenError("at least one scope (a role, e.g. operator) is needed")
        if not 0 < minutes <= 1440:
            raise TokenError(f"minutes: {minutes}; 0-1440 (the access policy caps each issuer lower still)")
        now = int(time.time())
        claims = {"iss": self.issuer, "sub": subject, "aud": AUDIENCE, "iat": now, "nbf": now,
                  "exp": now + int(minutes * 60), "scope": " ".join(scopes), "jti": uuid.uuid4().hex}
        return jwt.encode(claims, self._key, algorithm="EdDSA")
