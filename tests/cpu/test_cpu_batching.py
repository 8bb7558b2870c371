"""MicroBatcher: concurrent requests run as batches, each caller gets its own result or its batch's error."""

from __future__ import annotations

import asyncio
import threading

import pytest

from effopd_verl.cpu.batching import MicroBatcher


def test_concurrent_requests_are_batched_and_routed():
    calls: list[list[int]] = []

    def process(batch):
        calls.append(list(batch))
        return [x * 10 for x in batch]

    async def main():
        batcher = MicroBatcher(process, max_batch=64, window_s=0.05)
        results = await asyncio.gather(*[batcher.submit(i) for i in range(20)])
        return batcher, results

    batcher, results = asyncio.run(main())
    assert results == [i * 10 for i in range(20)]
    assert sum(batcher.stats.sizes) == 20
    assert len(calls) < 20 and max(batcher.stats.sizes) > 1


def test_max_batch_is_respected():
    async def main():
        batcher = MicroBatcher(lambda b: list(b), max_batch=3, window_s=0.05)
        results = await asyncio.gather(*[batcher.submit(i) for i in range(10)])
        return batcher, results

    batcher, results = asyncio.run(main())
    assert results == list(range(10))
    assert max(batcher.stats.sizes) <= 3


def test_requests_arriving_during_a_batch_join_the_next_one():
    started = threading.Event()
    release = threading.Event()

    def process(batch):
        if batch[0] == "first":
            started.set()
            release.wait(5)
        return list(batch)

    async def main():
        batcher = MicroBatcher(process, max_batch=64, window_s=0.0)
        first = asyncio.ensure_future(batcher.submit("first"))
        await asyncio.to_thread(started.wait, 5)
        rest = [asyncio.ensure_future(batcher.submit(i)) for i in range(8)]
        await asyncio.sleep(0.05)
        release.set()
        return batcher, await first, await asyncio.gather(*rest)

    batcher, first, rest = asyncio.run(main())
    assert first == "first" and rest == list(range(8))
    assert batcher.stats.sizes == [1, 8]


def test_an_error_reaches_every_caller_of_its_batch_and_the_batcher_goes_on():
    def process(batch):
        if "bad" in batch:
            raise ValueError("boom")
        return list(batch)

    async def main():
        batcher = MicroBatcher(process, max_batch=64, window_s=0.05)
        results = await asyncio.gather(batcher.submit("bad"), batcher.submit("ok"), return_exceptions=True)
        after = await batcher.submit("later")
        return results, after

    results, after = asyncio.run(main())
    assert all(isinstance(r, ValueError) for r in results)
    assert after == "later"


def test_rejects_empty_batches():
    with pytest.raises(ValueError):
        MicroBatcher(lambda b: b, max_batch=0)
