"""The gateway's clients for the detector, embedder and matcher: one channel each, a deadline on every call."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import ParamSpec, TypeVar

import grpc
import numpy as np

from services.contracts.v1 import (
    common_pb2,
    detector_pb2,
    detector_pb2_grpc,
    embedder_pb2,
    embedder_pb2_grpc,
    matcher_pb2,
    matcher_pb2_grpc,
)
from services.core import ndarray
from services.core.channels import open_channel

P = ParamSpec("P")
R = TypeVar("R")


class BackendError(Exception):
    """A backend call failed; `service` says which, the message says how."""

    def __init__(self, service: str, error: grpc.aio.AioRpcError) -> None:
        super().__init__(f"{service} {error.code().name}: {error.details()}")
        self.service = service
        self.code = error.code()


def calls(service: str) -> Callable[[Callable[P, Awaitable[R]]], Callable[P, Awaitable[R]]]:
    """A backend call whose gRPC failures become `BackendError`s naming the service."""

    def wrap(method: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
        @functools.wraps(method)
        async def call(*args: P.args, **kwargs: P.kwargs) -> R:
            try:
                return await method(*args, **kwargs)
            except grpc.aio.AioRpcError as exc:
                raise BackendError(service, exc) from exc

        return call

    return wrap


@dataclass(frozen=True)
class FaceCrop:
    face: common_pb2.Face
    crop: common_pb2.NDArray


class Backends:
    def __init__(self, detector: str, embedder: str, matcher: str, deadline: float, max_message_mb: int) -> None:
        self.deadline = deadline
        self._channels = [
            open_channel(detector, "facegate.v1.Detector", ["Detect"], max_message_mb),
            open_channel(embedder, "facegate.v1.Embedder", ["Embed", "GetModel"], max_message_mb),
            open_channel(matcher, "facegate.v1.Matcher", ["Identify", "Verify", "GetIdentity", "ListIdentities"],
                         max_message_mb),
        ]
        self.detector = detector_pb2_grpc.DetectorStub(self._channels[0])
        self.embedder = embedder_pb2_grpc.EmbedderStub(self._channels[1])
        self.matcher = matcher_pb2_grpc.MatcherStub(self._channels[2])

    async def close(self) -> None:
        for channel in self._channels:
            await channel.close()

    @calls("detector")
    async def detect(self, frames: list[np.ndarray | common_pb2.NDArray], min_face_size: int = 0) -> list[list[FaceCrop]]:
        messages = [f if isinstance(f, common_pb2.NDArray) else ndarray.encode(f) for f in frames]
        response = await self.detector.Detect(
            detector_pb2.DetectRequest(frames=messages, return_crops=True, min_face_size=min_face_size),
            timeout=self.deadline)
        return [[FaceCrop(f.face, f.crop) for f in frame.faces] for frame in response.frames]

    @calls("embedder")
    async def embed(self, crops: list[common_pb2.NDArray]) -> list[common_pb2.Embedding]:
        stacked = np.stack([ndarray.decode(c, "crop") for c in crops])
        response = await self.embedder.Embed(embedder_pb2.EmbedRequest(crops=ndarray.encode(stacked)),
                                             timeout=self.deadline)
        return list(response.embeddings)

    @calls("matcher")
    async def identify(self, embeddings: list[common_pb2.Embedding], site: str,
                       target_far: float = 0.0) -> list[matcher_pb2.IdentifyResult]:
        response = await self.matcher.Identify(
            matcher_pb2.IdentifyRequest(probes=embeddings, top_k=3, site=site, target_far=target_far),
            timeout=self.deadline)
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
