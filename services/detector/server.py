"""The Detector gRPC service: frames in, faces (box, score, 5 landmarks, quality) and aligned crops out."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import sys
from concurrent.futures import ThreadPoolExecutor

import grpc
import numpy as np

from services.contracts.v1 import common_pb2, detector_pb2, detector_pb2_grpc
from services.core import ndarray
from services.core.capture import capture_flags
from services.core.config import ServerSettings, in_range, load_settings, one_of, setting, valid_port
from services.core.errors import FailedPrecondition, InvalidArgument
from services.core.model_card import DEFAULT_MODEL, ModelCard, load_card
from services.core.server import ready, run_service
from services.detector.alignment import align_face
from services.detector.faces import DetectedFace
from services.detector.mtcnn_cascade import DetectorSettings, MtcnnDetector
from services.detector.networks import RUNTIMES
from services.detector.padding import MAX_SIDE, padded, unpadded
from services.detector.quality import face_quality
from services.detector.regions import expected_boxes, region_bounds


@dataclasses.dataclass(frozen=True)
class DetectorServiceSettings(ServerSettings):
    """Detector service settings."""

    port: int = setting(50051, "gRPC port", valid_port)
    model: str = setting(DEFAULT_MODEL, "embedding model whose crop geometry to cut (name or model directory)")
    min_face_size: int = setting(40, "default smallest face side reported, px", in_range(12, 4096))
    min_score: float = setting(0.95, "default detector confidence threshold", in_range(0.0, 1.0))
    runtime: str = setting("litert", "what runs the cascade's three networks: litert (LiteRT with XNNPACK, ~2x "
                                     "faster on CPU) or tensorflow; the same faces either way",
                           one_of(*RUNTIMES))
    max_frames: int = setting(64, "most frames in one Detect call", in_range(1, 1024))
    max_request_megapixels: float = setting(150.0, "most pixels the frames of one Detect call may decode to, in "
                                                   "megapixels (checked from their headers before decoding: "
                                                   "150 MP is ~450 MB decoded; the gateway's batches of 16 camera "
                                                   "frames of at most 8.5 MP each stay within it)",
                                            in_range(1, 10_000))


def face_message(face: DetectedFace, quality: float, capture: tuple[str, ...] = ()) -> common_pb2.Face:
    x, y, w, h = face.box
    return common_pb2.Face(
        box=common_pb2.Box(x=x, y=y, width=w, height=h),
        score=face.score,
        landmarks=[common_pb2.Point(x=px, y=py) for px, py in face.landmarks],
        quality=quality,
        capture_flags=capture,
    )


class DetectorServicer(detector_pb2_grpc.DetectorServicer):
    def __init__(self, settings: DetectorServiceSettings) -> None:
        self._settings = settings
        self._defaults = DetectorSettings(min_face_size=settings.min_face_size, min_score=settings.min_score)
        self._detector: MtcnnDetector | None = None
        self._workers = ThreadPoolExecutor(max_workers=len(os.sched_getaffinity(0)), thread_name_prefix="detect")
        self._card: ModelCard | None = None

    def is_ready(self) -> bool:
        return self._detector is not None and self._card is not None

    async def start(self) -> None:
        self._card = load_card(self._settings.model)
        self._detector = await asyncio.to_thread(MtcnnDetector, self._defaults, self._settings.runtime)
        await asyncio.to_thread(self._detector.warm_up)

    @ready("detector is still loading its model")
    async def Detect(
        self, request: detector_pb2.DetectRequest, context: grpc.aio.ServicerContext
    ) -> detector_pb2.DetectResponse:
        assert self._detector is not None and self._card is not None
        if not request.frames:
            raise InvalidArgument("frames: at least one frame is required")
        if len(request.frames) > self._settings.max_frames:
            raise InvalidArgument(f"frames: {len(request.frames)} frames; at most {self._settings.max_frames} per call")
        if request.model_key and request.model_key != self._card.model_key:
            raise FailedPrecondition(
                f"model_key: crops asked for {request.model_key}, but this detector cuts them for "
                f"{self._card.model_key}; run the detector and the embedder with the same --model")
        try:
            options = dataclasses.replace(
                self._defaults,
                min_face_size=request.min_face_size or self._defaults.min_face_size,
                min_score=request.min_score or self._defaults.min_score,
            )
        except ValueError as exc:
            raise InvalidArgument(str(exc)) from exc
        # Decoding is CPU work: off the event loop, with the detection; on the detector's own few
        # threads, each of which keeps its networks planned for the shapes it has seen.
        return await asyncio.get_running_loop().run_in_executor(self._workers, self._detect, request, options)

    def _detect(self, request: detector_pb2.DetectRequest, options: DetectorSettings) -> detector_pb2.DetectResponse:
        assert self._detector is not None and self._card is not None
        card, crops = self._card, request.return_crops
        total = ndarray.megapixels(list(request.frames))  # from headers, before anything is decoded
        if total > self._settings.max_request_megapixels:
            raise InvalidArgument(f"frames: they decode to {total:.0f} MP in all; at most "
                                  f"{self._settings.max_request_megapixels:.0f} MP per call (send fewer or smaller "
                                  "frames)")
        if request.regions and len(request.regions) != len(request.frames):
            raise InvalidArgument(f"regions: {len(request.regions)} for {len(request.frames)} frames; one per frame "
                                  "(a zero box: the whole frame), or none")
        if request.expected_faces and len(request.expected_faces) != len(request.frames):
            raise InvalidArgument(f"expected_faces: {len(request.expected_faces)} for {len(request.frames)} frames; "
                                  "one per frame (no boxes: search that frame), or none")
        response = detector_pb2.DetectResponse(model_key=card.model_key if crops else "")
        frames: dict[int, np.ndarray] = {}
        for i, message in enumerate(request.frames):
            response.frames.add()
            try:  # a per-frame error belongs to its frame: it names the frame "frame"
                frames[i] = ndarray.decode_frame(message, "frame" if request.per_frame_errors else f"frames[{i}]")
            except InvalidArgument as exc:
                if not request.per_frame_errors:
                    raise
                response.frames[i].error = exc.message
        bounds: dict[int, tuple[int, int, int, int] | None] = {}
        expected: dict[int, list[tuple[float, float, float, float]]] = {}
        for i in list(frames) if request.regions or request.expected_faces else []:
            try:  # a region or an expected face that is not a box is its frame's error, as a corrupt frame is
                bounds[i] = region_bounds(request.regions[i], frames[i].shape[1], frames[i].shape[0],
                                          "region" if request.per_frame_errors else f"regions[{i}]"
                                          ) if request.regions else None
                if request.expected_faces and request.expected_faces[i].boxes:
                    field = "expected_faces" if request.per_frame_errors else f"expected_faces[{i}]"
                    if bounds[i] is not None:
                        raise InvalidArgument(f"{field}: given with a region; a frame has a region to search or "
                                              "faces expected in it, not both")
                    expected[i] = expected_boxes(request.expected_faces[i], frames[i].shape[1],
                                                 frames[i].shape[0], field)
            except InvalidArgument as exc:
                if not request.per_frame_errors:
                    raise
                response.frames[i].error = exc.message
                del frames[i]
        views = [frames[i][b[1]:b[3], b[0]:b[2]] if (b := bounds.get(i)) else frames[i] for i in frames]
        looks = [expected.get(i) for i in frames]  # None: search the view
        searchable = [j for j, view in enumerate(views) if min(view.shape[:2]) >= options.min_face_size]
        faces_of = dict(zip(searchable, self._detector.detect([views[j] for j in searchable], options,
                                                              [looks[j] for j in searchable]), strict=True))
        found = {i: [face.moved(b[0], b[1]) if (b := bounds.get(i)) else face for face in faces_of.get(j, [])]
                 for j, i in enumerate(frames)}
        searched = {i: frames[i] for i in frames}  # where each frame's faces were found (and are cut from)
        if request.pad_if_no_face and (empty := [i for i, faces in found.items() if not faces and i not in expected
                                                  and max(frames[i].shape[:2]) <= MAX_SIDE]):
            borders = {i: padded(frames[i]) for i in empty}
            again = self._detector.detect([borders[i][0] for i in empty], options)
            for i, faces in zip(empty, again, strict=True):
                searched[i] = borders[i][0]
                found[i] = faces
        for i, faces in found.items():
            out = response.frames[i]
            for face in faces:
                crop = align_face(searched[i], face.landmarks, card.landmark_template, card.input_size)
                if searched[i] is not frames[i]:  # reported in the photo's own coordinates
                    _, dx, dy = borders[i]
                    face = unpadded(face, dx, dy, frames[i].shape[1], frames[i].shape[0])
                capture = capture_flags(frames[i], face.box)  # ~0.2 ms: how the face was captured
                item = out.faces.add(face=face_message(face, face_quality(face, crop), capture))
                if crops:
                    ndarray.encode_into(item.crop, crop)
        return response


async def serve(settings: DetectorServiceSettings) -> None:
    servicer = DetectorServicer(settings)

    def register(server: grpc.aio.Server) -> list[str]:
        detector_pb2_grpc.add_DetectorServicer_to_server(servicer, server)
        return [detector_pb2.DESCRIPTOR.services_by_name["Detector"].full_name]

    await run_service("detector", settings, register, start=servicer.start)


def main(argv: list[str] | None = None) -> None:
    settings = load_settings(DetectorServiceSettings, argv, prog="facegate-detector")
    asyncio.run(serve(settings))


if __name__ == "__main__":
    main(sys.argv[1:])
