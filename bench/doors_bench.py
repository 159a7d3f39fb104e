"""How many doors one 2-core machine serves: N simulated door cameras at 5 fps each.

    python bench/doors_bench.py [--doors 4 16 20 24 32 40 48] [--before-rev 24e2b68] [--before-up-to 32]
                                [--seconds 30] [--fps 5]
    (or `make bench-doors`)

All four services and the cameras run on this machine, on loopback. Each door streams 640x480
JPEG frames: a visit of 1 s (a person's photo: enrolled Obama or stranger Biden, alternating),
then 2 s of an empty corridor (a textured scene), again and again; doors start out of phase.
Every frame carries sensor noise (one of 10 seeded noisy encodings per scene, cycled), so no two
consecutive frames are the same bytes, as from a real camera, and the grey thumbnail the edge
agent sends with it (made in advance, as the JPEG is; the "before" gateways ignore it).

Three set-ups run on the same matcher, one after the other (every door count on one, then the
next): "before" (the detector, embedder and gateway of `--before-rev`, the last revision before
issue 16, run from a temporary `git worktree`: every frame searched, everything on TensorFlow),
"gated" (this tree's gateway with its defaults: the motion gate, services/gateway/motion.py,
search regions, looks at undecided faces and draft embeddings; on this tree's detector and
embedder run on TensorFlow) and "after" (the same on LiteRT: this tree's defaults). Per door count and
set-up, for `--seconds` (bounded):
- decision latency: a decision's arrival minus the send time of the frame it was made on
  (p50/p95), and decisions per visit (and how many went to review: a visit cut off by the end
  of the row has been seen in one frame, and one frame never opens a door);
- frames dropped by the gateway's per-door queue (it keeps the newest 2; nothing grows);
- the share of frames the detector searched;
- CPU seconds used by each service process (the per-stage split), from /proc, and by the
  simulated cameras (this process), which share the machine.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import cv2
import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from frame_path_bench import describe, worktree  # noqa: E402
from pipeline_bench import letterbox  # noqa: E402
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

from facegate.harness.stack import LocalStack, ServiceProcess  # noqa: E402
from services.contracts.v1 import gateway_pb2, gateway_pb2_grpc  # noqa: E402
from services.core import (
    assets,  # noqa: E402
    ndarray,  # noqa: E402
)
from services.core.channels import blocking_channel  # noqa: E402
from services.core.images import decode_image  # noqa: E402
from services.core.thumbnails import grey_thumbnail  # noqa: E402

VISIT_S, EMPTY_S = 1.0, 2.0
BEFORE_REV = "24e2b68"  # the last commit before issue 16 (motion gating came next)
REPO = Path(__file__).resolve().parent.parent
# between rows: the last row's queues drain, and TensorFlow's and XNNPACK's worker threads stop
# spinning (measured right after a saturated row, the next one's latency doubled)
PAUSE_S = 5.0


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class DoorCamera(threading.Thread):
    def __init__(self, gateway, door: str, frames: dict[str, list[gateway_pb2.CameraFrame]], fps: float,
                 seconds: float, phase: float) -> None:
        super().__init__(daemon=True)
        self._gateway, self._door, self._frames = gateway, door, frames
        self._fps, self._seconds, self._phase = fps, seconds, phase
        self.sent: dict[int, float] = {}
        self.latencies: list[float] = []
        self.visits = 0
        self._in_visit = False
        self.decisions = 0
        self.reviews = 0  # visits sent to a person: under overload, tracks that lost frames
        self.error: str = ""

    def _source(self):
        start = time.perf_counter() + self._phase
        sequence = 0
        while time.perf_counter() - start < self._seconds:
            t = sequence / self._fps
            time.sleep(max(0.0, start + t - time.perf_counter()))
            cycle = int(t // (VISIT_S + EMPTY_S))
            in_visit = t % (VISIT_S + EMPTY_S) < VISIT_S
            name = ("obama" if cycle % 2 == 0 else "biden") if in_visit else "empty"
            self.visits += in_visit and not self._in_visit
            self._in_visit = in_visit
            frame = gateway_pb2.CameraFrame()
            frame.CopyFrom(self._frames[name][sequence % len(self._frames[name])])
            frame.door_id, frame.sequence = self._door, sequence
            frame.captured_at.FromNanoseconds(time.time_ns())
            self.sent[sequence] = time.perf_counter()
            sequence += 1
            yield frame

    def run(self) -> None:
        try:
            for decision in self._gateway.StreamCamera(self._source(), timeout=self._seconds + 120):
                self.decisions += 1
                self.reviews += decision.outcome == gateway_pb2.Decision.OUTCOME_REVIEW
                sent = self.sent.get(decision.frame_sequence)
                if sent is not None:
                    self.latencies.append(time.perf_counter() - sent)
        except Exception as exc:  # reported in the table, not raised from a thread
            self.error = str(exc)


def gateway_metric(process: ServiceProcess, name: str) -> float:
    text = urllib.request.urlopen(f"http://127.0.0.1:{process.metrics_port}/metrics").read().decode()
    return sum(s.value for f in text_string_to_metric_families(text) for s in f.samples if s.name == name)


def started(process: ServiceProcess) -> ServiceProcess:
    process.start()
    process.wait_serving(time.monotonic() + 180)
    return process


Setup = tuple[ServiceProcess, ServiceProcess, ServiceProcess]  # gateway, detector, embedder


def configurations(stack: LocalStack, workdir: Path, before: Path) -> tuple[list[ServiceProcess], dict[str, Setup]]:
    """(extra processes, {label: (gateway, detector, embedder)}), all on the stack's matcher:
    "before" is the detector, embedder and gateway of the source tree `before` (a worktree of
    the revision before issue 16: every frame searched, everything on TensorFlow); "gated" is
    this tree's gateway with its defaults (the gate, regions, looks, drafts) on this tree's
    detector and embedder run on TensorFlow; "after" is the stack's own services (the same on
    LiteRT: the defaults)."""
    env = dict(os.environ)
    processes: dict[str, dict[str, ServiceProcess]] = {
        "before": {"detector": ServiceProcess("detector", workdir, [], env, tree=before),
                   "embedder": ServiceProcess("embedder", workdir, [], env, tree=before)},
        "gated": {name: ServiceProcess(name, workdir, ["--runtime", "tensorflow"], env)
                  for name in ("detector", "embedder")}}
    for label, services in processes.items():
        services["gateway"] = ServiceProcess("gateway", workdir, [
            "--detector-address", services["detector"].address, "--embedder-address", services["embedder"].address,
            "--matcher-address", stack.address("matcher"), "--audit-db", str(workdir / f"{label}-audit.db"),
            "--review-db", str(workdir / f"{label}-reviews.db")], env, tree=before if label == "before" else None)
        for name, process in services.items():
            process.log_path = workdir / f"{name}-{label}.log"
            started(process)
    setups: dict[str, Setup] = {label: (s["gateway"], s["detector"], s["embedder"]) for label, s in processes.items()}
    setups["after"] = (stack.services["gateway"], stack.services["detector"], stack.services["embedder"])
    return [p for services in processes.values() for p in services.values()], setups


def run_doors(stack: LocalStack, setup: Setup, label: str,
              frames: dict[str, list[gateway_pb2.CameraFrame]], doors: int, fps: float, seconds: float) -> str:
    gateway, detector, embedder = setup
    processes = {**{n: s for n, s in stack.services.items() if n not in ("gateway", "detector", "embedder")},
                 "gateway": gateway, "detector": detector, "embedder": embedder}
    pids = {name: s.process.pid for name, s in processes.items() if s.process}
    cpu_before = {name: cpu_seconds(pid) for name, pid in pids.items()}
    counters = ("facegate_gateway_frames_total", "facegate_gateway_frames_dropped_total",
                "facegate_gateway_detections_skipped_total", "facegate_gateway_detections_total")
    before = {name: gateway_metric(gateway, name) for name in counters}
    names = [f"{label}-{doors}-{i:02d}" for i in range(doors)]  # each streams as its own door's camera
    stubs = [gateway_pb2_grpc.GatewayStub(blocking_channel(gateway.address, stack.pki.camera("default", name)))
             for name in names]
    cameras = [DoorCamera(stub, name, frames, fps, seconds, phase=(VISIT_S + EMPTY_S) * i / doors)
               for i, (stub, name) in enumerate(zip(stubs, names, strict=True))]
    started, own_cpu = time.perf_counter(), time.process_time()
    for camera in cameras:
        camera.start()
    for camera in cameras:
        camera.join()
    wall = time.perf_counter() - started
    cameras_cpu = (time.process_time() - own_cpu) / wall  # the simulated cameras share the machine
    cpu = {name: cpu_seconds(pid) - cpu_before[name] for name, pid in pids.items()}
    frames_in, dropped, skipped, searched = (gateway_metric(gateway, name) - before[name] for name in counters)
    if label == "before" and searched == 0:  # no detections counter before issue 16: it searched every frame
        searched = frames_in - dropped - skipped  # it did not skip (a later --before-rev has the counter)
    latencies = sorted(x for c in cameras for x in c.latencies)
    errors = [c.error for c in cameras if c.error]
    p50 = statistics.median(latencies) * 1000 if latencies else float("nan")
    p95 = latencies[int(0.95 * (len(latencies) - 1))] * 1000 if latencies else float("nan")
    visits = sum(c.visits for c in cameras)
    decisions, reviews = sum(c.decisions for c in cameras), sum(c.reviews for c in cameras)
    total_cpu = sum(cpu.values())
    split = ", ".join(f"{name} {100 * value / total_cpu:.0f}%" for name, value in cpu.items())
    return (f"| {doors} | {label} | {frames_in / wall:.0f} | {100 * dropped / max(frames_in, 1):.1f}% | "
            f"{100 * searched / max(frames_in - dropped, 1):.0f}% | {decisions} / {visits} ({reviews}) | "
            f"{p50:.0f} | {p95:.0f} | {total_cpu / wall:.2f} | {split} | {cameras_cpu:.2f} |"
            + (f" errors: {errors[0][:80]}" if errors else ""))


def corridor() -> np.ndarray:
    """An empty corridor with structure at every scale (walls, a door frame, texture)."""
    rng = np.random.default_rng(7)
    scene = cv2.resize(rng.integers(40, 200, (12, 16, 3), dtype=np.uint8), (640, 480), interpolation=cv2.INTER_CUBIC)
    cv2.rectangle(scene, (250, 60), (390, 470), (90, 60, 30), 12)
    return scene


def door_frames(variants: int = 10, noise: float = 3.0) -> dict[str, list[gateway_pb2.CameraFrame]]:
    """The frames a door camera plays: an enrolled person, a stranger, the empty corridor; each
    as `variants` encodings with seeded sensor noise (sigma `noise` grey levels)."""
    photos = assets.demo_photos()
    images = {"obama": letterbox(decode_image(photos["obama2.jpg"].read_bytes())),
              "biden": letterbox(decode_image(photos["biden.jpg"].read_bytes())),
              "empty": corridor()}
    rng = np.random.default_rng(0)

    def frame(noisy: np.ndarray) -> gateway_pb2.CameraFrame:  # as the edge agent sends it (facegate/camera.py)
        return gateway_pb2.CameraFrame(frame=ndarray.encode(noisy, "jpeg"),
                                       motion_thumbnail=ndarray.encode(grey_thumbnail(noisy)))

    return {name: [frame(np.clip(image + rng.normal(0, noise, image.shape), 0, 255).astype(np.uint8))
                   for _ in range(variants)] for name, image in images.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--doors", type=int, nargs="+", default=[4, 16, 20, 24, 32, 40, 48])
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--fps", type=float, default=5.0)
    parser.add_argument("--before-rev", default=BEFORE_REV, help="git revision whose services are the 'before' set-up")
    parser.add_argument("--before-up-to", type=int, default=32,
                        help="measure the before and gated set-ups up to this many doors (past it they only drop)")
    args = parser.parse_args()
    photos = assets.demo_photos()
    frames = door_frames()
    print(f"{platform.machine()}, {os.cpu_count()} CPUs; {args.fps:g} fps per door, {args.seconds:g} s per row; "
          f"visits of {VISIT_S:g} s every {VISIT_S + EMPTY_S:g} s")
    print("| doors | set-up | frames/s in | dropped | searched | decisions / visits (to review) | latency p50 ms | "
          "p95 ms | service CPU (cores) | CPU split | cameras' CPU (cores) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    print(f"before: {describe(REPO, args.before_rev)}; after: {describe(REPO, None)}")
    with (tempfile.TemporaryDirectory(prefix="facegate-doors-") as workdir,
          worktree(REPO, args.before_rev) as before_tree, LocalStack(Path(workdir)) as stack):
        gateway = gateway_pb2_grpc.GatewayStub(stack.channel("gateway"))
        gateway.EnrollFromImages(gateway_pb2.EnrollFromImagesRequest(
            identity_id="obama", images=[ndarray.encode(decode_image(photos["obama.jpg"].read_bytes()), "jpeg")]),
            timeout=60)
        extra, setups = configurations(stack, Path(workdir), before_tree)
        try:
            for label, setup in setups.items():
                for doors in args.doors:
                    if doors <= args.before_up_to or label == "after":
                        time.sleep(PAUSE_S)
                        print(run_doors(stack, setup, label, frames, doors, args.fps, args.seconds),
                              flush=True)
        finally:
            for process in extra:
                process.stop()


if __name__ == "__main__":
    main()
