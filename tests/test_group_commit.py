"""Group commit: callers that finish together share one write; a failed write fails them all."""

from __future__ import annotations

import asyncio

import pytest

from app.outbox.jobs import GroupCommit


async def test_concurrent_items_share_a_write_and_each_waits_for_it() -> None:
    writes: list[list[int]] = []

    async def write(items: list[int]) -> None:
        await asyncio.sleep(0.01)
        writes.append(items)

    group: GroupCommit[int] = GroupCommit(write)
    await asyncio.gather(*(group.submit(n) for n in range(10)))
    assert sorted(n for batch in writes for n in batch) == list(range(10))
    assert len(writes) < 10  # shared, not one each
    await group.submit(99)  # a later item starts a new round
    assert writes[-1] == [99]


async def test_a_failed_write_fails_every_item_in_it() -> None:
    async def write(items: list[int]) -> None:
        raise RuntimeError("database went away")

    group: GroupCommit[int] = GroupCommit(write)
    results = await asyncio.gather(*(group.submit(n) for n in range(3)), return_exceptions=True)
    assert all(isinstance(result, RuntimeError) for result in results)
    with pytest.raises(RuntimeError):
        await group.submit(4)


async def test_a_linger_gathers_callers_finishing_a_moment_apart() -> None:
    writes: list[list[int]] = []

    async def write(items: list[int]) -> None:
        writes.append(items)

    async def finish(group: GroupCommit[int], n: int, spacing: float) -> None:
        await asyncio.sleep(n * spacing)
        await group.submit(n)

    lingering: GroupCommit[int] = GroupCommit(write, linger=0.3)
    await asyncio.gather(*(finish(lingering, n, 0.01) for n in range(5)))
    assert writes == [[0, 1, 2, 3, 4]]  # one transaction for the five

    writes.clear()
    eager: GroupCommit[int] = GroupCommit(write)
    await asyncio.gather(*(finish(eager, n, 0.05) for n in range(3)))
    assert writes[0] == [0]  # without a linger the first is written before the next arrives
    assert sorted(n for batch in writes for n in batch) == [0, 1, 2]


async def test_the_last_caller_closes_a_lingering_group_at_once() -> None:
    writes: list[list[int]] = []

    async def write(items: list[int]) -> None:
        writes.append(items)

    group: GroupCommit[int] = GroupCommit(write, linger=600)
    done = asyncio.gather(group.submit(1), group.submit(2))
    await asyncio.sleep(0.05)
    assert writes == []  # held open for more
    await asyncio.wait_for(asyncio.gather(done, group.submit(3, last=True)), timeout=60)
    assert writes == [[1, 2, 3]]
