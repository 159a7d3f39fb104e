"""`make run`: the services as separate processes, a person enrolled, a door camera streaming,
and the console to watch it in a browser.

Starts detector, embedder, matcher (Milvus Lite), gateway and console on 127.0.0.1, creates
the console's first admin (printing a one-time password), enrolls Obama from one photo, then
plays a simulated door camera (other photos of Obama, Biden, partial faces, an empty corridor
between visitors) into the gateway at 4 frames/s and prints each decision (one per person in
view, once two frames agree) as it arrives; the console's live page shows the same.
Ctrl-C stops everything. Photos come from the `face_recognition` sdist on PyPI, so nothing
from ../shared is needed.
"""

from __future__ import annotations

import argparse
import itertools
import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from facegate.harness.console import ConsoleProcess
from facegate.harness.stack import LocalStack
from services.contracts.v1 import gateway_pb2, gateway_pb2_grpc
from services.core import assets, ndarray
from services.core.images import decode_image

CAMERA = ["obama2.jpg", "biden.jpg", "obama3.jpg", "obama_partial_face.jpg", "obama_partial_face2.jpg"]
VISIT_S, CORRIDOR_S = 1.5, 2.0  # each person in view, then the empty corridor (their track ends)


def camera(photos: dict[str, Path], door: str, fps: float, rounds: int | None) -> Iterator[gateway_pb2.CameraFrame]:
    """Frames of a door camera: each photo for VISIT_S seconds, then an empty corridor."""
    encoded = {name: ndarray.encode(decode_image(photos[name].read_bytes()), "jpeg") for name in CAMERA}
    corridor = ndarray.encode(np.full((480, 640, 3), 90, np.uint8), "jpeg")
    sequence = itertools.count()
    for _ in itertools.count() if rounds is None else range(rounds):
        for name in CAMERA:
            for frame, seconds in ((encoded[name], VISIT_S), (corridor, CORRIDOR_S)):
                for _ in range(max(1, round(seconds * fps))):
                    time.sleep(1.0 / fps)
                    yield gateway_pb2.CameraFrame(door_id=door, sequence=next(sequence), frame=frame)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=None, help="camera loops to play (default: until Ctrl-C)")
    parser.add_argument("--fps", type=float, default=4.0)
    args = parser.parse_args(argv)

    photos = assets.demo_photos()
    with tempfile.TemporaryDirectory(prefix="facegate-demo-") as workdir:
        print("starting detector, embedder, matcher (Milvus Lite), gateway and console ...", flush=True)
        started = time.monotonic()
        stack = LocalStack(Path(workdir)).start()
        console = ConsoleProcess(stack, cheap_hashing=False)
        try:
            console.start()
            for name, service in stack.services.items():
                print(f"  {name:9s} {service.address}  metrics http://127.0.0.1:{service.metrics_port}/metrics")
            print(f"  console   {console.url}  metrics http://127.0.0.1:{console.metrics_port}/metrics")
            print(f"up in {time.monotonic() - started:.1f} s; logs in {workdir}")
            password = console.add_user("admin", "admin")
            print(f"console: open {console.url} and log in as admin with the one-time password {password} "
                  "(you choose your own at the first login)")
            print(f"every connection is mutual TLS; a local CA and certificates in {stack.pki.root} (try: "
                  f"FACEGATE_TLS_DIR={stack.pki.user()} .venv/bin/facegate watch --gateway {stack.address('gateway')})")
            gateway = gateway_pb2_grpc.GatewayStub(stack.channel("gateway"))
            reply = gateway.EnrollFromImages(gateway_pb2.EnrollFromImagesRequest(
                identity_id="obama", display_name="Barack Obama", groups=["staff"],
                images=[ndarray.encode(decode_image(photos["obama.jpg"].read_bytes()), "jpeg")]), timeout=60)
            print(f"enrolled {reply.identity_id} from obama.jpg ({reply.templates_added} template)")
            print("door 'front-door' camera streaming (Ctrl-C to stop):", flush=True)
            front_door = gateway_pb2_grpc.GatewayStub(stack.camera_channel("front-door"))  # the door's camera
            for decision in front_door.StreamCamera(camera(photos, "front-door", args.fps, args.rounds)):
                outcome = gateway_pb2.Decision.Outcome.Name(decision.outcome).removeprefix("OUTCOME_")
                who = decision.display_name or "-"
                print(f"  {decision.track_id:26s} {outcome:15s} {who:14s} {decision.reason}", flush=True)
        except KeyboardInterrupt:
            print("\nstopping ...")
        finally:
            console.stop()
            stack.stop()
    print("stopped")


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    main()
