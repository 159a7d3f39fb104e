"""What the audit log costs per decision: SQLite (a file, synchronous=FULL) against PostgreSQL
(a real server on a Unix socket, synchronous commits), side by side in one run.

    python bench/audit_bench.py [--writes 2000]   (or `make bench-audit`)

Each write is one `record` of one decision, as the gateway makes it (a transaction with the
erasure check and the insert, durable before it returns); then `query` of a door's latest 50.
One writer, then two writers at once on the same log (two gateways on one PostgreSQL; for
SQLite, two threads of one gateway: a SQLite file takes one gateway). Bounded: fixed counts;
PostgreSQL on a Unix socket only.
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from facegate.harness.postgres import PostgresServer
from services.contracts.v1 import gateway_pb2
from services.gateway.audit import AuditLog, EventQuery, open_audit_log


def decision(door: str) -> gateway_pb2.Decision:
    d = gateway_pb2.Decision(decision_id=uuid.uuid4().hex, door_id=door, site="hq",
                             outcome=gateway_pb2.Decision.OUTCOME_GRANTED, identity_id="alice", display_name="Alice",
                             distance=0.31, frames=2, track_id=f"{door}#1", model_key="dlib-resnet-v1@1.0",
                             reason="'alice' in 2 of 2 frames and no other person in any, best distance 0.31 <= 0.375")
    d.decided_at.GetCurrentTime()
    d.captured_at.GetCurrentTime()
    return d


def percentiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return ordered[len(ordered) // 2], ordered[int(0.95 * (len(ordered) - 1))]


def writes(log: AuditLog, count: int, door: str) -> list[float]:
    times = []
    for _ in range(count):
        started = time.perf_counter()
        log.record([decision(door)])
        times.append((time.perf_counter() - started) * 1000)
    return times


def measure(open_log: Callable[[], AuditLog], count: int, shared: bool) -> dict[str, str]:
    """`shared`: many gateways may open the log (PostgreSQL); else two threads of one gateway."""
    one = open_log()
    single = writes(one, count, "door-1")
    started = time.perf_counter()
    reads = []
    for _ in range(200):
        began = time.perf_counter()
        one.query(EventQuery(door_id="door-1", limit=50))
        reads.append((time.perf_counter() - began) * 1000)
    two = [open_log(), open_log()] if shared else [one, one]
    results: list[list[float]] = [[], []]
    threads = [threading.Thread(target=lambda i=i: results[i].extend(writes(two[i], count // 2, f"door-{i + 2}")))
               for i in range(2)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    both = time.perf_counter() - started
    p50, p95 = percentiles(single)
    r50, r95 = percentiles(reads)
    b50, b95 = percentiles(results[0] + results[1])
    return {"one writer: ms per decision p50 / p95": f"{p50:.2f} / {p95:.2f}",
            "one writer: decisions/s": f"{1000 / (sum(single) / len(single)):.0f}",
            "two writers at once: ms per decision p50 / p95": f"{b50:.2f} / {b95:.2f}",
            "two writers at once: decisions/s in all": f"{count / both:.0f}",
            "a door's latest 50: ms p50 / p95": f"{r50:.2f} / {r95:.2f}"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--writes", type=int, default=2000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="facegate-audit-bench-") as workdir, PostgresServer() as postgres:
        sqlite = measure(lambda: open_audit_log(str(Path(workdir) / "audit.db")), args.writes, shared=False)
        postgresql = measure(lambda: open_audit_log(postgres.url), args.writes, shared=True)
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; "
          "log and server on this machine (PostgreSQL 15 on a Unix socket, fsync on)")
    print()
    print("| | SQLite (file, synchronous=FULL) | PostgreSQL (shared) |")
    print("|---|---|---|")
    for name in sqlite:
        print(f"| {name} | {sqlite[name]} | {postgresql[name]} |")


if __name__ == "__main__":
    main()
