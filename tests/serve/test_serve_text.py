"""Text queries over gRPC: one SmolLM2 MLP layer decomposed for two steps, stored, served next to
a toy store (a second Serve application), queried with text and token ids; answers equal
spd_core's in-process ones, and bad text inputs are clear INVALID_ARGUMENT errors."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import grpc
import numpy as np
import pytest
import torch

from services.cli import main
from spd_client import AsyncClient, Client
from spd_client.generated.spd.v1 import decomposition_service_pb2 as pb
from spd_client.generated.spd.v1 import decomposition_service_pb2_grpc as pb_grpc
from spd_client.tensor_codec import from_proto, to_proto
from spd_core.config import config_from_dict
from spd_core.loading import Decomposition, load_decomposition
from spd_core.queries import MaskSpec, ablated_outputs, importances
from spd_core.task.hf import hf_task
from spd_core.text.contexts import top_contexts
from spd_core.text.importances import text_importances
from spd_core.text.tokens import top_next_tokens
from spd_core.text.windows import eval_windows
from spd_core.train.single_process import decompose
from tests.hf_configs import FIXTURE, tiny_hf_config

pytestmark = pytest.mark.ray
APP = "spd-text"
MODULE = "model.layers.3.mlp.down_proj"
TEXT = "The capital of France is"


@pytest.fixture(scope="module")
def text_store(tmp_path_factory) -> Path:
    """SmolLM2 with one MLP projection decomposed (C=4) for two steps on the fixture text."""
    cfg = tiny_hf_config("smollm2-135m", {MODULE: 4}, seq_len=8, steps=2, eval_batch_size=2)
    config = config_from_dict(cfg)
    path = tmp_path_factory.mktemp("text-store") / "smol.zarr"
    decompose(config, hf_task(config, torch.device("cpu")), out=path)
    return path


@pytest.fixture(scope="module")
def text_server(server, stores, text_store) -> str:
    """The session's Serve runs a second application, APP, serving `smol` and the toy `tms`."""
    from ray import serve

    from services.serving.app import build_app

    args = {
        "stores": [f"smol={text_store}", f"tms={stores['tms-5-2']}"],
        "replica_cpus": 0.5,
        "batch_wait_timeout_s": 0.05,
    }
    serve.run(build_app(args), name=APP, route_prefix=f"/{APP}", blocking=False)
    yield server
    serve.delete(APP)


@pytest.fixture(scope="module")
def dec(text_store) -> Decomposition:
    return load_decomposition(text_store)


@pytest.fixture
def text_client(text_server):
    with Client(text_server, application=APP) as c:
        yield c


def test_describes_the_language_model(text_client):
    d = text_client.get_decomposition("smol")
    assert d.text_model and d.causal_lm and d.target == "smollm2-135m"
    assert (d.context_length, d.vocab_size) == (8192, 49152)
    assert [(m.name, m.c) for m in d.modules] == [(MODULE, 4)]
    toy = text_client.get_decomposition("tms")
    assert not toy.text_model and list(toy.input_shape) == [5]


def test_text_importances_per_token_equal_in_process(text_client, text_server, dec):
    served = text_client.text_importances("smol", text=TEXT)
    expected = text_importances(dec.model, dec.tokenizer, TEXT, dec.target_spec)
    assert served.tokens == expected.tokens == ["The", " capital", " of", " France", " is"]
    assert served.ids == expected.ids
    values = served.importances[MODULE].values
    assert values.shape == (5, 4) and served.importances[MODULE].indices is None
    np.testing.assert_allclose(values, expected.importances[MODULE].numpy(), atol=1e-6, rtol=0)
    by_ids = text_client.text_importances("smol", token_ids=expected.ids, top_k=2)
    top = by_ids.importances[MODULE]
    assert by_ids.tokens == expected.tokens and top.indices.shape == (5, 2)
    np.testing.assert_allclose(
        np.take_along_axis(values, top.indices, 1), top.values, atol=1e-6, rtol=0
    )
    np.testing.assert_allclose(top.values, -np.sort(-values, 1)[:, :2], atol=1e-6, rtol=0)
    request = pb.StreamImportancesRequest(
        request=pb.ComputeImportancesRequest(decomposition="smol", text=TEXT)
    )
    with grpc.insecure_channel(text_server) as channel:
        stub = pb_grpc.DecompositionServiceStub(channel)
        (chunk,) = stub.StreamImportances(request, metadata=[("application", APP)])
    assert (chunk.start, chunk.stop) == (0, 1)
    np.testing.assert_allclose(from_proto(chunk.importances[0].values), values, atol=1e-6, rtol=0)


