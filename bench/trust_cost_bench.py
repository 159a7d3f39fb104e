"""What the trust boundary costs: mutual TLS and the roles interceptor against plaintext, side by
side in one run, on the calls that run per frame and per face.

    python bench/trust_cost_bench.py [--repeats 200] [--visits 15]   (or `make bench-trust`)

Starts the four services twice on 127.0.0.1: once plaintext (`--insecure`: no TLS, no
interceptor), once as deployed (mutual TLS, access policy). Each time: Identify on a Milvus Lite
gallery of 1,000 synthetic people (one call, one probe; long-lived channel, so the TLS
handshake is paid once), and one camera at 5 fps through the gateway (a 2-frame visit, then an
empty corridor; latency = decision arrival - send of its frame). Bounded: fixed call counts.
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from pipeline_bench import letterbox, timed  # noqa: E402
from services_bench import camera_latency, embedding, grow_gallery, unit_vectors  # noqa: E402

from facegate.harness.stack import LocalStack  # noqa: E402
from services.contracts.v1 import gateway_pb2, gateway_pb2_grpc, matcher_pb2, matcher_pb2_grpc  # noqa: E402
from services.core import assets, ndarray  # noqa: E402
from services.core.images import decode_image  # noqa: E402


def percentiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return ordered[len(ordered) // 2], ordered[int(0.95 * (len(ordered) - 1))]


def measure(insecure: bool, repeats: int, visits: int) -> dict[str, tuple[float, float]]:
    photo = letterbox(decode_image(assets.demo_photos()["obama.jpg"].read_bytes()))
    with tempfile.TemporaryDirectory(prefix="facegate-trust-") as workdir, \
            LocalStack(Path(workdir), insecure=insecure) as stack:
        matcher = matcher_pb2_grpc.MatcherStub(stack.channel("matcher", as_service=True))
        grow_gallery(matcher, 0, 1000)
        time.sleep(2.0)  # the matcher seals new rows ~1 s after writes: measure the steady state
        probes = iter([embedding(v) for v in unit_vectors(repeats + 5, seed=7)])
        identify = timed(lambda: matcher.Identify(matcher_pb2.IdentifyRequest(probes=[next(probes)], top_k=5),
                                                  timeout=30), repeats)
        gateway = gateway_pb2_grpc.GatewayStub(stack.channel("gateway"))
        gateway.EnrollFromImages(gateway_pb2.EnrollFromImagesRequest(
            identity_id="obama", images=[ndarray.encode(photo, "jpeg")]), timeout=60)
        camera = gateway_pb2_grpc.GatewayStub(stack.camera_channel("bench-door"))
        decisions = camera_latency(camera, ndarray.encode(photo, "jpeg"), visits=visits, fps=5.0)
    return {"Identify, gallery 1,000 (ms)": percentiles(identify),
            "one camera at 5 fps through the gateway, decision latency (ms)": percentiles(decisions)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=200)
    parser.add_argument("--visits", type=int, default=15)
    args = parser.parse_args()
    plain = measure(True, args.repeats, args.visits)
    secure = measure(False, args.repeats, args.visits)
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; "
          "services and client on this machine, loopback gRPC")
    print()
    print("| call | plaintext p50 / p95 | mTLS + roles p50 / p95 |")
    print("|---|---|---|")
    for (name, (p50, p95)), (p50_secure, p95_secure) in zip(plain.items(), secure.values(), strict=True):
        print(f"| {name} | {p50:.1f} / {p95:.1f} | {p50_secure:.1f} / {p95_secure:.1f} |")


if __name__ == "__main__":
    main()
