"""Bearer tokens: what a service accepts from an issuer its access policy trusts, and what not."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives import serialization

from facegate import tokens
from services.core.access import ROLES, PolicyError, parse_policy
from services.core.tokens import AUDIENCE, TokenError, verify

ALICE = "spiffe://facegate/user/alice"


@pytest.fixture
def issuer(tmp_path: Path) -> tuple[Path, dict]:
    """A key pair and the policy trusting it for users, tokens of up to 30 minutes."""
    tokens.keygen(tmp_path)
    policy = {"callers": [{"id": "spiffe://facegate/user/*", "roles": ["operator", "auditor"]}],
              "token_issuers": [{"issuer": "console", "public_key_file": "token.pub", "max_minutes": 30,
                                 "subjects": ["spiffe://facegate/user/*"]}]}
    return tmp_path / tokens.KEY, parse_policy(policy, base=tmp_path).issuers


def claims(**changes: object) -> dict:
    now = int(time.time())
    base = {"iss": "console", "sub": ALICE, "aud": AUDIENCE, "iat": now, "exp": now + 600, "scope": "auditor"}
    base.update(changes)
    return {k: v for k, v in base.items() if v is not None}


def signed(key_file: Path, payload: dict) -> str:
    key = serialization.load_pem_private_key(key_file.read_bytes(), password=None)
    return jwt.encode(payload, key, algorithm="EdDSA")


def test__a_token_from_a_trusted_issuer_names_its_subject_and_scopes(issuer):
    key_file, issuers = issuer

    token = tokens.issue(key_file, "console", ALICE, ["auditor"], minutes=15)

    verified = verify(token, issuers, ROLES)
    assert (verified.subject, verified.scopes, verified.issuer) == (ALICE, {"auditor"}, "console")


@pytest.mark.parametrize(("changes", "reason"), [
    ({"exp": int(time.time()) - 120}, "expired"),
    ({"aud": "someone-else"}, "Audience doesn't match"),
    ({"iss": "mallory"}, "issuer 'mallory' is not trusted"),
    ({"sub": "spiffe://facegate/service/gateway"}, "may not speak for"),
    ({"scope": "root"}, "scope 'root'"),
    ({"scope": None}, "scope"),
    ({"exp": int(time.time()) + 3 * 3600}, "at most 30 minutes"),
])
def test__a_token_that_is_not_current_or_claims_too_much_is_refused(issuer, changes, reason):
    key_file, issuers = issuer

    with pytest.raises(TokenError, match=reason):
        verify(signed(key_file, claims(**changes)), issuers, ROLES)


def test__a_token_signed_by_another_key_is_refused(issuer, tmp_path):
    _, issuers = issuer
    other = tmp_path / "other"
    tokens.keygen(other)

    with pytest.raises(TokenError, match="Signature verification failed"):
        verify(signed(other / tokens.KEY, claims()), issuers, ROLES)


def test__the_algorithm_comes_from_the_issuer_key_not_the_token(issuer):
    """Neither an unsigned token nor one MACed with the public key (the classic confusion) passes."""
    key_file, issuers = issuer
    public = issuers["console"].key.public_bytes(serialization.Encoding.PEM,
                                                 serialization.PublicFormat.SubjectPublicKeyInfo)
    unsigned = jwt.encode(claims(), None, algorithm="none")
    header = base64.urlsafe_b64encode(json.dumps({"alg": "HS256", "typ": "JWT"}).encode()).rstrip(b"=").decode()
    body = jwt.encode(claims(), "x" * 32, algorithm="HS256").split(".")[1]
    mac = hmac.new(public, f"{header}.{body}".encode(), hashlib.sha256).digest()
    confused = f"{header}.{body}.{base64.urlsafe_b64encode(mac).rstrip(b'=').decode()}"

    for token in (unsigned, confused):
        with pytest.raises(TokenError, match="alg value is not allowed"):
            verify(token, issuers, ROLES)


def test__garbage_and_oversized_tokens_are_refused_without_echoing_them(issuer):
    _, issuers = issuer

    for token in ("", "not.a.jwt", "x" * 5_000, "x" * 10_000, "eyJ" + "x" * 3_000 + ".e30.sig"):
        with pytest.raises(TokenError) as caught:
            verify(token, issuers, ROLES)
        assert "x" * 100 not in str(caught.value)


@pytest.mark.parametrize("times", [{"exp": "tomorrow"}, {"iat": "now"}, {"exp": True}])
def test__times_that_are_not_numbers_are_refused(issuer, times):
    key_file, issuers = issuer

    with pytest.raises(TokenError):
        verify(signed(key_file, claims(**times)), issuers, ROLES)


@pytest.mark.parametrize(("entry", "error"), [
    ({"issuer": "c", "public_key_file": "missing.pub", "subjects": ["spiffe://facegate/user/*"]}, "cannot read"),
    ({"issuer": "c", "public_key_file": "token.pub", "subjects": []}, "subjects"),
    ({"issuer": "c", "public_key_file": "token.pub", "subjects": ["spiffe://facegate/user/*"], "max_minutes": 10_000},
     "max_minutes"),
    ({"issuer": "c", "public_key_file": "token.key", "subjects": ["spiffe://facegate/user/*"]}, "not a PEM public"),
    ({"issuer": "c", "key": "x"}, "a mapping with issuer"),
])
def test__an_invalid_token_issuer_is_refused_naming_the_field(tmp_path, entry, error):
    tokens.keygen(tmp_path)

    with pytest.raises(PolicyError) as caught:
        parse_policy({"callers": [], "token_issuers": [entry]}, base=tmp_path)
    assert "token_issuers[0]" in str(caught.value) and error in str(caught.value)


def test__an_issuer_key_must_be_asymmetric_ed25519_or_p256(tmp_path):
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    (tmp_path / "rsa.pub").write_bytes(key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    entry = {"issuer": "c", "public_key_file": "rsa.pub", "subjects": ["spiffe://facegate/user/*"]}

    with pytest.raises(PolicyError, match="Ed25519 or EC P-256"):
        parse_policy({"callers": [], "token_issuers": [entry]}, base=tmp_path)
