"""Shared test setup: one torch thread, Ray environment defaults, small models."""

import os

import pytest
import torch

os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.1")
# Serve gives its proxy 5 s to start and 10 s per health check before replacing it; on a busy
# 2-core machine a new worker process can take longer than that to start, and then serve.start
# fails with the proxy "killed by ray.kill" before it ran. The local Ray inherits these.
os.environ.setdefault("RAY_SERVE_PROXY_READY_CHECK_TIMEOUT_S", "60")
os.environ.setdefault("RAY_SERVE_PROXY_HEALTH_CHECK_TIMEOUT_S", "30")
torch.set_num_threads(1)


class TwoLayer(torch.nn.Module):
    """x → ReLU(fc1 x + b1) → fc2, small enough to check by hand."""

    def __init__(self, d_in: int = 3, d_hidden: int = 4, d_out: int = 2, seed: int = 0):
        super().__init__()
        torch.manual_seed(seed)
        self.fc1 = torch.nn.Linear(d_in, d_hidden)
        self.fc2 = torch.nn.Linear(d_hidden, d_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(torch.relu(self.fc1(x)))


@pytest.fixture
def two_layer() -> TwoLayer:
    return TwoLayer()


@pytest.fixture(scope="session")
def ray_session():
    """One local Ray for the whole test session (Train and Serve tests share it).

    Logical CPUs exceed the machine's cores so that two Train workers, their controller and Serve
    replicas can all be scheduled at once; the work itself is tiny.
    """
    import ray

    from services.serving.app import set_serve_env

    set_serve_env()  # Serve runs as `spd serve` runs it
    ray.init(
        num_cpus=8,
        include_dashboard=False,
        log_to_driver=False,
        configure_logging=False,
    )
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def minilm():
    """all-MiniLM-L6-v2 from its PyPI package (installed by .ci/run)."""
    from spd_core.hf.loading import load_hf_target

    return load_hf_target("all-minilm-l6-v2")


@pytest.fixture(scope="session")
def smollm2():
    """SmolLM2-135M-Instruct from its packaged GGUF (converted once into the spd cache)."""
    from spd_core.hf.loading import load_hf_target

    return load_hf_target("smollm2-135m")


@pytest.fixture(scope="session")
def harvested_text_store(tmp_path_factory):
    """SmolLM2 with one MLP projection decomposed (C=4) for two steps, then harvested in-process
    over 10 windows of 8 tokens (shards of 4 windows): (store path, the harvest's settings)."""
    from spd_core.config import config_from_dict
    from spd_core.harvest import HarvestSettings, harvest, harvest_inputs, write_harvest
    from spd_core.loading import load_decomposition
    from spd_core.store import FactorStore
    from spd_core.task.hf import hf_task
    from spd_core.train.single_process import decompose
    from tests.hf_configs import tiny_hf_config

    module = "model.layers.3.mlp.down_proj"
    cfg = tiny_hf_config("smollm2-135m", {module: 4}, seq_len=8, steps=2, eval_batch_size=2)
    config = config_from_dict(cfg)
    path = tmp_path_factory.mktemp("harvested-text") / "smol.zarr"
    decompose(config, hf_task(config, torch.device("cpu")), out=path)
    store = FactorStore.open(path)
    settings = HarvestSettings(
        threshold=config.ci_alive_threshold,
        shard_size=4,
        batch_size=4,
        top_k=5,
        partners=3,
        top_tokens=4,
        ablation_examples=2,
    )
    dec = load_decomposition(store)
    write_harvest(path, harvest(dec, harvest_inputs(store, dec, settings, tokens=80), settings))
    return path, settings


@pytest.fixture(scope="session")
def harvest_toy_store(tmp_path_factory):
    """TMS 5-2 decomposed for 30 steps, for the harvest tests (its CI is far from sparse: good
    for co-activation). Tests copy it before changing it."""
    from spd_core.presets import resolve_config
    from spd_core.task.toy import toy_task
    from spd_core.train.single_process import decompose

    config = resolve_config("tms-5-2").model_copy(update={"steps": 30})
    path = tmp_path_factory.mktemp("harvest-toy") / "tms.zarr"
    decompose(config, toy_task(config, torch.device("cpu")), out=path)
    return path


@pytest.fixture(scope="session")
def chat_server():
    """A real OpenAI-compatible server on 127.0.0.1: `transformers serve` with the packaged
    SmolLM2-135M-Instruct as a local folder (built once in the spd cache), one torch thread (two
    threads on a busy 2-core machine are many times slower). Yields (base URL, model name, the
    server process)."""
    import shutil
    import socket
    import subprocess
    import time
    import urllib.request

    from spd_core.hf.pretrained_folder import pretrained_folder

    folder = pretrained_folder("smollm2-135m")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    command = [shutil.which("transformers") or "transformers", "serve", str(folder)]
    command += ["--host", "127.0.0.1", "--port", str(port), "--device", "cpu"]
    proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 300
    while True:
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=5) as answer:
                if answer.status == 200:
                    break
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"transformers serve did not start (exit {proc.poll()})")
        time.sleep(1)
    yield f"{url}/v1", str(folder), proc
    proc.terminate()
    proc.wait(timeout=30)


