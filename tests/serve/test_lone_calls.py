"""LoneCallGate: a call alone on the loop runs at once; calls that arrive together batch."""

from __future__ import annotations

import asyncio
import contextlib

from services.serving.lone_calls import LoneCallGate


async def _call(gate: LoneCallGate) -> bool:
    async with gate.enter() as alone:
        await asyncio.sleep(0)  # stays in, as a call waiting for its batch does
        return alone


def test_a_call_alone_is_told_so_and_leaves_no_count_behind():
    gate = LoneCallGate()

    async def two_in_a_row() -> list[bool]:
        return [await _call(gate), await _call(gate)]

    assert asyncio.run(two_in_a_row()) == [True, True]
    assert gate.active == 0


def test_calls_that_arrive_together_are_not_alone():
    gate = LoneCallGate()

    async def together() -> list[bool]:
        return await asyncio.gather(*(_call(gate) for _ in range(3)))

    assert asyncio.run(together()) == [False, False, False]
    assert gate.active == 0


def test_a_failing_call_still_leaves():
    gate = LoneCallGate()

    async def failing() -> None:
        async with gate.enter():
            raise ValueError("refused")

    with contextlib.suppress(ValueError):
        asyncio.run(failing())
    assert gate.active == 0
