"""Per-RPC latency over real gRPC against a local stack (four processes on 127.0.0.1).

    python bench/services_bench.py [--repeats 40] [--gallery 1000 10000]

Prints a Markdown table: Detect (one 640x480 frame), Embed (batch 1 and 16), Identify on a
Milvus Lite gallery of each size (synthetic unit vectors, one template per identity), and the
end-to-end gateway decision latency for one camera at 5 frames/s (client send -> decision).
Bounded: a fixed number of calls, loopback only.
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from pipeline_bench import letterbox, row, timed  # noqa: E402

from facegate.harness.stack import LocalStack  # noqa: E402
from services.contracts.v1 import (  # noqa: E402
    common_pb2,
    detector_pb2,
    detector_pb2_grpc,
    embedder_pb2,
    embedder_pb2_grpc,
    gateway_pb2,
    gateway_pb2_grpc,
    matcher_pb2,
    matcher_pb2_grpc,
)
from services.core import (
    assets,  # noqa: E402
    ndarray,  # noqa: E402
)
from services.core.images import decode_image  # noqa: E402


def unit_vectors(count: int, seed: int) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal((count, 128)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def embedding(vector: np.ndarray) -> common_pb2.Embedding:
    return common_pb2.Embedding(vector=vector.tolist(), model_id="dlib-resnet-v1", model_version="1.0")


def grow_gallery(matcher, start: int, stop: int) -> None:
    vectors = unit_vectors(stop - start, seed=start)
    futures = []
    for i, vector in enumerate(vectors, start):
        futures.append(matcher.Enroll.future(matcher_pb2.EnrollRequest(
            identity_id=f"bench-{i:06d}", embeddings=[embedding(vector)]), timeout=60))
        if len(futures) >= 64:
            [f.result() for f in futures]
            futures = []
    [f.result() for f in futures]


def camera_latency(gateway, frame: common_pb2.NDArray, visits: int, fps: float) -> list[float]:
    """One door at `fps`: the person for 2 frames (a decision needs 2 agreeing frames), then an
    empty corridor for 8 (their track ends); latency = decision arrival - send of its frame."""
    empty = ndarray.encode(np.full((480, 640, 3), 70, np.uint8), "jpeg")
    sent: dict[int, float] = {}
    latencies: list[float] = []

    def source():
        for sequence in range(visits * 10):
            time.sleep(1 / fps)
            sent[sequence] = time.perf_counter()
            yield gateway_pb2.CameraFrame(door_id="bench-door", sequence=sequence,
                                          frame=frame if sequence % 10 < 2 else empty)

    for decision in gateway.StreamCamera(source(), timeout=visits * 10 / fps + 60):
        latencies.append((time.perf_counter() - sent[decision.frame_sequence]) * 1000)
    return latencies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=40)
    parser.add_argument("--gallery", type=int, nargs="+", default=[1000, 10000])
    args = parser.parse_args()

    photo = letterbox(decode_image(assets.demo_photos()["obama.jpg"].read_bytes()))
    with tempfile.TemporaryDirectory(prefix="facegate-bench-") as workdir, LocalStack(Path(workdir)) as stack:
        detector = detector_pb2_grpc.DetectorStub(stack.channel("detector", as_service=True))
        embedder = embedder_pb2_grpc.EmbedderStub(stack.channel("embedder", as_service=True))
        matcher = matcher_pb2_grpc.MatcherStub(stack.channel("matcher", as_service=True))
        gateway = gateway_pb2_grpc.GatewayStub(stack.channel("gateway"))

        raw_frame = ndarray.encode(photo)
        detect = detector_pb2.DetectRequest(frames=[raw_frame], return_crops=True)
        crop = ndarray.decode(detector.Detect(detect, timeout=30).frames[0].faces[0].crop)
        embed_1 = embedder_pb2.EmbedRequest(crops=ndarray.encode(crop[None]))
        embed_16 = embedder_pb2.EmbedRequest(crops=ndarray.encode(np.repeat(crop[None], 16, axis=0)))
        for request in (embed_1, embed_16):
            embedder.Embed(request, timeout=30)

        rows = [
            row("Detect, one 640x480 frame (raw), with crops", timed(lambda: detector.Detect(detect, timeout=30),
                                                                     args.repeats)),
            row("Embed, batch 1", timed(lambda: embedder.Embed(embed_1, timeout=30), args.repeats)),
            row("Embed, batch 16 (whole call)", timed(lambda: embedder.Embed(embed_16, timeout=30), args.repeats)),
        ]
        probes = [embedding(v) for v in unit_vectors(args.repeats, seed=999_999)]
        size = 0
        for target in sorted(args.gallery):
            started = time.perf_counter()
            grow_gallery(matcher, size, target)
            size = target
            build = time.perf_counter() - started
            time.sleep(2.0)  # the matcher seals new rows ~1 s after writes; measure the steady state
            iterator = iter(probes)
            samples = timed(lambda iterator=iterator: matcher.Identify(
                matcher_pb2.IdentifyRequest(probes=[next(iterator)], top_k=5), timeout=30), args.repeats)
            rows.append(row(f"Identify, gallery {target:,} (Milvus Lite, in-memory exact search; "
                            f"grown in {build:.0f} s)", samples))

        gateway.EnrollFromImages(gateway_pb2.EnrollFromImagesRequest(
            identity_id="obama", images=[ndarray.encode(photo, "jpeg")]), timeout=60)
        jpeg_frame = ndarray.encode(photo, "jpeg")
        rows.append(row("Gateway decision, 1 camera at 5 fps (JPEG), send of the deciding frame -> decision",
                        camera_latency(gateway_pb2_grpc.GatewayStub(stack.camera_channel("bench-door")), jpeg_frame,
                                       visits=15, fps=5.0)))

    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; "
          "all four services and the client on this machine, loopback gRPC")
    print()
    print("| call | median ms | p95 ms | samples |")
    print("|---|---|---|---|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
