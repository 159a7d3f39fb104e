"""The Gateway gRPC service: camera streams in, one decision per face out, published to watchers."""

from __future__ import annotations

import asyncio
import dataclasses
import sys
import time
from collections.abc import AsyncIterator

import grpc
from prometheus_client import Counter, Histogram

from facegate.v1 import gateway_pb2, gateway_pb2_grpc, matcher_pb2
from services.core import ndarray
from services.core.config import ServerSettings, valid_port, in_range, load_settings, positive, setting
from services.core.errors import InvalidArgument, Unavailable
from services.core.server import run_service
from services.gateway.backends import BackendError, Backends
from services.gateway.decisions import DecisionHub, decide, error_decision

FRAMES_IN = Counter("facegate_gateway_frames_total", "Frames received", ["door", "site"])
FRAMES_DROPPED = Counter("facegate_gateway_frames_dropped_total", "Stale frames dropped before processing",
                         ["door", "site"])
FACES = Counter("facegate_gateway_faces_total", "Faces detected", ["door", "site"])
BACKEND_ERRORS = Counter("facegate_gateway_backend_errors_total", "Failed backend calls", ["service", "code"])
DECISION_SECONDS = Histogram("facegate_gateway_decision_seconds", "Frame arrival to decision", ["site"],
                             buckets=(0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1, 2, 5))


@dataclasses.dataclass(frozen=True)
class GatewayServiceSettings(ServerSettings):
    """Gateway service settings."""

    port: int = setting(50050, "gRPC port", valid_port)
    detector_address: str = setting("127.0.0.1:50051", "detector host:port (a DNS name spreads over replicas)")
    embedder_address: str = setting("127.0.0.1:50052", "embedder host:port")
    matcher_address: str = setting("127.0.0.1:50053", "matcher host:port")
    default_site: str = setting("default", "site of doors that do not name one")
    deadline_seconds: float = setting(2.0, "deadline of each backend call, s", positive)
    frame_queue: int = setting(2, "frames a door may have waiting; older ones are dropped", in_range(1, 100))


