"""The console's settings: flags, then FACEGATE_* environment variables, then validated defaults."""

from __future__ import annotations

import dataclasses
import ipaddress

from services.core.admission import parse_rate
from services.core.config import in_range, one_of, positive, setting, valid_port


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclasses.dataclass(frozen=True)
class ConsoleSettings:
    """The FaceGate console: the web page where a security desk enrols, reviews and watches doors."""

    host: str = setting("127.0.0.1", "address to bind the web and metrics ports to")
    port: int = setting(8443, "web port (HTTPS, or HTTP on a loopback address; 0 = pick a free one)", valid_port)
    metrics_port: int = setting(0, "Prometheus /metrics port (0 = pick a free one)", valid_port)
    log_level: str = setting("INFO", "DEBUG, INFO, WARNING or ERROR", one_of("DEBUG", "INFO", "WARNING", "ERROR"))
    gateway_address: str = setting("127.0.0.1:50050", "gateway host:port")
    matcher_address: str = setting("127.0.0.1:50053", "matcher host:port")
    tls_dir: str = setting("", "the console's client certificate for the services (tls.crt, tls.key, ca.crt: "
                               "`facegate certs issue service console`); required unless --insecure")
    insecure: bool = setting(False, "plaintext gRPC to the services, acting for nobody: only for a throwaway local "
                                    "test")
    token_key_file: str = setting("", "Ed25519 key the console signs its users' short-lived tokens with (`facegate "
                                      "tokens keygen`; its token.pub goes under token_issuers in the access "
                                      "policy); required unless --insecure")
    token_issuer: str = setting("facegate-console", "the tokens' issuer name, as the access policy lists it")
    token_minutes: float = setting(5.0, "lifetime of each token the console sends for a user", in_range(1, 60))
    accounts_db: str = setting("./facegate-console.db", "SQLite file of the console's accounts and sessions")
    https_cert_file: str = setting("", "PEM certificate (chain) the console serves HTTPS with; with "
                                       "--https-key-file")
    https_key_file: str = setting("", "PEM private key of --https-cert-file")
    behind_tls_proxy: bool = setting(False, "plain HTTP on a non-loopback address, for a TLS-terminating proxy "
                                            "(an Ingress) in front; browsers must only ever reach it over HTTPS")
    trusted_proxies: str = setting("", "with --behind-tls-proxy: the proxy's addresses or networks, comma separated "
                                       "(e.g. 10.0.0.0/8); only their X-Forwarded-For/-Proto headers are believed, so "
                                       "nobody else can pick the client address the login limits count")
    session_hours: float = setting(12.0, "a login lasts at most this long", in_range(0.1, 24 * 7))
    idle_minutes: float = setting(30.0, "a login unused this long ends", in_range(1, 24 * 60))
    login_rate_limit: str = setting("5/minute", "failed logins one account may have in a moving window before "
                                                "it must wait", parse_rate)
    login_address_rate_limit: str = setting("30/minute", "failed logins from one client address", parse_rate)
    password_time_cost: int = setting(3, "argon2id passes (RFC 9106's second recommendation: 3)", in_range(1, 10))
    password_memory_kib: int = setting(65536, "argon2id memory, KiB (64 MiB)", in_range(8, 4 * 1024 * 1024))
    deadline_seconds: float = setting(30.0, "deadline of each call to the services, s", positive)
    max_upload_mb: int = setting(40, "largest upload (photos of one enrolment, a zip to import), MiB",
                                 in_range(1, 1024))

    def __post_init__(self) -> None:
        if not self.insecure and not (self.tls_dir and self.token_key_file):
            raise ValueError("--tls-dir and --token-key-file (FACEGATE_TLS_DIR, FACEGATE_TOKEN_KEY_FILE) are required: "
                             "the console's certificate and the key it signs its users' tokens with; or --insecure")
        if self.insecure and (self.tls_dir or self.token_key_file):
            raise ValueError("--insecure with --tls-dir or --token-key-file: choose one")
        if self.behind_tls_proxy and not self.trusted_proxies:
            raise ValueError("--behind-tls-proxy needs --trusted-proxies: the proxy's addresses or networks")
        if bool(self.https_cert_file) != bool(self.https_key_file):
            raise ValueError("--https-cert-file and --https-key-file go together")
        if not self.https_cert_file and not self.behind_tls_proxy and not _loopback(self.host):
            raise ValueError(f"--host {self.host} without HTTPS: passwords and session cookies would cross the network "
                             "in plaintext; give --https-cert-file/--https-key-file, or --behind-tls-proxy when a "
                             "TLS-terminating proxy is the only way in")

    @property
    def https(self) -> bool:
        return bool(self.https_cert_file)
