"""One gateway against two on one PostgreSQL audit log: decisions/s and decision latency for the
same door cameras, side by side in one run.

    python bench/gateways_bench.py [--doors 16] [--seconds 30]   (or `make bench-gateways`)

The detector, embedder and matcher of a local stack serve every row; the rows differ in the
gateways: one gateway on SQLite (the embedded default), one gateway on PostgreSQL, and two
gateways on the same PostgreSQL with the doors split between them. The door cameras are
doors_bench.py's (5 fps, a 1 s visit every 3 s, enrolled and stranger alternating). On this
2-core machine the detector is the limit, so a second gateway is about availability, not speed:
the table shows what it costs. Bounded: fixed doors and seconds; loopback and a Unix socket.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from doors_bench import VISIT_S, DoorCamera, door_frames  # noqa: E402

from facegate.harness.postgres import PostgresServer  # noqa: E402
from facegate.harness.stack import LocalStack, ServiceProcess  # noqa: E402
from services.contracts.v1 import gateway_pb2, gateway_pb2_grpc  # noqa: E402
from services.core import assets, ndarray  # noqa: E402
from services.core.channels import blocking_channel  # noqa: E402
from services.core.images import decode_image  # noqa: E402

EMPTY_S = 2.0


def gateway(stack: LocalStack, workdir: Path, name: str, audit_db: str) -> ServiceProcess:
    process = ServiceProcess("gateway", workdir, [
        "--detector-address", stack.address("detector"), "--embedder-address", stack.address("embedder"),
        "--matcher-address", stack.address("matcher"), "--audit-db", audit_db,
        "--review-db", str(workdir / f"{name}-reviews.db")], dict(os.environ))
    process.log_path = workdir / f"{name}.log"
    process.start()
    process.wait_serving(time.monotonic() + 120)
    return process


def run(stack: LocalStack, gateways: list[ServiceProcess], frames: dict, doors: int, seconds: float,
        label: str) -> str:
    cameras = []
    for i in range(doors):
        target = gateways[i % len(gateways)]
        door = f"{re.sub(r'[^a-z0-9]+', '-', label.lower())}-door-{i:02d}"  # "2-on-one-postgresql-door-03"
        stub = gateway_pb2_grpc.GatewayStub(blocking_channel(target.address, stack.pki.camera("default", door)))
        cameras.append(DoorCamera(stub, door, frames, 5.0, seconds, phase=(VISIT_S + EMPTY_S) * i / doors))
    started = time.perf_counter()
    for camera in cameras:
        camera.start()
    for camera in cameras:
        camera.join()
    wall = time.perf_counter() - started
    latencies = sorted(x for c in cameras for x in c.latencies)
    decisions = sum(c.decisions for c in cameras)
    errors = [c.error for c in cameras if c.error]
    p50 = statistics.median(latencies) * 1000 if latencies else float("nan")
    p95 = latencies[int(0.95 * (len(latencies) - 1))] * 1000 if latencies else float("nan")
    return (f"| {label} | {doors} | {decisions} / {sum(c.visits for c in cameras)} | {decisions / wall:.1f} | "
            f"{p50:.0f} | {p95:.0f} |" + (f" errors: {errors[0][:80]}" if errors else ""))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--doors", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=30.0)
    args = parser.parse_args()
    photos = assets.demo_photos()
    frames = door_frames()
    print(f"{platform.machine()}, {os.cpu_count()} CPUs; {args.doors} doors at 5 fps, {args.seconds:g} s per row; "
          "detector, embedder, matcher, gateways, PostgreSQL and cameras on this machine")
    print()
    print("| gateways | doors | decisions / visits | decisions/s | latency p50 ms | p95 ms |")
    print("|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory(prefix="facegate-gateways-") as workdir, LocalStack(Path(workdir)) as stack, \
            PostgresServer() as postgres:
        gateway_pb2_grpc.GatewayStub(stack.channel("gateway")).EnrollFromImages(gateway_pb2.EnrollFromImagesRequest(
            identity_id="obama", images=[ndarray.encode(decode_image(photos["obama.jpg"].read_bytes()), "jpeg")]),
            timeout=60)
        print(run(stack, [stack.services["gateway"]], frames, args.doors, args.seconds, "1 on SQLite"), flush=True)
        rows = (("1 on PostgreSQL", ["pg-a"]), ("2 on one PostgreSQL", ["pg-b", "pg-c"]))
        for label, names in rows:
            started = [gateway(stack, Path(workdir), name, postgres.url) for name in names]
            try:
                print(run(stack, started, frames, args.doors, args.seconds, label), flush=True)
            finally:
                for process in started:
                    process.stop()


if __name__ == "__main__":
    main()
