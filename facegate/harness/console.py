"""The console as a local process in front of a `LocalStack` (for `make run`, tests and the
latency benchmark): plain HTTP on 127.0.0.1 (a secure origin for browsers, so its Secure
cookies work), accounts in the stack's work directory."""

from __future__ import annotations

import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from facegate.harness.stack import LocalStack, free_port
from services.console.accounts import Accounts

CHEAP_HASHING = ["--password-time-cost", "1", "--password-memory-kib", "8192"]  # tests only: ~1 ms a hash


class ConsoleProcess:
    """`python -m services.console` talking to `stack`'s gateway and matcher as service/console."""

    def __init__(self, stack: LocalStack, cheap_hashing: bool = True, args: list[str] | None = None) -> None:
        self.stack = stack
        self.port, self.metrics_port = free_port(), free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.db = stack.workdir / "console.db"
        self.log_path = stack.workdir / "console.log"
        self._args = [*(CHEAP_HASHING if cheap_hashing else []), *(args or [])]
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60.0) -> ConsoleProcess:
        pki = self.stack.pki
        command = [sys.executable, "-m", "services.console", "--host", "127.0.0.1", "--port", str(self.port),
                   "--metrics-port", str(self.metrics_port),
                   "--gateway-address", self.stack.address("gateway"),
                   "--matcher-address", self.stack.address("matcher"),
                   "--tls-dir", str(pki.service("console")), "--token-key-file", str(pki.console_token_key),
                   "--accounts-db", str(self.db), *self._args]
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"console exited with {self.process.returncode}:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(f"{self.url}/readyz", timeout=2) as reply:
                    if reply.status == 200:
                        return self
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.2)
        self.stop()
        raise TimeoutError(f"console not ready at {self.url} in time:\n{self.log_tail()}")

    def add_user(self, username: str, role: str = "admin") -> str:
        """A console account; returns its one-time password (as `facegate console add-user`)."""
        accounts = Accounts(self.db, time_cost=1, memory_kib=8192)
        try:
            return accounts.add(username, role, created_by="harness")
        finally:
            accounts.close()

    def set_password(self, username: str, password: str) -> None:
        """Skip the first-login password change (tests of other pages)."""
        accounts = Accounts(self.db, time_cost=1, memory_kib=8192)
        try:
            accounts.set_password(username, password)
        finally:
            accounts.close()

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(Path(self.log_path).read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def stop(self, timeout: float = 15.0) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def __enter__(self) -> ConsoleProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
