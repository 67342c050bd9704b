"""ComputeAttributions over gRPC: a one-layer random Llama (its own BPE tokenizer, every projection
decomposed, C = 8, two steps) served next to a toy store as a second Serve application. The graph
of a text prompt equals spd_core's in-process one, streams in several chunks, prints through
`spd query graph` (table and JSON file), and bad requests are refused with the reason."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path

import grpc
import numpy as np
import pytest
import torch

from services.cli import main
from spd_client import AsyncClient, Client
from spd_client.generated.spd.v1 import decomposition_service_pb2_grpc as pb_grpc
from spd_client.messages import attributions_request
from spd_client.tensor_codec import from_proto
from spd_core.attribution import AttributionSpec, compute_attributions
from spd_core.config import config_from_dict
from spd_core.loading import Decomposition, load_decomposition
from spd_core.task.hf import hf_task
from spd_core.text.tokens import check_token_ids, encode_text
from spd_core.train.single_process import decompose
from tests.hf_configs import FIXTURE, tiny_hf_config

pytestmark = pytest.mark.ray
APP = "spd-graph"
TEXT = "The people of the nation"
ATTN_O = "model.layers.0.self_attn.o_proj"
MLP_UP = "model.layers.0.mlp.up_proj"


@pytest.fixture(scope="module")
def llama_store(tmp_path_factory) -> Path:
    """A random one-layer Llama saved as a Hugging Face folder, decomposed for two steps."""
    from spd_core.targets.tiny_llama.bpe import train_bpe_tokenizer
    from spd_core.targets.tiny_llama.export import save_hf_folder
    from spd_core.targets.tiny_llama.spec import TinyLlamaSpec
    from spd_core.targets.tiny_llama.training import build_llama, init_llama_

    root = tmp_path_factory.mktemp("graph-store")
    tokenizer = train_bpe_tokenizer(
        [p.read_text() for p in sorted(Path(FIXTURE).glob("*.txt"))], 320
    )
    spec = TinyLlamaSpec(
        corpora=("sotu",),
        vocab_size=320,
        n_layers=1,
        d_model=16,
        n_heads=2,
        d_mlp=32,
        context_length=16,
        train_steps=1,
        batch_size=8,
        warmup_steps=1,
        eval_windows=4,
    )
    model = build_llama(spec, len(tokenizer), tokenizer.eos_token_id)
    init_llama_(model, 0.5, torch.Generator().manual_seed(0))
    save_hf_folder(model.eval(), tokenizer, root / "llama", spec.context_length)
    config = config_from_dict(
        tiny_hf_config(str(root / "llama"), {"model.layers.0.*_proj": 8}, seq_len=16, steps=2)
    )
    decompose(config, hf_task(config, torch.device("cpu")), out=root / "llama.zarr")
    return root / "llama.zarr"


@pytest.fixture(scope="module")
def graph_server(server, stores, llama_store) -> str:
    """The session's Serve runs a second application, APP, serving `llama` and the toy `tms`."""
    from ray import serve

    from services.serving.app import build_app

    args = {
        "stores": [f"llama={llama_store}", f"tms={stores['tms-5-2']}"],
        "replica_cpus": 0.5,
        "limits": {"default_edges_per_chunk": 100},
    }
    serve.run(build_app(args), name=APP, route_prefix=f"/{APP}", blocking=False)
    yield server
    serve.delete(APP)


@pytest.fixture(scope="module")
def dec(llama_store) -> Decomposition:
    return load_decomposition(llama_store)


@pytest.fixture
def graph_client(graph_server):
    with Client(graph_server, application=APP) as c:
        yield c


