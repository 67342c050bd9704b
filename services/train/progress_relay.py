"""Progress of a running job on the driver: rank 0 puts log records on a Ray queue, a driver
thread turns them into progress events."""

from __future__ import annotations

import queue as std_queue
import threading
from collections.abc import Callable
from types import TracebackType

from ray.util.queue import Empty, Queue

from spd_core.train.loop import LogRecord
from spd_core.train.progress import ProgressEvent, RateMeter, progress_event


class ProgressRelay:
    """`with ProgressRelay(steps, callback) as relay:` pass `relay.queue` to the workers."""

    def __init__(self, steps: int, callback: Callable[[ProgressEvent], None] | None):
        self.steps = steps
        self.callback = callback
        self.queue = Queue(actor_options={"num_cpus": 0})
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._pump, name="spd-progress", daemon=True)
        self._meter: RateMeter | None = None
        self._last_step = -1

    def __enter__(self) -> ProgressRelay:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._drain()
        self.queue.shutdown()

    def _pump(self) -> None:
        while not self._stop.is_set():
            try:
                self._emit(self.queue.get(timeout=0.5))
            except (Empty, std_queue.Empty):
                continue
            except Exception:  # the queue actor is gone: the job is over
                return

    def _drain(self) -> None:
        try:
            while True:
                self._emit(self.queue.get_nowait())
        except Exception:
            return

    def _emit(self, item: dict) -> None:
        record = LogRecord(**item)
        if self._meter is None or record.step <= self._last_step:
            self._meter = RateMeter(record.step)  # first record, or a restart: no rate yet
            rate = 0.0
        else:
            rate = self._meter.update(record.step)
        self._last_step = record.step
        if self.callback is not None:
            self.callback(progress_event(record, self.steps, rate))
