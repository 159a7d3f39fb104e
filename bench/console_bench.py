"""The console as a desk sees it: page load times, and how long a decision takes to appear on the
live doors page, in a real headless Chromium.

    python bench/console_bench.py [--loads 20] [--visits 30]   (or `make bench-console`)

Starts the services and the console on 127.0.0.1 (production password hashing), logs in, then:
- page load: each page loaded `--loads` times (navigation start -> load event, from the
  browser's Navigation Timing), with 30 decisions and 1 person already in the stores;
- live update: one camera at 5 fps plays `--visits` visits (an enrolled person for 1 s, then
  an empty corridor for 2 s) while /doors is open; each row's arrival in the page is stamped by
  a MutationObserver. Latency = shown - decided_at (the gateway's clock, same machine), and
  shown - captured_at of the decided frame (camera -> screen).
Bounded: fixed counts; traffic to 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import itertools
import os
import platform
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
from google.protobuf.timestamp_pb2 import Timestamp  # noqa: E402
from pipeline_bench import letterbox  # noqa: E402
from playwright.sync_api import sync_playwright  # noqa: E402

from facegate.harness.console import ConsoleProcess  # noqa: E402
from facegate.harness.stack import LocalStack  # noqa: E402
from services.contracts.v1 import gateway_pb2, gateway_pb2_grpc  # noqa: E402
from services.core import assets, ndarray  # noqa: E402
from services.core.images import decode_image  # noqa: E402

PAGES = ["/doors", "/events", "/people", "/enrol", "/review", "/events/admin"]
OBSERVE = """() => {
  window.shown = {};
  new MutationObserver((changes) => {
    for (const change of changes) for (const node of change.addedNodes) {
      if (node.dataset && node.dataset.eventId) {
        window.shown[node.dataset.eventId] = performance.timeOrigin + performance.now();
      }
    }
  }).observe(document.getElementById("live-decisions"), {childList: true});
}"""


def percentiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return ordered[len(ordered) // 2], ordered[int(0.95 * (len(ordered) - 1))]


def visits(person: gateway_pb2.CameraFrame, corridor: gateway_pb2.CameraFrame, count: int,
           fps: float = 5.0) -> Iterator[gateway_pb2.CameraFrame]:
    sequence = itertools.count()
    for _ in range(count):
        for frame, seconds in ((person, 1.0), (corridor, 2.0)):
            for _ in range(round(seconds * fps)):
                time.sleep(1 / fps)
                stamp = Timestamp()
                stamp.GetCurrentTime()
                yield gateway_pb2.CameraFrame(door_id="bench-door", site="bench", sequence=next(sequence),
                                              frame=frame.frame, captured_at=stamp)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--loads", type=int, default=20)
    parser.add_argument("--visits", type=int, default=30)
    args = parser.parse_args()
    photos = assets.demo_photos()
    person = gateway_pb2.CameraFrame(frame=ndarray.encode(letterbox(decode_image(photos["obama2.jpg"].read_bytes())),
                                                          "jpeg"))
    corridor = gateway_pb2.CameraFrame(frame=ndarray.encode(np.full((480, 640, 3), 90, np.uint8), "jpeg"))
    with tempfile.TemporaryDirectory(prefix="facegate-console-bench-") as workdir, \
            LocalStack(Path(workdir)) as stack, ConsoleProcess(stack, cheap_hashing=False) as console:
        gateway = gateway_pb2_grpc.GatewayStub(stack.channel("gateway"))
        gateway.EnrollFromImages(gateway_pb2.EnrollFromImagesRequest(
            identity_id="obama", display_name="Barack Obama", site="bench",
            images=[ndarray.encode(decode_image(photos["obama.jpg"].read_bytes()), "jpeg")]), timeout=60)
        password = console.add_user("bench", "admin")
        camera = gateway_pb2_grpc.GatewayStub(stack.camera_channel("bench-door", "bench"))
        decided: dict[str, tuple[float, float]] = {}  # event id -> (decided_at, captured_at), seconds

        def play(count: int) -> None:
            for decision in camera.StreamCamera(visits(person, corridor, count), timeout=count * 5 + 30):
                event = f"{decision.decided_at.ToNanoseconds()}-{decision.decision_id}"
                decided[event] = (decision.decided_at.ToNanoseconds() / 1e9,
                                  decision.captured_at.ToNanoseconds() / 1e9)

        play(10)  # some history for the pages
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", headless=True)
            page = browser.new_page()
            page.goto(f"{console.url}/login")
            page.fill("#username", "bench")
            page.fill("#password", password)
            page.click("main button[type=submit]")
            page.fill("#current_password", password)
            page.fill("#new_password", "bench password 12345")
            page.fill("#repeat_password", "bench password 12345")
            page.click("main button[type=submit]")
            loads: dict[str, list[float]] = {path: [] for path in PAGES}
            for _ in range(args.loads):
                for path in PAGES:
                    page.goto(f"{console.url}{path}", wait_until="load")
                    loads[path].append(page.evaluate(
                        "() => { const n = performance.getEntriesByType('navigation')[0]; return n.loadEventEnd; }"))
            page.goto(f"{console.url}/doors?site=bench")
            page.evaluate(OBSERVE)
            time.sleep(1.0)  # the event stream is open
            decided.clear()
            player = threading.Thread(target=play, args=(args.visits,))
            player.start()
            player.join()
            time.sleep(1.0)
            shown: dict[str, float] = page.evaluate("() => window.shown")
            browser.close()
    latency = [(shown[e] / 1000 - d) * 1000 for e, (d, _) in decided.items() if e in shown]
    camera_to_screen = [(shown[e] / 1000 - c) * 1000 for e, (_, c) in decided.items() if e in shown and c]
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; services, "
          "console and Chromium on this machine")
    print()
    print("| page | load p50 / p95 (ms) |")
    print("|---|---|")
    for path, samples in loads.items():
        p50, p95 = percentiles(samples)
        print(f"| {path} | {p50:.0f} / {p95:.0f} |")
    print()
    print(f"live doors page: {len(latency)} of {len(decided)} decisions shown")
    print("| live update | p50 / p95 (ms) |")
    print("|---|---|")
    for name, samples in (("decision made -> row shown", latency), ("frame captured -> row shown", camera_to_screen)):
        if samples:
            p50, p95 = percentiles(samples)
            print(f"| {name} | {p50:.0f} / {p95:.0f} |")


if __name__ == "__main__":
    main()
