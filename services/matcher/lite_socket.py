"""Milvus Lite served on a Unix socket in a private directory.

pymilvus opens a Milvus Lite file (`*.db`) by starting Lite's gRPC server inside this process
on a free TCP port of 127.0.0.1, with no credentials: any local process could then read and
write the gallery (every template is biometric data). Here the same server, on the same data
directory, listens on a Unix socket in a fresh directory only this process's user may enter
(0700), so reaching it takes this user's rights, which could read the Lite file anyway.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from typing import Any

log = logging.getLogger("facegate.matcher")


class LiteOnUnixSocket:
    """Milvus Lite for the data at `path` (as pymilvus would open it), on a private Unix socket."""

    def __init__(self, path: str) -> None:
        from milvus_lite.adapter.grpc.server import start_server_in_thread

        self._directory = tempfile.mkdtemp(prefix="facegate-milvus-lite-")  # mode 0700
        socket = os.path.join(self._directory, "milvus.sock")
        # Lite's helper binds f"{host}:{port}"; for a Unix socket that is the socket's path
        # (with ":0" at its end), which is also the address pymilvus connects to.
        self._server: Any
        try:
            self._server, self._db, _ = start_server_in_thread(os.path.abspath(path), host=f"unix:{socket}", port=0)
        except BaseException:
            shutil.rmtree(self._directory, ignore_errors=True)
            raise
        self.uri = f"unix:{socket}:0"
        log.info("Milvus Lite serving on a private Unix socket", extra={"fields": {"data": path, "socket": self.uri}})

    def close(self) -> None:
        """Stop serving (calls under way get 2 s), then release the data (and its lock)."""
        try:
            self._server.stop(grace=2).wait()
        finally:
            try:
                self._db.close()
            finally:
                shutil.rmtree(self._directory, ignore_errors=True)
