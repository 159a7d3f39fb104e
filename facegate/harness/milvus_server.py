"""A real Milvus standalone server (PyPI `milvus==2.3.5`) for tests and benchmarks.

That server listens on every network interface and cannot be told otherwise, so this module
refuses to start it unless the process runs in a private network namespace whose only interface
is loopback: `tools/private_net.sh COMMAND` gives one (`unshare --net --map-root-user`, loopback
up), and `make test-milvus-server` / `make bench-index` use it. Nothing outside can reach it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

PROXY_PORT = 19530  # Milvus' gRPC port
HEALTH_URL = "http://127.0.0.1:9091/healthz"  # its REST health endpoint (first free port from 9091)


def in_private_network() -> bool:
    """True when loopback is this process's only network interface."""
    return {name for _, name in socket.if_nameindex()} == {"lo"}


class MilvusServer:
    """Start `milvus-server --data DIR`, wait until healthy, stop it; a context manager."""

    def __init__(self, data_dir: Path, start_timeout: float = 180.0) -> None:
        self.data_dir = Path(data_dir)
        self.uri = f"http://127.0.0.1:{PROXY_PORT}"
        self.token = "root:Milvus"  # the server's first user (a deployment changes its password)
        self._timeout = start_timeout
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> MilvusServer:
        if not in_private_network():
            raise RuntimeError(
                "refusing to start milvus-server: it listens on every interface. Run inside a private network "
                "namespace, e.g. `tools/private_net.sh make test-milvus-server` (loopback only).")
        beside = Path(sys.executable).parent / "milvus-server"  # the venv's, when PATH does not have it
        executable = str(beside) if beside.is_file() else shutil.which("milvus-server")
        if executable is None:
            raise RuntimeError("milvus-server not found: `make setup` installs milvus==2.3.5 (dev extra)")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log = open(self.data_dir / "milvus-server.log", "ab")
        # authorization on, as a deployment runs it: clients need the credentials in `token`
        self._process = subprocess.Popen([executable, "--data", str(self.data_dir), "--authorization-enabled", "true"],
                                         stdout=log,
                                         stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        deadline = time.monotonic() + self._timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"milvus-server exited with {self._process.returncode}; see "
                                   f"{self.data_dir / 'milvus-server.log'} and {self.data_dir / 'logs'}")
            try:
                with urllib.request.urlopen(HEALTH_URL, timeout=2) as reply:
                    if b"OK" in reply.read():
                        return self
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.5)
        self.stop()
        raise TimeoutError(f"milvus-server not healthy after {self._timeout:.0f} s; see {self.data_dir / 'logs'}")

    def stop(self) -> None:
        """Stop the launcher and the `milvus` process it starts: they share a process group
        (signalling the launcher alone leaves the server running)."""
        if self._process is None:
            return
        group = self._process.pid  # start_new_session: the launcher leads its own group
        for sig, wait in ((signal.SIGTERM, 20.0), (signal.SIGKILL, 10.0)):
            try:
                os.killpg(group, sig)
            except ProcessLookupError:
                break
            try:
                self._process.wait(wait)
            except subprocess.TimeoutExpired:
                continue
            if sig == signal.SIGTERM:  # the launcher is gone; make sure its server is too
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(group, signal.SIGKILL)
            break
        self._process = None

    def __enter__(self) -> MilvusServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