def test_async_client_and_upper_importances_of_token_ids(text_server, dec):
    ids = [504, 3575, 282]

    async def ask():
        async with AsyncClient(text_server, application=APP) as c:
            return await c.text_importances("smol", token_ids=ids, kind="upper")

    served = asyncio.run(ask())
    expected = importances(dec.model, torch.tensor([ids]), "upper")[MODULE][0]
    assert served.tokens == ["The", " capital", " of"]
    np.testing.assert_allclose(
        served.importances[MODULE].values, expected.numpy(), atol=1e-6, rtol=0
    )


def _expected_next(dec: Decomposition, ids: list[int], spec: MaskSpec, k: int):
    result = ablated_outputs(dec.model, torch.tensor([ids]), spec, "kl")
    samples = [top_next_tokens(o[0, -1], dec.tokenizer, k) for o in result.outputs]
    return result, samples, top_next_tokens(result.target[0, -1], dec.tokenizer, k)


def _assert_same_tokens(served, expected) -> None:
    assert [(i, t) for i, t, _ in served] == [(i, t) for i, t, _ in expected]
    np.testing.assert_allclose([p for *_, p in served], [p for *_, p in expected], atol=1e-5)


@pytest.mark.parametrize(
    ("mode", "options"),
    [
        ("ci", {}),
        ("ablate", {"components": {MODULE: [0, 2]}}),
        ("stochastic", {"n_samples": 2, "seed": 7, "use_delta": True}),
    ],
)
def test_ablate_text_gives_next_tokens_equal_in_process(text_client, dec, mode, options):
    served = text_client.text_ablate("smol", mode, text=TEXT, top_k_tokens=5, **options)
    spec = MaskSpec(mode=mode, **{**options, "components": options.get("components", {})})
    result, samples, target = _expected_next(dec, served.ids, spec, 5)
    assert served.tokens[-1] == " is" and served.outputs is None
    assert target[0][1] == " Paris" and served.target_next_tokens[0][1] == " Paris"
    _assert_same_tokens(served.target_next_tokens, target)
    assert len(served.next_tokens) == len(samples) == options.get("n_samples", 1)
    for got, want in zip(served.next_tokens, samples, strict=True):
        _assert_same_tokens(got, want)
    np.testing.assert_allclose(served.divergence, result.divergence.numpy(), atol=1e-6, rtol=0)
    assert served.position_divergence.shape == (len(samples), 1, len(served.ids))
    np.testing.assert_allclose(
        served.position_divergence, result.position_divergence.numpy(), atol=1e-6, rtol=0
    )
    np.testing.assert_allclose(served.position_divergence.mean(-1), served.divergence, atol=1e-6)


def _status(call) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as err:
        call()
    return err.value.code(), err.value.details()


