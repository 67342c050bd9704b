"""What a store on object storage costs against a local one: a toy decomposition's step time and
the time to complete its store, with the store on s3:// (the test suite's S3-protocol server,
moto on 127.0.0.1) and on the local disk, and how many requests a completion and an open make.

    python benchmarks/store_object_storage.py [--steps 400] [--repeats 3]

- step time: seconds per optimisation step of `decompose` (tms-5-2, one process, no Ray), over
  the logged steps after the first (every logged step appends the training curves to the store,
  so the store's latency is in it), the median of --repeats runs taken in turn with the other
  store;
- completion time: `StoreWriter.mark_complete` of the finished store (read and hash every file,
  write the manifest, set the flag), the median of --repeats;
- requests: what the server answered during one completion and during one `FactorStore.open`
  (which lists the store and reads its manifest), by HTTP method.
The server runs in this process, so its own time is in the s3 figures; a real object store adds
network latency per request (tens of ms to S3 from outside its region), which the request counts
let one estimate.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from jsonl import emit

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # tests/s3_server.py

from spd_core.presets import resolve_config
from spd_core.store import FactorStore, StoreWriter
from spd_core.store.location import Location
from spd_core.task.toy import toy_task
from spd_core.train.progress import ProgressEvent
from spd_core.train.single_process import decompose
from tests.s3_server import S3Server


def _step_time(config, task, out: Location) -> float:
    """Seconds per step between the first and the last logged step."""
    seen: list[tuple[int, float]] = []

    def progress(event: ProgressEvent) -> None:
        seen.append((event.step, time.perf_counter()))

    decompose(
        config, task, out=out, progress=progress, checkpoint_every=config.steps, overwrite=True
    )
    (first, t0), (last, t1) = seen[0], seen[-1]
    return (t1 - t0) / (last - first)


def _completion(out: Location, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        writer = StoreWriter.open_existing(out, allow_complete=True)
        start = time.perf_counter()
        writer.mark_complete()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _requests(server: S3Server, action) -> dict[str, int]:
    before = dict(server.requests)
    action()
    return {m: n - before.get(m, 0) for m, n in server.requests.items() if n > before.get(m, 0)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    config = resolve_config("tms-5-2").model_copy(update={"steps": args.steps})
    task = toy_task(config, torch.device("cpu"))
    server = S3Server()
    server.create_bucket("bench")
    options = {
        "endpoint_url": server.endpoint,
        "key": server.credentials["AWS_ACCESS_KEY_ID"],
        "secret": server.credentials["AWS_SECRET_ACCESS_KEY"],
        "client_kwargs": {"region_name": "us-east-1"},
    }
    try:
        with tempfile.TemporaryDirectory() as tmp:
            stores = {
                "local": Location.of(Path(tmp) / "tms.zarr"),
                "s3": Location.of("s3://bench/tms.zarr", options),
            }
            steps: dict[str, list[float]] = {where: [] for where in stores}
            for _ in range(args.repeats):  # alternating, so that load on the machine hits both
                for where, out in stores.items():
                    steps[where].append(_step_time(config, task, out))
            for where, out in stores.items():
                emit(f"store_{where}/step_time", statistics.median(steps[where]), "s")
                emit(f"store_{where}/completion_time", _completion(out, args.repeats), "s")
                fs, path = out.filesystem()
                emit(f"store_{where}/files", len(fs.find(path)), "files")
            s3 = stores["s3"]
            completion = _requests(
                server, StoreWriter.open_existing(s3, allow_complete=True).mark_complete
            )
            for method, n in sorted(completion.items()):
                emit(f"store_s3/completion_requests/{method}", n, "requests")
            emit("store_s3/completion_requests", sum(completion.values()), "requests")
            opening = _requests(server, lambda: FactorStore.open(s3))
            emit("store_s3/open_requests", sum(opening.values()), "requests")
    finally:
        server.stop()


if __name__ == "__main__":
    main()
