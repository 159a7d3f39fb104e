"""A local certificate authority for FaceGate's mutual TLS (`facegate certs init|issue`).

Every caller and every service holds a certificate whose one URI SAN is its SPIFFE id, the
identity the services authorise on:

    spiffe://facegate/service/<name>              a FaceGate service (gateway, matcher, ...)
    spiffe://facegate/<site>/camera/<door>        a camera agent, for one door
    spiffe://facegate/<site>/door-controller/<door>
    spiffe://facegate/user/<name>                 a person at a security desk, the CLI
    spiffe://facegate/integration/<name>          another internal system (calls the matcher)

What `issue` writes is laid out as cert-manager lays out a Kubernetes Secret (`tls.crt` leaf
first, `tls.key` PKCS#8 PEM, `ca.crt`), so a service's `--tls-dir` is the same directory
whether it came from here or from a mounted Secret. Keys are EC P-256 (gRPC's TLS refuses
Ed25519 leaf keys). Lifetimes are short by default (certificates: 7 days; the CA: 1 year):
re-issue into the same directory and the services pick the new files up without a restart.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

TRUST_DOMAIN = "facegate"
NAME = re.compile(r"[A-Za-z0-9._-]{1,64}")  # one path segment of an identity
KINDS = ("service", "camera", "door-controller", "user", "integration")
CA_DAYS, LEAF_HOURS = 365, 7 * 24
CLOCK_SKEW = dt.timedelta(minutes=5)  # certificates start a little in the past: clocks differ


class CertError(ValueError):
    """A certificate cannot be issued as asked."""


@dataclass(frozen=True)
class Identity:
    """Who a certificate names."""

    kind: str
    name: str  # service, user or integration name; the door for cameras and door controllers
    site: str = ""

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise CertError(f"kind: {self.kind!r}; one of {', '.join(KINDS)}")
        per_door = self.kind in ("camera", "door-controller")
        for field, value in (("name", self.name), ("site", self.site)):
            if (value or field == "name" or per_door) and not NAME.fullmatch(value):
                raise CertError(f"{field}: {value!r}; 1-64 letters, digits, '.', '_' or '-'")
        if self.site and not per_door:
            raise CertError(f"site: only cameras and door controllers belong to a site, not a {self.kind}")

    @property
    def spiffe_id(self) -> str:
        if self.kind in ("camera", "door-controller"):
            return f"spiffe://{TRUST_DOMAIN}/{self.site}/{self.kind}/{self.name}"
        return f"spiffe://{TRUST_DOMAIN}/{self.kind}/{self.name}"


def init_ca(directory: Path, days: int = CA_DAYS) -> Path:
    """A new certificate authority in `directory` (`ca.crt`, `ca.key`; refuses to overwrite one)."""
    directory.mkdir(parents=True, exist_ok=True)
    if (directory / "ca.key").exists():
        raise CertError(f"{directory} already holds a CA (ca.key); issue from it, or use another directory")
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "FaceGate"),
                      x509.NameAttribute(NameOID.COMMON_NAME, "FaceGate local CA")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - CLOCK_SKEW).not_valid_after(now + dt.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                         crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256()))
    write_files(directory, {"ca.crt": _pem(cert), "ca.key": _key_pem(key)})
    return directory


def issue(ca_dir: Path, out_dir: Path, identity: Identity, dns_names: tuple[str, ...] = (),
          ips: tuple[str, ...] = (), hours: float = LEAF_HOURS) -> x509.Certificate:
    """A certificate for `identity`, signed by the CA in `ca_dir`, written to `out_dir` as
    `tls.crt`, `tls.key`, `ca.crt` (replacing what is there: that is how a certificate is rotated).
    Services get both server and client use (the gateway calls the other services with its own);
    everyone else is a client only. `dns_names`/`ips`: where a service is reached (its SANs)."""
    try:
        ca_cert = x509.load_pem_x509_certificate((ca_dir / "ca.crt").read_bytes())
        ca_key = serialization.load_pem_private_key((ca_dir / "ca.key").read_bytes(), password=None)
    except (OSError, ValueError) as exc:
        raise CertError(f"{ca_dir}: no usable CA ({exc}); create one with `facegate certs init {ca_dir}`") from exc
    if not isinstance(ca_key, ec.EllipticCurvePrivateKey):
        raise CertError(f"{ca_dir}/ca.key: not an EC key")
    if not 0 < hours <= 24 * 366:
        raise CertError(f"hours: {hours}; a certificate lives more than 0 hours and at most a year")
    if identity.kind != "service" and (dns_names or ips):
        raise CertError("DNS names and IP addresses are for services (servers), not for clients")
    try:
        addresses = [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ips]
    except ValueError as exc:
        raise CertError(f"ips: {exc}") from exc
    sans: list[x509.GeneralName] = [x509.UniformResourceIdentifier(identity.spiffe_id)]
    sans += [x509.DNSName(name) for name in dns_names]
    sans += addresses
    uses = [ExtendedKeyUsageOID.CLIENT_AUTH] + ([ExtendedKeyUsageOID.SERVER_AUTH] if identity.kind == "service" else [])
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "FaceGate"),
                                     x509.NameAttribute(NameOID.COMMON_NAME, identity.spiffe_id[:64])]))
            .issuer_name(ca_cert.subject).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - CLOCK_SKEW).not_valid_after(now + dt.timedelta(hours=hours))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .add_extension(x509.ExtendedKeyUsage(uses), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    write_files(out_dir, {"tls.key": _key_pem(key), "tls.crt": _pem(cert), "ca.crt": _pem(ca_cert)})
    return cert


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def write_file(path: Path, data: bytes, mode: int) -> None:
    """Replace `path` atomically (a reader sees the old file or the new one, never half of one),
    with `mode` (the temporary file is owner-only from the start)."""
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(data)
        os.chmod(temporary, mode)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def write_files(directory: Path, files: dict[str, bytes]) -> None:
    """Each file replaced atomically; keys readable by their owner only. Readers check that key
    and certificate match, so the moment between two replacements is not a problem."""
    directory.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        write_file(directory / name, data, 0o600 if name.endswith(".key") else 0o644)
