"""The graph view's pure logic, without a server: where each component is placed, the output
node a query names, pinned components and the numbers of a tokens= / input= list."""

from __future__ import annotations

import numpy as np
import pytest

from services.explorer.page_errors import PageError
from services.explorer.views.graph import (
    graph_input,
    max_ci_positions,
    output_node,
    pinned_components,
)
from spd_client.generated.spd.v1 import decomposition_service_pb2 as pb
from spd_client.generated.spd.v1 import tensor_pb2
from spd_client.tensor_codec import from_proto, to_proto


def _threshold_response(ci: np.ndarray, tokens: bool = False) -> pb.ComputeImportancesResponse:
    """What a threshold selection (> 0) of `ci` answers, for one module "m"."""
    above = ci > 0
    entry = pb.ModuleImportances(
        module="m",
        values=to_proto(ci[above].astype(np.float32)),
        indices=to_proto(np.argwhere(above).astype(np.int64)),
    )
    response = pb.ComputeImportancesResponse(importances=[entry])
    if tokens:
        response.tokens.CopyFrom(pb.Tokens(ids=list(range(len(ci))), strings=["a"] * len(ci)))
    return response


def test_a_component_is_placed_at_its_largest_ci_position_the_first_of_equals():
    ci = np.array([[0.2, 0.0, 0.5], [0.9, 0.0, 0.5], [0.1, 0.3, 0.0]])  # (positions, C)
    placed = max_ci_positions(_threshold_response(ci, tokens=True))
    assert placed == {
        "m:0": [1, pytest.approx(0.9)],
        "m:1": [2, pytest.approx(0.3)],
        "m:2": [0, 0.5],
    }


def test_a_sequence_toy_and_a_vector_toy_place_by_position_and_at_0():
    sequence = np.zeros((1, 4, 2))
    sequence[0, 3, 1] = 0.7
    sequence[0, 1, 1] = 0.2
    assert max_ci_positions(_threshold_response(sequence)) == {"m:1": [3, pytest.approx(0.7)]}
    vector = np.array([[0.0, 0.4, 0.6]])
    assert max_ci_positions(_threshold_response(vector)) == {
        "m:1": [0, pytest.approx(0.4)],
        "m:2": [0, pytest.approx(0.6)],
    }


LM = pb.Decomposition(name="lm", text_model=True, causal_lm=True, vocab_size=10)
TOY = pb.Decomposition(
    name="toy", input_shape=[5], input_dtype=tensor_pb2.DTYPE_FLOAT32, output_shape=[5]
)
SEQUENCE = pb.Decomposition(
    name="seq", input_shape=[4], input_dtype=tensor_pb2.DTYPE_INT64, output_shape=[4, 7]
)


@pytest.mark.parametrize(
    ("raw", "d", "expected"),
    [
        (None, LM, (pb.ATTRIBUTION_OUTPUT_LOSS, 0)),
        (None, TOY, (pb.ATTRIBUTION_OUTPUT_NONE, 0)),
        ("none", LM, (pb.ATTRIBUTION_OUTPUT_NONE, 0)),
        ("logit:9", LM, (pb.ATTRIBUTION_OUTPUT_LOGIT, 9)),
        ("logit:6", SEQUENCE, (pb.ATTRIBUTION_OUTPUT_LOGIT, 6)),
    ],
)
def test_the_output_node_of_a_query(raw, d, expected):
    assert output_node(raw, d) == expected


@pytest.mark.parametrize(
    ("raw", "d", "says"),
    [
        ("logit:10", LM, "the output has 10 entries (0..9)"),
        ("logit:7", SEQUENCE, "the output has 7 entries"),
        ("logit:-1", LM, "is not loss, none or logit:ID"),
        ("loss", TOY, "not a causal language model"),
    ],
)
def test_a_bad_output_is_a_400_that_says_why(raw, d, says):
    with pytest.raises(PageError) as err:
        output_node(raw, d)
    assert err.value.status == 400 and says in err.value.message


def test_pinned_components_are_checked_and_deduplicated():
    modules = {"layers.0.attn.q_proj": 4, "m": 2}
    assert pinned_components("layers.0.attn.q_proj:3,m:1,m:01,", modules) == [
        "layers.0.attn.q_proj:3",
        "m:1",
    ]
    assert pinned_components(None, modules) == []
    for bad, says in (("m:2", "'m' has components 0..1"), ("x:1", "no module 'x'"), ("m", "")):
        with pytest.raises(PageError) as err:
            pinned_components(bad, modules)
        assert err.value.status == 400 and says in err.value.message


def test_inputs_become_the_request_field_each_decomposition_takes():
    assert graph_input({}, LM) is None
    assert graph_input({"text": "hi"}, LM).fields == {"text": "hi"}
    assert list(graph_input({"tokens": "3, 4 5"}, LM).fields["token_ids"].ids) == [3, 4, 5]
    sequence = from_proto(graph_input({"tokens": "1,2,3,4"}, SEQUENCE).fields["inputs"])
    assert sequence.dtype == np.int64 and sequence.tolist() == [[1, 2, 3, 4]]
    vector = from_proto(graph_input({"input": "1,0,0.5,0,0"}, TOY).fields["inputs"])
    assert vector.dtype == np.float32 and vector.tolist() == [[1, 0, 0.5, 0, 0]]
    with pytest.raises(PageError) as err:
        graph_input({"input": "1,2"}, SEQUENCE)
    assert "give tokens=" in err.value.message
