"""Run the four services as separate local processes on 127.0.0.1 (for `make run` and tests).

Each service is `python -m services.<name>` on free ports, logging to `<workdir>/<name>.log`;
`start()` returns when every one reports SERVING on the standard health service.
"""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from facegate.harness.pki import LocalPKI, default_pki
from services.core.channels import blocking_channel

SERVICES = ("detector", "embedder", "matcher", "gateway")


_handed_out: set[int] = set()
_ports = random.Random()  # seeded from the OS: concurrent test processes pick different ports


def free_port() -> int:
    """A port for a service to listen on: free now, not handed out before by this process, and
    below the kernel's ephemeral range. (Port 0's pick comes from that range, which outgoing
    connections also draw from: between our check and the service's bind, a client socket
    could take it, and did.)"""
    try:
        ephemeral_low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        ephemeral_low = 32768
    for _ in range(1000):
        port = _ports.randrange(10_000, max(10_001, ephemeral_low))
        if port in _handed_out:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        _handed_out.add(port)
        return port
    raise RuntimeError("no free port below the ephemeral range after 1000 tries")


def health_status(address: str, timeout: float = 1.0) -> int | None:
    """The health service's status for the whole server, or None if it does not answer
    (`address`: a service's plaintext --health-port)."""
    with grpc.insecure_channel(address) as channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=""),
                                                              timeout=timeout)
        except grpc.RpcError:
            return None
    return int(reply.status)


class ServiceProcess:
    """One service subprocess with its ports and log."""

    def __init__(self, name: str, workdir: Path, args: list[str], env: dict[str, str],
                 pki: LocalPKI | None = None, tls_dir: Path | None = None, insecure: bool = False,
                 tree: Path | None = None) -> None:
        """The service runs with a certificate from `pki` (default: this process's `default_pki()`),
        the one all its processes of that name share, or its own in `tls_dir`; from the source
        tree `tree` (e.g. a worktree of an earlier revision, for a benchmark's "before") instead of
        this one."""
        self.name = name
        self.port, self.metrics_port, self.health_port = free_port(), free_port(), free_port()
        self.token_port = free_port()  # TLS without client certificates, for bearer-token callers
        self.address = f"127.0.0.1:{self.port}"
        self.token_address = f"127.0.0.1:{self.token_port}"
        self.pki = pki or default_pki()
        self.insecure = insecure  # plaintext, no caller identities: only to measure what TLS costs
        self.tls_dir = tls_dir or (None if insecure else self.pki.service(name))
        self.log_path = workdir / f"{name}.log"
        self._args = args
        self._env = env if tree is None else {**env, "PYTHONPATH": str(tree)}
        self._tree = tree  # `python -m` looks in its working directory first
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        command = [sys.executable, "-m", f"services.{self.name}", "--host", "127.0.0.1", "--port", str(self.port),
                   "--metrics-port", str(self.metrics_port), "--health-port", str(self.health_port),
                   *(["--insecure"] if self.insecure else
                     ["--tls-dir", str(self.tls_dir), "--access-policy", str(self.pki.policy),
                      "--token-port", str(self.token_port)]), *self._args]
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=self._env,
                                            cwd=self._tree)

    def stop(self, timeout: float = 15.0) -> int | None:
        if self.process is None or self.process.poll() is not None:
            return self.process.returncode if self.process else None
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def health(self, timeout: float = 1.0) -> int | None:
        """Its health status (over the plaintext --health-port), or None if it does not answer."""
        return health_status(f"127.0.0.1:{self.health_port}", timeout)

    def wait_serving(self, deadline: float) -> None:
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.process.returncode}:\n{self.log_tail()}")
            if self.health(timeout=1.0) == health_pb2.HealthCheckResponse.SERVING:
                return
            time.sleep(0.2)
        raise TimeoutError(f"{self.name} not SERVING on {self.address} in time:\n{self.log_tail()}")


class LocalStack:
    """Detector, embedder, matcher (Milvus Lite file in `workdir` by default) and gateway."""

    def __init__(self, workdir: Path, milvus_uri: str | None = None, env: dict[str, str] | None = None,
                 pki: LocalPKI | None = None, insecure: bool = False) -> None:
        """`insecure`: every service plaintext (--insecure); only to measure what TLS costs."""
        self.workdir = Path(workdir)
        self.pki = pki or default_pki()
        self.insecure = insecure
        self.workdir.mkdir(parents=True, exist_ok=True)
        base_env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", **(env or {})}
        self.services: dict[str, ServiceProcess] = {}
        for name in ("detector", "embedder"):
            self.services[name] = ServiceProcess(name, self.workdir, [], base_env, self.pki,
                                                 insecure=insecure)
        self.services["matcher"] = ServiceProcess(
            "matcher", self.workdir, ["--milvus-uri", milvus_uri or str(self.workdir / "gallery.db")], base_env,
            self.pki, insecure=insecure)
        self.services["gateway"] = ServiceProcess("gateway", self.workdir, [
            "--detector-address", self.services["detector"].address,
            "--embedder-address", self.services["embedder"].address,
            "--matcher-address", self.services["matcher"].address,
            "--audit-db", str(self.workdir / "audit.db"),
            "--review-db", str(self.workdir / "reviews.db"),
        ], base_env, self.pki, insecure=insecure)

    def address(self, name: str) -> str:
        return self.services[name].address

    def channel(self, name: str, as_service: bool = False) -> grpc.Channel:
        """A channel to a service, as the harness's admin user (operator, auditor); or, with
        `as_service`, as a FaceGate service would call it (no per-caller rate limits: benchmarks)."""
        credentials = self.pki.service("harness") if as_service else self.pki.user()
        return blocking_channel(self.address(name), None if self.insecure else credentials)

    def camera_channel(self, door: str, site: str = "default") -> grpc.Channel:
        """A channel to the gateway as the camera of `door` (it may stream as that door only)."""
        return blocking_channel(self.address("gateway"), None if self.insecure else self.pki.camera(site, door))

    def start(self, timeout: float = 180.0) -> LocalStack:
        for service in self.services.values():
            service.start()
        deadline = time.monotonic() + timeout
        try:
            for service in self.services.values():
                service.wait_serving(deadline)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        for service in reversed(list(self.services.values())):
            service.stop()

    def __enter__(self) -> LocalStack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
