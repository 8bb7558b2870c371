"""Gather concurrent requests into batches and run them together.

verl's agent loop sends one ``generate`` call per sample, all at once. :class:`MicroBatcher` holds the
requests that arrive within a short window (or while the previous batch is running), runs them as
one batch in a worker thread, and hands each caller its own result.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Callable, Generic, Optional, Sequence, TypeVar

__all__ = ["BatchStats", "MicroBatcher"]

Req = TypeVar("Req")
Res = TypeVar("Res")


@dataclass
class BatchStats:
    """Sizes of the batches run so far (for tests and benchmarks)."""

    sizes: list[int] = field(default_factory=list)


class MicroBatcher(Generic[Req, Res]):
    """Run ``process(list of requests) -> list of results`` on batches of concurrent ``submit`` calls.

    Args:
        process: runs one batch (in a worker thread); returns one result per request, in order.
        max_batch: most requests per batch.
        window_s: after the first request of a batch arrives, how long to wait for more.
    """

    def __init__(self, process: Callable[[Sequence[Req]], Sequence[Res]], max_batch: int = 256, window_s: float = 0.02):
        if max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {max_batch}")
        self._process = process
        self._max_batch = max_batch
        self._window_s = window_s
        self._queue: Optional[asyncio.Queue] = None
        self._worker: Optional[asyncio.Task] = None
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self.stats = BatchStats()

    async def submit(self, request: Req) -> Res:
        """Queue ``request`` and wait for its result (exceptions of its batch are raised here)."""
        loop = asyncio.get_running_loop()
        if self._queue is None or self._loop is not loop:  # a queue belongs to one event loop
            self._queue, self._loop, self._worker = asyncio.Queue(), loop, None
        if self._worker is None or self._worker.done():
            self._worker = asyncio.get_running_loop().create_task(self._run())
        future: asyncio.Future = asyncio.get_running_loop().create_future()
        await self._queue.put((request, future))
        return await future

    async def _collect(self) -> list[tuple[Req, asyncio.Future]]:
        batch = [await self._queue.get()]
        deadline = asyncio.get_running_loop().time() + self._window_s
        while len(batch) < self._max_batch:
            timeout = deadline - asyncio.get_running_loop().time()
            if timeout <= 0:
                break
            try:
                batch.append(await asyncio.wait_for(self._queue.get(), timeout))
            except asyncio.TimeoutError:
                break
        while len(batch) < self._max_batch and not self._queue.empty():
            batch.append(self._queue.get_nowait())
        return batch

    async def _run(self) -> None:
        while True:
            batch = await self._collect()
            batch = [(req, fut) for req, fut in batch if not fut.cancelled()]
            if not batch:
                continue
            self.stats.sizes.append(len(batch))
            try:
                results = await asyncio.to_thread(self._process, [req for req, _ in batch])
                if len(results) != len(batch):
                    raise RuntimeError(f"batch of {len(batch)} requests gave {len(results)} results")
            except Exception as error:  # every caller of the failed batch sees the error
                for _, future in batch:
                    if not future.done():
                        future.set_exception(error)
                continue
            for (_, future), result in zip(batch, results):
                if not future.done():
                    future.set_result(result)
