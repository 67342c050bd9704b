"""Letting a call that arrives alone skip the batch window.

`@serve.batch` holds the first call of a batch for `batch_wait_timeout_s` in case others join;
a call with nobody to join it would wait the whole window for nothing.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager


class LoneCallGate:
    """Counts the calls in progress on one event loop. `enter()` first yields to the loop once,
    so that calls already delivered to the replica register, then says whether this call is the
    only one: such a call can run at once instead of waiting for a batch to fill."""

    def __init__(self) -> None:
        self.active = 0

    @asynccontextmanager
    async def enter(self) -> AsyncIterator[bool]:
        self.active += 1
        try:
            await asyncio.sleep(0)
            yield self.active == 1
        finally:
            self.active -= 1
