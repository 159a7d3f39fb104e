"""The gateway's clients for the detector, embedder and matcher: one channel each, a deadline on every call."""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import ParamSpec, TypeVar

import grpc

from services.contracts.v1 import (
    common_pb2,
    detector_pb2,
    detector_pb2_grpc,
    embedder_pb2,
    embedder_pb2_grpc,
    matcher_pb2,
    matcher_pb2_grpc,
)
from services.core import tls
from services.core.channels import open_channel

log = logging.getLogger("facegate.gateway")
P = ParamSpec("P")
R = TypeVar("R")


class BackendError(Exception):
    """A backend call failed, or answered what the gateway cannot use; `service` says which, the
    message says how."""

    def __init__(self, service: str, code: grpc.StatusCode, details: str) -> None:
        super().__init__(f"{service} {code.name}: {details}")
        self.service = service
        self.code = code


def calls(service: str) -> Callable[[Callable[P, Awaitable[R]]], Callable[P, Awaitable[R]]]:
    """A backend call whose gRPC failures become `BackendError`s naming the service."""

    def wrap(method: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
        @functools.wraps(method)
        async def call(*args: P.args, **kwargs: P.kwargs) -> R:
            try:
                return await method(*args, **kwargs)
            except grpc.aio.AioRpcError as exc:
                raise BackendError(service, exc.code(), exc.details() or "") from exc

        return call

    return wrap


TOP_K = 3  # candidates asked for per probe


def with_capture(embedding: common_pb2.Embedding, face: common_pb2.Face) -> common_pb2.Embedding:
    """The embedding of a face the detector found, carrying how that face was captured (its
    capture flags, measured: the matcher holds a dark or grey face to a stricter threshold, and
    keeps an enrolled person's with them)."""
    embedding.capture_flags[:] = face.capture_flags
    embedding.capture_measured = True
    return embedding

class Backends:
    def __init__(self, detector: str, embedder: str, matcher: str, deadline: float, max_message_mb: int,
                 tls_dir: Path | None) -> None:
        """`tls_dir`: the gateway's own certificate, which it presents to the other services (None:
        plaintext, a gateway run --insecure)."""
        self.deadline = deadline
        self._addresses = (detector, embedder, matcher)
        self._max_message_mb, self._tls_dir = max_message_mb, tls_dir
        self._stamp = tls.stamp(tls_dir) if tls_dir else ()
        self._channels: list[grpc.aio.Channel] = []
        self._retired: set[asyncio.Task[None]] = set()  # closing old channels a deadline after a rotation
        self._connect()

    def _connect(self) -> None:
        """Open the three channels (with the certificate as it is now) and their stubs."""
        detector, embedder, matcher = self._addresses
        mb, tls_dir = self._max_message_mb, self._tls_dir
        channels = [  # all three opened before any is used: a failure leaves the current ones in place
            open_channel(detector, "facegate.v1.Detector", ["Detect"], mb, tls_dir),
            open_channel(embedder, "facegate.v1.Embedder", ["Embed", "GetModel"], mb, tls_dir),
            open_channel(matcher, "facegate.v1.Matcher", ["Identify", "Verify", "GetIdentity", "ListIdentities"],
                         mb, tls_dir),
        ]
        self._channels = channels
        self.detector = detector_pb2_grpc.DetectorStub(self._channels[0])
        self.embedder = embedder_pb2_grpc.EmbedderStub(self._channels[1])
        self.matcher = matcher_pb2_grpc.MatcherStub(self._channels[2])

    def follow_certificate(self) -> bool:
        """Re-open the channels if the certificate in `tls_dir` was rotated (returns whether).

        A channel keeps the credentials it was made with, and an open connection the
        certificate of its handshake; so without this the gateway would present its old
        certificate at its next reconnect, refused once that certificate expires. Calls under
        way finish on the old channels, closed a deadline later. A half-written rotation (a key
        that is not the certificate's) is left alone until it is whole."""
        if self._tls_dir is None:
            return False
        try:
            if tls.stamp(self._tls_dir) == self._stamp:
                return False
            material = tls.load(self._tls_dir)
            old = self._channels
            self._connect()  # reads the files again: a rotation caught half-way fails here, and is retried
        except (OSError, tls.TLSError) as exc:
            log.warning("client certificate in %s not reloaded, keeping the current one: %s", self._tls_dir, exc)
            return False
        self._stamp = material.stamp
        log.info("client certificate reloaded: backend channels re-opened",
                 extra={"fields": {"identity": material.spiffe_id}})
        task = asyncio.get_running_loop().create_task(self._close_later(old))
        self._retired.add(task)
        task.add_done_callback(self._retired.discard)
        return True

    async def _close_later(self, channels: list[grpc.aio.Channel]) -> None:
        try:
            await asyncio.sleep(self.deadline + 1)
        finally:  # after the deadline, or at once when the gateway stops
            for channel in channels:
                await channel.close()

    async def close(self) -> None:
        for task in self._retired:  # retired channels: closed with the rest, now
            task.cancel()
        await asyncio.gather(*self._retired, return_exceptions=True)
        for channel in self._channels:
            await channel.close()

    @calls("embedder")
    async def model(self, wait: bool = False) -> common_pb2.ModelInfo:
        """The embedder's model card. `wait`: until the embedder is up (at start: a gateway that
        cannot embed is not ready)."""
        return await self.embedder.GetModel(embedder_pb2.GetModelRequest(), timeout=self.deadline,
                                            wait_for_ready=wait)

    @calls("detector")
    async def detect(self, frames: list[common_pb2.NDArray], model_key: str,
                     min_face_size: int = 0, photos: bool = False,
                     regions: list[common_pb2.Box | None] | None = None,
                     expected: list[list[common_pb2.Box] | None] | None = None) -> list[detector_pb2.FrameFaces]:
        """Faces and aligned crops for `model_key`, per frame, frames as the camera sent them
        (the detector decodes them once; one it cannot decode comes back with `error` set, and
        fails only its own camera, not the other doors' frames in the batch). `photos`: enrolment
        photos, which may be tight face crops (searched again with a border when no face is found;
        never for camera frames, which would pay twice for every empty corridor). `regions`: where
        to search each frame (None: the whole frame); `expected`: the boxes of faces to look for
        again in each frame instead of searching it (None: search it)."""
        request = detector_pb2.DetectRequest(frames=frames, return_crops=True, min_face_size=min_face_size,
                                             per_frame_errors=True, model_key=model_key, pad_if_no_face=photos)
        if regions and any(r is not None for r in regions):  # a zero box: that frame whole
            request.regions.extend(r or common_pb2.Box() for r in regions)
        if expected and any(e for e in expected):  # no boxes: that frame searched
            request.expected_faces.extend(detector_pb2.FaceBoxes(boxes=e or []) for e in expected)
        response = await self.detector.Detect(request, timeout=self.deadline)
        if len(response.frames) != len(frames):
            raise BackendError("detector", grpc.StatusCode.INTERNAL,
                               f"{len(response.frames)} results for {len(frames)} frames")
        return list(response.frames)

    async def embed(self, crops: list[common_pb2.NDArray], model_key: str,
                    draft: bool = False) -> list[common_pb2.Embedding]:
        """Embeddings of the detector's crops, forwarded as they came (no unpacking); `draft`: one
        pass (services/gateway/drafts.py). An embedder serving another model than the crops were
        cut for is refused: its vectors would be meaningless (FAILED_PRECONDITION, the door stays
        locked)."""
        embeddings = await self._embed(crops, draft)
        served = f"{embeddings[0].model_id}@{embeddings[0].model_version}" if embeddings else model_key
        if served != model_key:
            raise BackendError("embedder", grpc.StatusCode.FAILED_PRECONDITION,
                               f"it serves {served}, but the crops were cut for {model_key}; run the detector and "
                               "the embedder with the same --model")
        return embeddings

    @calls("embedder")
    async def _embed(self, crops: list[common_pb2.NDArray], draft: bool) -> list[common_pb2.Embedding]:
        response = await self.embedder.Embed(embedder_pb2.EmbedRequest(each_crop=crops, draft=draft),
                                             timeout=self.deadline)
        if len(response.embeddings) != len(crops):
            raise BackendError("embedder", grpc.StatusCode.INTERNAL,
                               f"{len(response.embeddings)} embeddings for {len(crops)} crops")
        return list(response.embeddings)

    @calls("matcher")
    async def identify(self, embeddings: list[common_pb2.Embedding], site: str,
                       target_far: float = 0.0) -> list[matcher_pb2.IdentifyResult]:
        response = await self.matcher.Identify(
            matcher_pb2.IdentifyRequest(probes=embeddings, top_k=TOP_K, site=site, target_far=target_far),
            timeout=self.deadline)
        if len(response.results) != len(embeddings):  # never pair a face with another face's result
            raise BackendError("matcher", grpc.StatusCode.INTERNAL,
                               f"{len(response.results)} results for {len(embeddings)} probes")
        return list(response.results)

    @calls("matcher")
    async def identity(self, identity_id: str) -> matcher_pb2.Identity:
        """The person's record (groups, site), read at every match decision (once per person
        passing, not per frame). Not cached: after a deletion or a change of groups no stale
        copy may still open a door."""
        return await self.matcher.GetIdentity(matcher_pb2.GetIdentityRequest(identity_id=identity_id),
                                              timeout=self.deadline)

    async def delete_identity(self, identity_id: str) -> int:
        """Remove the person from the gallery; the templates removed (0 if not enrolled)."""
        try:
            return await self._delete_identity(identity_id)
        except BackendError as exc:
            if exc.code == grpc.StatusCode.NOT_FOUND:
                return 0
            raise

    @calls("matcher")
    async def _delete_identity(self, identity_id: str) -> int:
        reply = await self.matcher.DeleteIdentity(matcher_pb2.DeleteIdentityRequest(identity_id=identity_id),
                                                  timeout=self.deadline)
        return reply.templates_removed

    @calls("matcher")
    async def enroll(self, request: matcher_pb2.EnrollRequest) -> matcher_pb2.EnrollResponse:
        return await self.matcher.Enroll(request, timeout=self.deadline)

    @calls("matcher")
    async def cluster(self, embeddings: list[common_pb2.Embedding]) -> list[int]:
        """A cluster label per face (-1: in no group), as Matcher.Cluster groups them."""
        reply = await self.matcher.Cluster(matcher_pb2.ClusterRequest(embeddings=embeddings), timeout=self.deadline)
        return list(reply.labels)
