"""A real PostgreSQL server (Debian's `postgresql` package) for tests and benchmarks.

`initdb` and `pg_ctl` in a temporary directory; the server listens on a Unix socket in that
directory only (no TCP port: `listen_addresses=''`), so nothing outside this machine, nor
another user's process, can reach it. PostgreSQL refuses to run as root: run as root (CI
containers), the data directory is handed to the `postgres` system user the package creates
and the server runs as that user (`runuser`).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

DATABASE = "facegate"


def _binaries() -> Path:
    """The directory with initdb and pg_ctl (Debian keeps them under /usr/lib/postgresql/<v>/bin)."""
    found = shutil.which("pg_ctl")
    if found:
        return Path(found).resolve().parent
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"))
    if not versions:
        raise RuntimeError("PostgreSQL not found: `make postgres` installs Debian's postgresql package")
    return versions[-1].parent


class PostgresServer:
    """Start a throwaway PostgreSQL in `root` (default: a new directory under the system's temp
    directory, removed at stop: pytest's own temp tree is closed to other users), create the
    `facegate` database, stop it; a context manager. `url` is the libpq URI clients use (a Unix
    socket in `root`); `database_url(name)` one for another database on the same server."""

    def __init__(self, root: Path | None = None, start_timeout: float = 60.0) -> None:
        self._owns_root = root is None
        self.root = Path(tempfile.mkdtemp(prefix="facegate-postgres-")) if root is None else Path(root)
        self.data, self.socket_dir = self.root / "data", self.root / "socket"
        self._bin = _binaries()
        self._timeout = start_timeout
        self._as_root = os.geteuid() == 0
        self.url = f"postgresql://postgres@/{DATABASE}?host={self.socket_dir}"

    def database_url(self, name: str) -> str:
        return f"postgresql://postgres@/{name}?host={self.socket_dir}"

    def create_database(self, name: str) -> str:
        """A new, empty database on this server; its URI."""
        made = self._run(str(self._bin / "createdb"), "-h", str(self.socket_dir), "-U", "postgres", name,
                         check=False)
        if made.returncode != 0:
            raise RuntimeError(f"createdb {name} failed: {made.stderr.strip()}")
        return self.database_url(name)

    def _run(self, *command: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        prefix = ["runuser", "-u", "postgres", "--"] if self._as_root else []
        return subprocess.run([*prefix, *command], check=check, capture_output=True, text=True)

    def start(self) -> PostgresServer:
        self.root.mkdir(parents=True, exist_ok=True)
        self.socket_dir.mkdir(exist_ok=True)
        if self._as_root:  # the server's user must own its directories and reach them
            shutil.chown(self.root, "postgres")
            shutil.chown(self.socket_dir, "postgres")
            self.root.chmod(0o755)
        try:
            self._run(str(self._bin / "initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust",
                      "--encoding=UTF8", "--no-instructions")
        except subprocess.CalledProcessError as exc:
            raise RuntimeError(f"initdb failed: {exc.stderr.strip()[-500:]}") from exc
        started = self._pg_ctl_start()
        if started.returncode != 0:
            log = (self.root / "server.log").read_text(errors="replace")[-1000:] if \
                (self.root / "server.log").exists() else started.stderr
            raise RuntimeError(f"PostgreSQL did not start: {log}")
        deadline = time.monotonic() + self._timeout
        while True:
            made = self._run(str(self._bin / "createdb"), "-h", str(self.socket_dir), "-U", "postgres", DATABASE,
                             check=False)
            if made.returncode == 0:
                return self
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"createdb {DATABASE} failed: {made.stderr.strip()}")
            time.sleep(0.2)

    def stop(self) -> None:
        if (self.data / "postmaster.pid").exists():
            self._run(str(self._bin / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop", check=False)
        if self._owns_root:
            shutil.rmtree(self.root, ignore_errors=True)

    def crash(self) -> None:
        """Stop it the hard way (as a crash would): `immediate` skips the shutdown checkpoint."""
        self._run(str(self._bin / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop", check=False)

    def restart(self) -> None:
        """Start it again on the same data (after `crash` or `stop`)."""
        started = self._pg_ctl_start()
        if started.returncode != 0:
            raise RuntimeError(f"PostgreSQL did not restart: {started.stderr.strip()[-500:]}")

    def _pg_ctl_start(self) -> subprocess.CompletedProcess[str]:
        """pg_ctl start: no TCP port, the socket in our directory, durable commits; waits until up."""
        options = f"-c listen_addresses='' -c unix_socket_directories='{self.socket_dir}' -c fsync=on"
        return self._run(str(self._bin / "pg_ctl"), "-D", str(self.data), "-l", str(self.root / "server.log"),
                         "-o", options, "-w", "-t", str(int(self._timeout)), "start", check=False)

    def __enter__(self) -> PostgresServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
