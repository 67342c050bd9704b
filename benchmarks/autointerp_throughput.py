"""Labelling throughput of `spd autointerp`: labels per minute and tokens per label at each
--concurrency, on fresh copies of one harvested store, against a given OpenAI-compatible server
or (default) `transformers serve` started here with the packaged SmolLM2-135M-Instruct (with
--continuous-batching, one that batches concurrent requests).

    python benchmarks/autointerp_throughput.py STORE --limit 8 --concurrency 1 4
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import zarr

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.jsonl import emit


def _local_server(continuous_batching: bool) -> tuple[subprocess.Popen, str, str]:
    from spd_core.hf.pretrained_folder import pretrained_folder

    folder = pretrained_folder("smollm2-135m")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    command = ["transformers", "serve", str(folder), "--host", "127.0.0.1", "--port", str(port)]
    if continuous_batching:
        command += ["--continuous-batching"]
    proc = subprocess.Popen(
        [*command, "--device", "cpu"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    url = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=5):
                return proc, f"{url}/v1", str(folder)
        except OSError:
            time.sleep(1)
    proc.kill()
    raise SystemExit("transformers serve did not start")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("store", help="a complete, harvested store of a language model")
    parser.add_argument("--endpoint", help="an OpenAI-compatible base URL (default: start one)")
    parser.add_argument("--model", help="the model, with --endpoint")
    parser.add_argument("--limit", type=int, default=8, help="components per run (default 8)")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--max-tokens", type=int, default=60, help="explainer answer limit")
    parser.add_argument(
        "--continuous-batching",
        action="store_true",
        help="start the local server with continuous batching (it then generates concurrent "
        "requests together instead of one at a time; on a CPU its KV cache takes 60%% of the "
        "free RAM, see docs/autointerp.md)",
    )
    args = parser.parse_args()
    server = None
    endpoint, model = args.endpoint, args.model
    if endpoint is None:
        server, endpoint, model = _local_server(args.continuous_batching)
    try:
        for k in args.concurrency:
            with tempfile.TemporaryDirectory() as tmp:
                copy = Path(tmp) / "store.zarr"
                shutil.copytree(args.store, copy)
                command = [sys.executable, "-m", "services.cli", "autointerp", str(copy)]
                command += ["--endpoint", endpoint, "--model", model, "--limit", str(args.limit)]
                command += ["--concurrency", str(k), "--max-tokens", str(args.max_tokens)]
                start = time.perf_counter()
                subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
                seconds = time.perf_counter() - start
                attrs = zarr.open_group(copy / "interp", mode="r").attrs
                n = attrs["components_labelled"] + attrs["components_unparsed"]
                emit(f"autointerp/concurrency_{k}/components_per_minute", n / seconds * 60, "1/min")
                emit(
                    f"autointerp/concurrency_{k}/tokens_per_component",
                    attrs["tokens_used"] / n,
                    "tokens",
                )
                emit(f"autointerp/concurrency_{k}/seconds", seconds, "s")
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=30)


if __name__ == "__main__":
    main()
