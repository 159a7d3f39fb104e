"""The Embedder gRPC service: aligned crops in, unit-length embeddings out (micro-batched)."""

from __future__ import annotations

import asyncio
import dataclasses
import sys

import grpc
import numpy as np

from services.contracts.v1 import common_pb2, embedder_pb2, embedder_pb2_grpc
from services.core import ndarray
from services.core.batching import MicroBatcher
from services.core.config import ServerSettings, in_range, load_settings, one_of, setting, valid_port
from services.core.errors import InvalidArgument
from services.core.model_card import DEFAULT_MODEL, ModelCard
from services.core.server import ready, run_service
from services.embedder.models import RUNTIMES, FaceEmbedder, load_embedder


@dataclasses.dataclass(frozen=True)
class EmbedderServiceSettings(ServerSettings):
    """Embedder service settings."""

    port: int = setting(50052, "gRPC port", valid_port)
    model: str = setting(DEFAULT_MODEL, "model name (prepared on first use) or model directory")
    runtime: str = setting("litert", "what runs a known model: litert (its TFLite fp32 conversion on one thread, "
                                     "made by `facegate prepare` or on first use) or tensorflow (its SavedModel); "
                                     "the same embeddings either way. A model directory runs as what it holds",
                           one_of(*RUNTIMES))
    max_batch: int = setting(32, "most crops per model call", in_range(1, 512))
    max_wait_ms: float = setting(4.0, "how long a batch waits for more requests, ms", in_range(0.0, 100.0))
    max_crops: int = setting(256, "most crops in one Embed call", in_range(1, 4096))


def model_info(card: ModelCard) -> common_pb2.ModelInfo:
    return common_pb2.ModelInfo(
        model_id=card.model_id,
        model_version=card.version,
        input_size=card.input_size,
        embedding_dim=card.embedding_dim,
        distance_threshold=card.distance_threshold,
        threshold_source=card.threshold_source,
        landmark_template=[common_pb2.Point(x=x, y=y) for x, y in card.landmark_template],
        far_thresholds=card.far_thresholds,
        default_far=card.default_far or 0.0,
        ambiguity_gap=card.ambiguity_gap,
        draft_margin=card.draft_margin,
    )


class EmbedderServicer(embedder_pb2_grpc.EmbedderServicer):
    def __init__(self, settings: EmbedderServiceSettings) -> None:
        self._settings = settings
        self._model: FaceEmbedder | None = None
        self._batcher: MicroBatcher[np.ndarray, np.ndarray] | None = None
        self._drafts: MicroBatcher[np.ndarray, np.ndarray] | None = None  # one pass: batched apart

    async def start(self) -> None:
        model = await asyncio.to_thread(load_embedder, self._settings.model, self._settings.runtime)
        size = model.card.input_size
        await asyncio.to_thread(model.embed, np.zeros((1, size, size, 3), np.uint8))  # trace once
        async def embed(crops: list[np.ndarray]) -> list[np.ndarray]:
            return list(await asyncio.to_thread(model.embed, np.stack(crops)))

        async def draft(crops: list[np.ndarray]) -> list[np.ndarray]:
            return list(await asyncio.to_thread(model.embed, np.stack(crops), True))

        wait = self._settings.max_wait_ms / 1000
        self._batcher = MicroBatcher("embedder_model", embed, self._settings.max_batch, wait)
        self._drafts = MicroBatcher("embedder_drafts", draft, self._settings.max_batch, wait)
        self._batcher.start()
        self._drafts.start()
        self._model = model

    async def stop(self) -> None:
        for batcher in (self._batcher, self._drafts):
            if batcher:
                await batcher.stop()

    def is_ready(self) -> bool:
        return self._model is not None and self._batcher is not None and self._drafts is not None

    @ready("embedder is still loading its model")
    async def Embed(self, request: embedder_pb2.EmbedRequest,
                    context: grpc.aio.ServicerContext) -> embedder_pb2.EmbedResponse:
        assert self._model is not None and self._batcher is not None and self._drafts is not None
        card = self._model.card
        crops = self._crops(request, card)
        if len(crops) == 0:
            raise InvalidArgument("crops: empty batch (N = 0); send at least one crop")
        if len(crops) > self._settings.max_crops:
            raise InvalidArgument(f"crops: {len(crops)} crops; at most {self._settings.max_crops} per call")
        draft = request.draft and card.draft_margin > 0  # else a draft is the full embedding
        vectors = await (self._drafts if draft else self._batcher).submit(crops)
        return embedder_pb2.EmbedResponse(embeddings=[
            common_pb2.Embedding(vector=v.tolist(), model_id=card.model_id, model_version=card.version, draft=draft)
            for v in vectors
        ])

    @staticmethod
    def _crops(request: embedder_pb2.EmbedRequest, card: ModelCard) -> list[np.ndarray]:
        """The request's crops as views on its bytes (no copy): stacked in `crops` or one by one in
        `each_crop`; the batcher stacks them once, into the model's input."""
        shape = (card.input_size, card.input_size, 3)
        want = f"uint8 {' x '.join(map(str, shape))} aligned crops for {card.model_key}"
        if request.HasField("crops") and request.each_crop:
            raise InvalidArgument("crops, each_crop: set one of them, not both")
        if request.each_crop:
            crops = [ndarray.decode(c, f"each_crop[{i}]") for i, c in enumerate(request.each_crop)]
            for i, crop in enumerate(crops):
                if crop.dtype.name != "uint8" or crop.shape != shape:
                    raise InvalidArgument(f"each_crop[{i}]: need {want}; got {crop.dtype.name} {list(crop.shape)}")
            return crops
        stacked = ndarray.decode(request.crops, "crops")
        if stacked.dtype.name != "uint8" or stacked.ndim != 4 or stacked.shape[1:] != shape:
            raise InvalidArgument(f"crops: need N x {want}; got {stacked.dtype.name} {list(stacked.shape)}")
        return list(stacked)

    @ready("embedder is still loading its model")
    async def GetModel(self, request: embedder_pb2.GetModelRequest,
                       context: grpc.aio.ServicerContext) -> common_pb2.ModelInfo:
        assert self._model is not None
        return model_info(self._model.card)


async def serve(settings: EmbedderServiceSettings) -> None:
    servicer = EmbedderServicer(settings)

    def register(server: grpc.aio.Server) -> list[str]:
        embedder_pb2_grpc.add_EmbedderServicer_to_server(servicer, server)
        return [embedder_pb2.DESCRIPTOR.services_by_name["Embedder"].full_name]

    await run_service("embedder", settings, register, start=servicer.start, stop=servicer.stop)


def main(argv: list[str] | None = None) -> None:
    settings = load_settings(EmbedderServiceSettings, argv, prog="facegate-embedder")
    asyncio.run(serve(settings))


if __name__ == "__main__":
    main(sys.argv[1:])
