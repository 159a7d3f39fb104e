"""Mutual TLS for servers and clients, from a directory laid out as cert-manager lays out a
Secret: `tls.crt` (leaf first), `tls.key`, `ca.crt` (`facegate certs issue` writes the same).

Servers re-read the directory when its files change (checked at each TLS handshake: a `stat`
of three files), so a rotated certificate is served to the next connection without a restart;
connections already open keep the certificate they were made with (TLS checks at the
handshake). A half-written rotation (a new certificate beside the old key) is not taken: the
files are used only once key and certificate match.

`facegate_tls_certificate_expiry_timestamp_seconds` says when the certificates a process
presents expire (the earliest in `tls.crt`'s chain): `use="server"`, the one its next
handshake serves (read at each scrape: a rotation not yet served counts, since it is served
from the next connection on); `use="client"`, the one its channels were opened with (a
process that never re-opens them keeps presenting it, and the alert says so).
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from pathlib import Path

import grpc
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from prometheus_client import Gauge

log = logging.getLogger("facegate.tls")

FILES = ("tls.crt", "tls.key", "ca.crt")
CERTIFICATE_EXPIRY = Gauge("facegate_tls_certificate_expiry_timestamp_seconds",
                           "When the certificate this process presents expires (earliest in its chain), Unix time",
                           ["use"])  # server | client


class TLSError(ValueError):
    """A TLS directory cannot be used."""


@dataclass(frozen=True)
class TLSMaterial:
    """One consistent reading of a TLS directory."""

    certificate_chain: bytes
    private_key: bytes
    root_certificates: bytes
    spiffe_id: str  # the identity the certificate names
    stamp: tuple[float, ...]  # the files' modification times when read
    expires_at: float  # Unix time the chain stops being valid: its earliest notAfter (leaf or intermediate)


def load(directory: Path) -> TLSMaterial:
    """Read and check a TLS directory: the files are there, the key is the certificate's, and the
    certificate names one SPIFFE id."""
    try:
        when = stamp(directory)
        chain, key, roots = ((directory / name).read_bytes() for name in FILES)
    except OSError as exc:
        raise TLSError(f"{directory}: needs {', '.join(FILES)} ({exc.strerror}: {exc.filename}); issue them with "
                       "`facegate certs issue`, or mount the service's TLS Secret there") from exc
    try:
        cert = x509.load_pem_x509_certificate(chain)
        presented = x509.load_pem_x509_certificates(chain)
        private = serialization.load_pem_private_key(key, password=None)
        x509.load_pem_x509_certificates(roots)
    except ValueError as exc:
        raise TLSError(f"{directory}: not PEM certificates and key ({exc})") from exc
    if private.public_key().public_bytes(serialization.Encoding.DER,
                                         serialization.PublicFormat.SubjectPublicKeyInfo) != \
            cert.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo):
        raise TLSError(f"{directory}: tls.key is not the key of tls.crt (a rotation half-way through?)")
    expires_at = min(c.not_valid_after_utc.timestamp() for c in presented)
    return TLSMaterial(chain, key, roots, spiffe_id_of(cert), when, expires_at)


def stamp(directory: Path) -> tuple[float, ...]:
    """The TLS files' modification times: a cheap test for a rotation (OSError if one is missing)."""
    return tuple((directory / name).stat().st_mtime for name in FILES)


def spiffe_id_of(cert: x509.Certificate) -> str:
    try:
        uris = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
            x509.UniformResourceIdentifier)
    except x509.ExtensionNotFound:
        uris = []
    ids = [u for u in uris if u.startswith("spiffe://")]
    if len(ids) != 1:
        raise TLSError(f"the certificate names {len(ids)} SPIFFE ids ({', '.join(ids) or 'none'}); it must name one")
    return ids[0]


class ServerTLS:
    """Server credentials that follow the directory: gRPC asks `_fetch` at every handshake."""

    def __init__(self, directory: Path) -> None:
        self._directory = directory
        self._lock = threading.Lock()
        self.material = load(directory)  # a bad directory stops the service at start
        self._on_disk = (self.material.stamp, self.material.expires_at)  # what the next handshake serves
        CERTIFICATE_EXPIRY.labels("server").set_function(self.next_expiry)

    def credentials(self, client_certificates: bool = True) -> grpc.ServerCredentials:
        """Mutual TLS; or, with `client_certificates=False`, TLS that asks callers for no
        certificate (gRPC then does not request one at all: the bearer-token port)."""
        return grpc.dynamic_ssl_server_credentials(self._configuration(self.material), self._fetch,
                                                   require_client_authentication=client_certificates)

    @staticmethod
    def _configuration(material: TLSMaterial) -> grpc.ServerCertificateConfiguration:
        return grpc.ssl_server_certificate_configuration([(material.private_key, material.certificate_chain)],
                                                         root_certificates=material.root_certificates)

    def _fetch(self) -> grpc.ServerCertificateConfiguration | None:
        """Called by gRPC at each handshake (synchronously: keep it cheap). None keeps what is served."""
        with self._lock:
            try:
                if stamp(self._directory) == self.material.stamp:
                    return None
                fresh = load(self._directory)
            except (OSError, TLSError) as exc:
                log.warning("TLS files in %s not reloaded, serving the previous ones: %s", self._directory, exc)
                return None
            self.material = fresh
        log.info("TLS certificate reloaded", extra={"fields": {"directory": str(self._directory),
                                                               "identity": fresh.spiffe_id}})
        return self._configuration(fresh)

    def next_expiry(self) -> float:
        """When the certificate the next handshake serves expires (read at each scrape). Not
        `material`'s: that is reloaded only at a handshake, and a server whose callers keep
        their connections open would report a rotated-away certificate as expiring. A
        rotation caught half-way is not served, so it does not count either."""
        with self._lock:
            try:
                current = stamp(self._directory)
                if current != self._on_disk[0]:
                    self._on_disk = (current, load(self._directory).expires_at)
            except (OSError, TLSError):
                return self.material.expires_at
            return self._on_disk[1]


def channel_credentials(directory: Path | None, token: str | None = None,
                        ca_file: Path | None = None) -> grpc.ChannelCredentials:
    """Client credentials: trust the directory's CA and present its certificate (mutual TLS).
    With a bearer `token` as well, every call also carries it (speaking for its subject); with
    a token and no directory, TLS trusting `ca_file` only (a service's --token-port)."""
    if directory is not None:
        material = load(directory)
        tls = grpc.ssl_channel_credentials(material.root_certificates, material.private_key,
                                           material.certificate_chain)
        CERTIFICATE_EXPIRY.labels("client").set(material.expires_at)  # presented until channels are re-opened
    elif token is not None and ca_file is not None:
        try:
            roots = ca_file.read_bytes()
            x509.load_pem_x509_certificates(roots)
        except OSError as exc:
            raise TLSError(f"{ca_file}: cannot read the CA certificate ({exc.strerror})") from exc
        except ValueError as exc:
            raise TLSError(f"{ca_file}: not a PEM CA certificate ({exc})") from exc
        tls = grpc.ssl_channel_credentials(roots)
    else:
        raise TLSError("a certificate directory, or a bearer token and the CA certificate to trust, is needed")
    if token is None:
        return tls
    return grpc.composite_channel_credentials(tls, grpc.access_token_call_credentials(token))


def peer_id(context: grpc.aio.ServicerContext) -> str:
    """The caller's SPIFFE id from its client certificate ("" on a plaintext connection)."""
    values = (context.auth_context() or {}).get("peer_spiffe_id") or [b""]
    return values[0].decode("utf-8", "replace")