def test_text_graph_equals_in_process_and_streams_in_chunks(graph_server, graph_client, dec):
    served = graph_client.compute_attributions("llama", text=TEXT)
    ids = encode_text(dec.tokenizer, TEXT, 16)
    spec = AttributionSpec(threshold=dec.config.ci_alive_threshold, output="loss")
    local = compute_attributions(dec.model, check_token_ids(ids, 320, 16), spec)
    assert served.output == "loss" and served.ids == ids and len(served.tokens) == len(ids)
    assert served.positions == list(range(len(ids))) and served.threshold == 0.0
    assert len(served.attributions) == served.candidate_edges == local.n_candidate_edges > 300
    assert [(n.module, n.component) for n in served.nodes] == [
        (n.module, n.component) for n in local.nodes
    ]
    np.testing.assert_array_equal(served.sources, local.edge_sources)
    np.testing.assert_array_equal(served.targets, local.edge_targets)
    np.testing.assert_allclose(served.attributions, local.attributions, rtol=1e-5, atol=1e-7)
    assert served.nodes[-1].module is None and served.nodes[-1].component == -1

    stub = pb_grpc.DecompositionServiceStub(grpc.insecure_channel(graph_server))
    request = attributions_request("llama", text=TEXT, edges_per_chunk=64)
    chunks = list(stub.ComputeAttributions(request, metadata=[("application", APP)]))
    assert len(chunks) == -(-len(local.attributions) // 64) > 1
    assert chunks[0].HasField("header") and not any(c.HasField("header") for c in chunks[1:])
    assert chunks[0].header.edges == len(local.attributions)
    joined = np.concatenate([from_proto(c.attributions) for c in chunks])
    np.testing.assert_array_equal(joined, served.attributions)

    async def via_async() -> np.ndarray:
        async with AsyncClient(graph_server, application=APP) as client:
            got = await client.compute_attributions("llama", text=TEXT, max_edges=5)
            return got.attributions

    np.testing.assert_array_equal(asyncio.run(via_async()), served.attributions[:5])


def test_pruned_and_restricted_graphs(graph_client, dec):
    full = graph_client.compute_attributions("llama", text=TEXT, output="none")
    top = graph_client.compute_attributions("llama", text=TEXT, output="none", max_edges=7)
    np.testing.assert_array_equal(top.attributions, full.attributions[:7])
    assert top.candidate_edges == full.candidate_edges
    o_to_up = graph_client.compute_attributions(
        "llama", text=TEXT, sources=[ATTN_O], targets=[MLP_UP], positions=[1, 2], output="none"
    )
    assert {n.module for n in o_to_up.nodes} == {ATTN_O, MLP_UP} and o_to_up.positions == [1, 2]
    assert all(o_to_up.nodes[s].module == ATTN_O for s in o_to_up.sources)
    assert all(o_to_up.nodes[t].module == MLP_UP for t in o_to_up.targets)


def test_query_graph_cli_prints_the_strongest_edges_and_writes_json(
    graph_server, graph_client, tmp_path, capsys
):
    base = ["query", "--address", graph_server, "--application", APP]
    out = tmp_path / "graph.json"
    assert main([*base, "graph", "llama", "--text", TEXT, "--rows", "5", "--out", str(out)]) == 0
    table = capsys.readouterr().out.splitlines()
    served = graph_client.compute_attributions("llama", text=TEXT)
    strongest = served.nodes[served.sources[0]], served.nodes[served.targets[0]]
    assert table[1].startswith(f"{len(served.nodes)} nodes (CI > 0 at positions 0..")
    assert table[2].split() == ["rank", "attribution", "source", "target"]
    first = table[3].split()
    assert first[0] == "1" and float(first[1]) == pytest.approx(served.attributions[0], rel=1e-4)
    assert first[2:] == [f"{strongest[0].module}:{strongest[0].component}"] + (
        ["output", "(loss)"]
        if strongest[1].module is None
        else [f"{strongest[1].module}:{strongest[1].component}"]
    )
    assert len(table) == 3 + 5 + 1 and table[-1].startswith("wrote the graph")
    written = json.loads(out.read_text())
    assert len(written["edges"]) == len(served.attributions)
    assert written["edges"][0][:2] == [int(served.sources[0]), int(served.targets[0])]
    assert main([*base, "--json", "graph", "tms", "[[0, 0.9, 0, 0, 0.4]]", "--logit", "1"]) == 0
    toy = json.loads(capsys.readouterr().out)
    assert toy["output"] == "logit" and toy["positions"] == [0]
    assert toy["nodes"][-1] == {
        "module": None,
        "component": 1,
        "max_ci": 0.0,
        "active_positions": 0,
    }


REFUSALS = [
    (
        {"sources": ["model.layers.7.mlp.up_proj"]},
        "NOT_FOUND",
        "module 'model.layers.7.mlp.up_proj' is not decomposed",
    ),
    (
        {"sources": [MLP_UP], "targets": [ATTN_O]},
        "INVALID_ARGUMENT",
        f"target module '{ATTN_O}' does not run after any source module",
    ),
    (
        {"positions": [40]},
        "INVALID_ARGUMENT",
        r"position 40 is out of range: this input has \d+ position",
    ),
    (
        {"logit_index": 320},
        "INVALID_ARGUMENT",
        "logit index 320 is out of range: the output has 320",
    ),
    ({"threshold": float("nan")}, "INVALID_ARGUMENT", "threshold must be a finite number"),
]


@pytest.mark.parametrize(("options", "code", "message"), REFUSALS)
def test_bad_requests_are_refused_with_the_reason(graph_client, options, code, message):
    with pytest.raises(grpc.RpcError) as err:
        graph_client.compute_attributions("llama", text=TEXT, **options)
    assert err.value.code().name == code
    assert re.search(message, err.value.details()), err.value.details()


def test_toy_refusals(graph_client):
    x = np.full((1, 5), 0.5, np.float32)
    with pytest.raises(grpc.RpcError) as err:
        graph_client.compute_attributions("tms", x, output="loss")
    assert "not a causal language model, so it has no next-token loss" in err.value.details()
    with pytest.raises(grpc.RpcError) as err:
        graph_client.compute_attributions("tms", np.full((2, 5), 0.5, np.float32))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "attributions are for one input" in err.value.details()