def _stderr_says(process, text: str, timeout: float) -> bool:
    """Whether `process` writes `text` to its stderr (a pipe) within `timeout` seconds (what it
    writes until then is read here, raw, and dropped)."""
    import selectors
    import time

    seen, deadline = b"", time.monotonic() + timeout
    with selectors.DefaultSelector() as selector:
        selector.register(process.stderr, selectors.EVENT_READ)
        while text.encode() not in seen and (left := deadline - time.monotonic()) > 0:
            if not selector.select(left):
                break
            chunk = os.read(process.stderr.fileno(), 65536)
            if not chunk:  # the process closed its stderr
                break
            seen += chunk
    return text.encode() in seen


@pytest.fixture(scope="session")
def labelled_text_store(harvested_text_store, chat_server, tmp_path_factory):
    """A copy of the harvested SmolLM2 store labelled through the real chat server, by a run
    that was stopped after its first component and then resumed: (store path, the checkpoint's
    records when it was stopped, the resumed run's output)."""
    import json
    import shutil
    import signal
    import subprocess
    import sys
    import time

    from services.commands.autointerp import INTERRUPTED

    path = tmp_path_factory.mktemp("labelled") / "smol.zarr"
    shutil.copytree(harvested_text_store[0], path)
    url, model, server = chat_server
    command = [sys.executable, "-m", "services.cli", "autointerp", str(path)]
    command += ["--endpoint", url, "--model", model, "--limit", "2", "--concurrency", "1"]
    command += ["--examples", "3", "--max-tokens", "24", "--attempts", "2"]
    checkpoint = path.with_name(path.name + ".autointerp-checkpoint.jsonl")
    stopped = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    while not (checkpoint.exists() and '"kind": "label"' in checkpoint.read_text()):
        assert stopped.poll() is None, stopped.communicate()
        time.sleep(0.02)
    # hold the server so that the second component cannot finish first (on a fast machine it
    # did: the run ended 0 before the interrupt), interrupt the run mid-request, and let the
    # server go once the run says it heard the interrupt (on a loaded machine a fixed second
    # was not always enough: the run finished the held request and ended 0)
    server.send_signal(signal.SIGSTOP)
    try:
        stopped.send_signal(signal.SIGINT)
        heard = _stderr_says(stopped, INTERRUPTED, timeout=120)
    finally:
        server.send_signal(signal.SIGCONT)
    _, err = stopped.communicate(timeout=120)
    assert heard and stopped.returncode == 130, err
    records = [json.loads(line) for line in checkpoint.read_text().splitlines()]
    resumed = subprocess.run([*command, "--resume"], capture_output=True, text=True, timeout=1800)
    assert resumed.returncode == 0, resumed.stderr
    return path, records, resumed.stdout


GPT2_MODULES = {"transformer.wte": 5, "transformer.h.0.mlp.c_fc": 6, "lm_head": 4}


@pytest.fixture(scope="session")
def gpt2_store(tmp_path_factory):
    """A GPT-2 folder of the user's own (`GPT2LMHeadModel`, tests/tiny_gpt2.py) decomposed with
    `output_loss_type: kl` for two steps: its token embedding and tied LM head, and a Conv1D
    (GPT2_MODULES). Returns (model folder, store path)."""
    from spd_core.config import config_from_dict
    from spd_core.task.hf import hf_task
    from spd_core.train.single_process import decompose
    from tests.hf_configs import tiny_hf_config
    from tests.tiny_gpt2 import gpt2_folder

    root = tmp_path_factory.mktemp("gpt2")
    folder = gpt2_folder(root / "my-gpt2")
    cfg = tiny_hf_config(
        str(folder),
        GPT2_MODULES,
        steps=2,
        eval_batch_size=2,
        ci_fn_type="mlp",
        ci_fn_hidden_dims=[8],
    )
    config = config_from_dict(cfg)
    path = root / "gpt2.zarr"
    decompose(config, hf_task(config, torch.device("cpu")), out=path)
    return folder, path