def test_bad_text_inputs_are_invalid_argument_with_a_fix(text_client, text_server):
    cases = {
        "is 8201 tokens long but the model's context is 8192 tokens; shorten it by 9": lambda: (
            text_client.text_importances("smol", text="word " * 8200)
        ),
        "token_ids: unknown token ids [-1, 49152]: the vocabulary has ids 0..49151": lambda: (
            text_client.text_ablate("smol", "ci", token_ids=[5, 49152, -1])
        ),
        "'tms' is not a language model, so it takes no text: send inputs, a Tensor of shape "
        "['N', 5]": lambda: text_client.text_importances("tms", text=TEXT),
        "'tms' is not a language model, so it takes no token_ids": lambda: text_client.text_ablate(
            "tms", "ci", token_ids=[1, 2]
        ),
        "'smol' is a language model (smollm2-135m), and the request has an inputs Tensor: send "
        "text (tokenized on the server) or token_ids": lambda: text_client.compute_importances(
            "smol", np.zeros((1, 5), np.float32)
        ),
        "top_k_tokens 50000 exceeds the vocabulary size 49152": lambda: text_client.text_ablate(
            "smol", "ci", text=TEXT, top_k_tokens=50000
        ),
    }
    for message, call in cases.items():
        code, details = _status(call)
        assert code == grpc.StatusCode.INVALID_ARGUMENT, details
        assert message in details
    with grpc.insecure_channel(text_server) as channel:
        stub = pb_grpc.DecompositionServiceStub(channel)
        both = pb.ComputeImportancesRequest(
            decomposition="smol", text=TEXT, token_ids=pb.TokenIds(ids=[1])
        )
        code, details = _status(
            lambda: stub.ComputeImportances(both, metadata=[("application", APP)])
        )
        assert code == grpc.StatusCode.INVALID_ARGUMENT
        assert "send one of inputs, text or token_ids, not text and token_ids" in details
        none = pb.AblateRequest(decomposition="smol", mode=pb.MASK_MODE_CI)
        code, details = _status(lambda: stub.Ablate(none, metadata=[("application", APP)]))
        assert "the request has no input: send text" in details
        toy = pb.ComputeImportancesRequest(
            decomposition="tms", inputs=to_proto(np.full((1, 5), 0.5, np.float32))
        )
        ok = stub.ComputeImportances(toy, metadata=[("application", APP)])
        assert ok.importances and not ok.HasField("tokens")  # toy tensors still served


def test_query_cli_with_text(text_server, dec, capsys):
    base = ["query", "--address", text_server, "--application", APP]
    assert main([*base, "--json", "importances", "smol", "--text", TEXT]) == 0
    printed = json.loads(capsys.readouterr().out)
    expected = text_importances(dec.model, dec.tokenizer, TEXT, dec.target_spec)
    assert printed["tokens"] == expected.tokens
    np.testing.assert_allclose(
        printed["importances"][MODULE]["values"], expected.importances[MODULE].numpy(), atol=1e-6
    )
    assert main([*base, "ablate", "smol", "--text", TEXT, "--mode", "ci", "--top-tokens", "3"]) == 0
    table = capsys.readouterr().out
    assert "  target: ' Paris' " in table and "sample 0: ' Paris' " in table
    assert main([*base, "importances", "smol", "--token-ids", "1,49152"]) == 2
    assert "INVALID_ARGUMENT: token_ids: unknown token ids [49152]" in capsys.readouterr().err


def test_component_contexts_equal_in_process_and_refusals(text_client, dec):
    served = text_client.get_component_contexts("smol", MODULE, 2, k=3, n_windows=4)
    windows = eval_windows(dec.tokenizer, dec.config.target.data, 4)
    expected = top_contexts(dec.model, dec.tokenizer, windows, MODULE, 2, k=3)
    assert served.n_windows == 4 and served.corpus == FIXTURE and len(served.contexts) == 3
    assert [(c.window, c.position, c.token, c.before, c.after) for c in served.contexts] == [
        (c.window, c.position, c.token, c.before, c.after) for c in expected
    ]
    np.testing.assert_allclose(
        [c.importance for c in served.contexts], [c.importance for c in expected], atol=1e-6
    )
    refusals = [
        (("tms", "linear1", 0), {}, grpc.StatusCode.INVALID_ARGUMENT, "'tms' is not a language"),
        (("smol", MODULE, 4), {}, grpc.StatusCode.NOT_FOUND, "has no component 4: it has C = 4"),
        (("smol", "model.x", 0), {}, grpc.StatusCode.NOT_FOUND, "module 'model.x' is not"),
        (("smol", MODULE, 0), {"n_windows": 10_000}, grpc.StatusCode.RESOURCE_EXHAUSTED, "limit"),
    ]
    for args, options, code, message in refusals:
        got, details = _status(lambda: text_client.get_component_contexts(*args, **options))  # noqa: B023
        assert got == code and message in details, details