class GatewayServicer(gateway_pb2_grpc.GatewayServicer):
    def __init__(self, settings: GatewayServiceSettings) -> None:
        self._settings = settings
        self._hub = DecisionHub()
        self._backends: Backends | None = None

    async def start(self) -> None:
        s = self._settings
        self._backends = Backends(s.detector_address, s.embedder_address, s.matcher_address,
                                  s.deadline_seconds, s.max_message_mb)

    async def stop(self) -> None:
        if self._backends:
            await self._backends.close()

    def _ready(self) -> Backends:
        if self._backends is None:
            raise Unavailable("gateway is starting; retry shortly")
        return self._backends

    async def StreamCamera(self, request_iterator: AsyncIterator[gateway_pb2.CameraFrame],
                           context: grpc.aio.ServicerContext) -> AsyncIterator[gateway_pb2.Decision]:
        self._ready()
        waiting: asyncio.Queue[tuple[gateway_pb2.CameraFrame, float] | None] = asyncio.Queue(self._settings.frame_queue)

        async def receive() -> None:
            try:
                async for frame in request_iterator:
                    site = frame.site or self._settings.default_site
                    FRAMES_IN.labels(frame.door_id, site).inc()
                    if waiting.full():  # keep the newest: a slow backend must not build latency
                        waiting.get_nowait()
                        FRAMES_DROPPED.labels(frame.door_id, site).inc()
                    waiting.put_nowait((frame, time.perf_counter()))
            finally:
                if waiting.full():
                    waiting.get_nowait()
                waiting.put_nowait(None)

        receiver = asyncio.create_task(receive())
        try:
            while (item := await waiting.get()) is not None:
                frame, arrived = item
                for decision in await self._decide(frame):
                    DECISION_SECONDS.labels(decision.site).observe(time.perf_counter() - arrived)
                    self._hub.publish(decision)
                    yield decision
            await receiver  # surfaces a broken request stream
        finally:
            receiver.cancel()

    async def _decide(self, frame: gateway_pb2.CameraFrame) -> list[gateway_pb2.Decision]:
        if not frame.door_id:
            raise InvalidArgument(f"door_id: required on every frame (frame sequence {frame.sequence})")
        site = frame.site or self._settings.default_site
        image = ndarray.decode_frame(frame.frame, "frame")
        backends = self._ready()
        try:
            faces = (await backends.detect([image]))[0]
            if not faces:
                return []
            FACES.labels(frame.door_id, site).inc(len(faces))
            embeddings = await backends.embed([f.crop for f in faces])
            results = await backends.identify(embeddings, site)
        except BackendError as exc:
            BACKEND_ERRORS.labels(exc.service, exc.code.name).inc()
            return [error_decision(frame, site, str(exc))]
        model_key = f"{embeddings[0].model_id}@{embeddings[0].model_version}"
        return [decide(frame, site, f.face, r, model_key) for f, r in zip(faces, results)]

    async def EnrollFromImages(self, request: gateway_pb2.EnrollFromImagesRequest,
                               context: grpc.aio.ServicerContext) -> gateway_pb2.EnrollFromImagesResponse:
        backends = self._ready()
        if not request.images:
            raise InvalidArgument("images: at least one photo is required")
        errors = [""] * len(request.images)
        images = {}
        for i, message in enumerate(request.images):
            try:
                images[i] = ndarray.decode_frame(message, f"images[{i}]")
            except InvalidArgument as exc:
                errors[i] = exc.message
        crops = {}
        if images:
            try:
                detected = await backends.detect(list(images.values()))
            except BackendError as exc:
                raise Unavailable(f"cannot enroll now: {exc}") from exc
            for i, faces in zip(images, detected):
                if not faces:
                    errors[i] = f"images[{i}]: no face found"
                    continue
                largest = max(faces, key=lambda f: min(f.face.box.width, f.face.box.height))
                crops[i] = largest.crop
        if not crops:
            raise InvalidArgument(f"no face could be enrolled from the {len(request.images)} images: {'; '.join(errors)}")
        try:
            embeddings = await backends.embed(list(crops.values()))
            enrolled = await backends.enroll(matcher_pb2.EnrollRequest(
                identity_id=request.identity_id, display_name=request.display_name, site=request.site,
                groups=list(request.groups), metadata=dict(request.metadata), embeddings=embeddings))
        except BackendError as exc:
            if exc.code in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.FAILED_PRECONDITION):
                raise InvalidArgument(str(exc)) from exc
            raise Unavailable(f"cannot enroll now: {exc}") from exc
        return gateway_pb2.EnrollFromImagesResponse(image_errors=errors, templates_added=enrolled.templates_added,
                                                     identity_id=enrolled.identity.identity_id)

    async def WatchDecisions(self, request: gateway_pb2.WatchDecisionsRequest,
                             context: grpc.aio.ServicerContext) -> AsyncIterator[gateway_pb2.Decision]:
        doors = set(request.door_ids)
        queue = self._hub.subscribe()
        try:
            while True:
                decision = await queue.get()
                if not doors or decision.door_id in doors:
                    yield decision
        finally:
            self._hub.unsubscribe(queue)


async def serve(settings: GatewayServiceSettings) -> None:
    servicer = GatewayServicer(settings)

    def register(server: grpc.aio.Server) -> list[str]:
        gateway_pb2_grpc.add_GatewayServicer_to_server(servicer, server)
        return [gateway_pb2.DESCRIPTOR.services_by_name["Gateway"].full_name]

    await run_service("gateway", settings, register, start=servicer.start, stop=servicer.stop)


def main(argv: list[str] | None = None) -> None:
    settings = load_settings(GatewayServiceSettings, argv, prog="facegate-gateway")
    asyncio.run(serve(settings))


if __name__ == "__main__":
    main(sys.argv[1:])
