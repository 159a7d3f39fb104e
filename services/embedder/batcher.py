"""Micro-batching: concurrent Embed requests share one model call.

Batch 16 costs a fraction per face of batch 1, so requests arriving within a few
milliseconds of each other are run together: the first request opens a batch, which runs
when it holds `max_batch` crops or `max_wait` seconds have passed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import numpy as np
from prometheus_client import Histogram

BATCH_CROPS = Histogram("facegate_embedder_batch_crops", "Crops per model call",
                        buckets=(1, 2, 4, 8, 16, 32, 64, 128))
BATCH_REQUESTS = Histogram("facegate_embedder_batch_requests", "Requests merged into one model call",
                           buckets=(1, 2, 4, 8, 16, 32))


class MicroBatcher:
    """Runs `embed` (a blocking function on (N, ...) arrays) over merged concurrent requests."""

    def __init__(self, embed: Callable[[np.ndarray], np.ndarray], max_batch: int = 32, max_wait: float = 0.004) -> None:
        self._embed = embed
        self._max_batch = max_batch
        self._max_wait = max_wait
        self._queue: asyncio.Queue[tuple[np.ndarray, asyncio.Future[np.ndarray]]] = asyncio.Queue()
        self._worker: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._worker = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._worker:
            self._worker.cancel()

    async def submit(self, crops: np.ndarray) -> np.ndarray:
        future: asyncio.Future[np.ndarray] = asyncio.get_running_loop().create_future()
        await self._queue.put((crops, future))
        return await future

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            pending = [await self._queue.get()]
            size = len(pending[0][0])
            deadline = loop.time() + self._max_wait
            while size < self._max_batch:
                timeout = deadline - loop.time()
                if timeout <= 0:
                    break
                try:
                    item = await asyncio.wait_for(self._queue.get(), timeout)
                except asyncio.TimeoutError:
                    break
                pending.append(item)
                size += len(item[0])
            live = [(crops, future) for crops, future in pending if not future.cancelled()]
            if not live:
                continue
            BATCH_CROPS.observe(size)
            BATCH_REQUESTS.observe(len(live))
            try:
                vectors = await asyncio.to_thread(self._embed, np.concatenate([c for c, _ in live]))
            except Exception as exc:  # every waiting request learns of the failure
                for _, future in live:
                    if not future.done():
                        future.set_exception(exc)
                continue
            start = 0
            for crops, future in live:
                if not future.done():
                    future.set_result(vectors[start : start + len(crops)])
                start += len(crops)
