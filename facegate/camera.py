"""The edge agent: pull a camera with OpenCV and push its frames to the gateway (`facegate camera`).

A source is anything `cv2.VideoCapture` opens: an RTSP/HTTP URL, a video file, or a USB device
number. Frames are sent at most `fps` per second (a door needs a few frames a second, not 30),
JPEG-encoded, with the grey thumbnail the gateway's motion gate looks at (so the gateway need not
decode the JPEG for it), stamped with their capture time (for a file: its own timeline, played in
real time unless `realtime=False`). When the gateway or the source goes away the agent
reconnects with exponential backoff (capped), so a restart anywhere heals by itself; a file ends
the run.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import cv2
import grpc

from services.contracts.v1 import gateway_pb2, gateway_pb2_grpc
from services.core import ndarray
from services.core.channels import blocking_channel
from services.core.thumbnails import grey_thumbnail

log = logging.getLogger("facegate.camera")


@dataclass(frozen=True)
class CameraSettings:
    door_id: str
    source: str  # URL, file path, or a device number
    gateway: str
    tls_dir: Path | None  # the camera's certificate (None: plaintext, a stack run --insecure)
    site: str = ""
    fps: float = 5.0
    realtime: bool = True  # for files: pace frames as the video's own clock
    max_side: int = 1280  # larger frames are scaled down before sending
    max_backoff: float = 30.0


_ENV_REFERENCE = re.compile(r"\$\([A-Za-z_][A-Za-z0-9_]*\)")


def redact(source: str) -> str:
    """A camera source fit for logs, status and events: a URL's user and password and every
    query value are replaced by *** (cameras take credentials in either place). A reference to
    the environment, `$(VAR)` as the fleet's agents are given, is no secret and is kept."""
    try:
        parts = urlsplit(source)
        parts.port  # noqa: B018 - raises on a malformed port, as a camera library would
    except ValueError:
        return "(a camera URL that does not parse)"
    if not parts.scheme or "://" not in source:
        return source  # a file or a device number

    def hide(value: str) -> str:
        return value if _ENV_REFERENCE.fullmatch(value) else "***"

    netloc = parts.netloc
    if "@" in netloc:
        userinfo, host = netloc.rsplit("@", 1)
        user, _, password = userinfo.partition(":")
        netloc = f"{hide(user)}:{hide(password)}@{host}" if password else f"{hide(user)}@{host}"
    query = urlencode([(k, hide(v)) for k, v in parse_qsl(parts.query, keep_blank_values=True)], safe="*$()")
    return urlunsplit(parts._replace(netloc=netloc, query=query))


def open_source(source: str) -> cv2.VideoCapture:
    capture = cv2.VideoCapture(int(source) if source.isdigit() else source)
    if not capture.isOpened():
        raise OSError(f"cannot open camera source {redact(source)!r} (a URL, a video file, or a device number)")
    return capture


def is_file(source: str) -> bool:
    return not source.isdigit() and "://" not in source


def frames(settings: CameraSettings, capture: cv2.VideoCapture,
           stop: Callable[[], bool]) -> Iterator[gateway_pb2.CameraFrame]:
    """Frames sampled at `fps` from an open source, as CameraFrames."""
    native = capture.get(cv2.CAP_PROP_FPS) or 30.0
    step = 1.0 / settings.fps
    started = time.time()
    next_at, sequence, index = 0.0, 0, -1
    while not stop():
        ok, bgr = capture.read()
        if not ok:
            return
        index += 1
        clock = index / native if is_file(settings.source) else time.time() - started
        if clock + 1e-6 < next_at:
            continue
        next_at = clock + step
        if settings.realtime and is_file(settings.source):
            time.sleep(max(0.0, started + clock - time.time()))
        scale = settings.max_side / max(bgr.shape[:2])
        if scale < 1:
            bgr = cv2.resize(bgr, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        # JPEG-encoded as OpenCV read it (BGR): the file decodes to RGB on the other side; with its
        # grey thumbnail, which the gateway's motion gate would otherwise decode the JPEG for
        frame = gateway_pb2.CameraFrame(door_id=settings.door_id, site=settings.site, sequence=sequence,
                                        frame=ndarray.encode(bgr, "jpeg", bgr=True),
                                        motion_thumbnail=ndarray.encode(grey_thumbnail(bgr, bgr=True)))
        frame.captured_at.FromNanoseconds(int((started + clock) * 1e9))
        sequence += 1
        yield frame


def run(settings: CameraSettings, on_decision: Callable[[gateway_pb2.Decision], None],
        stop: Callable[[], bool] = lambda: False) -> int:
    """Stream until the source ends (files) or `stop()`; reconnect with backoff on failures.
    Returns the number of frames sent."""
    backoff, sent = 1.0, 0
    while not stop():
        try:
            capture = open_source(settings.source)
        except OSError as exc:
            if is_file(settings.source):
                raise
            log.warning("%s; retrying in %.0f s", exc, backoff)
            time.sleep(backoff)
            backoff = min(settings.max_backoff, backoff * 2)
            continue
        counted = 0

        def counting(source: Iterator[gateway_pb2.CameraFrame]) -> Iterator[gateway_pb2.CameraFrame]:
            nonlocal counted
            for frame in source:
                counted += 1
                yield frame

        # A channel per connection: it reads the certificate as it is now, so a rotated one is
        # presented from the next reconnect (an open stream keeps the one of its handshake).
        channel = blocking_channel(settings.gateway, settings.tls_dir)
        try:
            stub = gateway_pb2_grpc.GatewayStub(channel)
            for decision in stub.StreamCamera(counting(frames(settings, capture, stop))):
                backoff = 1.0
                on_decision(decision)
            sent += counted
            if is_file(settings.source):
                return sent
            log.warning("camera source %s ended; reopening", redact(settings.source))
        except grpc.RpcError as exc:
            sent += counted
            if exc.code() in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND):
                raise  # a configuration problem: retrying will not help
            log.warning("gateway %s: %s; reconnecting in %.0f s", exc.code().name, exc.details(), backoff)
            time.sleep(backoff)
            backoff = min(settings.max_backoff, backoff * 2)
        finally:
            capture.release()
            channel.close()
    return sent
