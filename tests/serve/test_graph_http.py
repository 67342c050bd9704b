"""The attribution graph page over real HTTP against a real Serve application: the page's
request is the graph its URL names (the same as the JSON API's answer to it), every node the API
returns has a place on the page, a graph of over 50,000 candidate edges reaches the page pruned
to max_edges, and every bad query is a 400 (an unknown decomposition a 404) that says why."""

from __future__ import annotations

import base64
import html
import json
import re
from urllib.parse import urlencode

import numpy as np
import pytest

from tests.serve.conftest import TOKEN
from tests.serve.http_calls import http

pytestmark = pytest.mark.ray
SMOL_MODULE = "model.layers.3.mlp.down_proj"


def page(base: str, name: str, **query: str):
    return http(f"{base}/d/{name}/graph?{urlencode(query)}", token=TOKEN)


def data(answer, attribute: str):
    """A data-* attribute of the graph section, parsed from JSON."""
    found = re.search(rf'data-{attribute}="([^"]*)"', answer.text)
    assert found, f"no data-{attribute} on the page"
    return json.loads(html.unescape(found.group(1)))


def stream(base: str, request: dict) -> tuple[dict, list[dict], np.ndarray]:
    """(header, messages, attributions) of the JSON API's ComputeAttributions answer."""
    answer = http(f"{base}/api/v1/ComputeAttributions", "POST", request, token=TOKEN)
    assert answer.status == 200, answer.text
    messages = [json.loads(line) for line in answer.text.splitlines() if line]
    values = [
        np.frombuffer(base64.b64decode(m["attributions"].get("data", "")), "<f4") for m in messages
    ]
    return messages[0]["header"], messages, np.concatenate(values)


def test_a_toy_page_asks_for_the_graph_of_its_url_and_places_every_node(graph_explorer):
    answer = page(graph_explorer, "tms", input="1,0,0,0.5,0", output="logit:2", threshold="0")
    assert answer.status == 200, answer.text
    request = data(answer, "request")
    assert request["decomposition"] == "tms" and request["threshold"] == 0
    assert request["output"] == "ATTRIBUTION_OUTPUT_LOGIT" and request["logitIndex"] == "2"
    assert request["maxEdges"] == "500" and request["inputs"]["shape"] == ["1", "5"]
    sent = np.frombuffer(base64.b64decode(request["inputs"]["data"]), "<f4")
    np.testing.assert_array_equal(sent, [1, 0, 0, 0.5, 0])
    header, _, values = stream(graph_explorer, request)
    placement = data(answer, "placement")
    nodes = [n for n in header["nodes"] if not n.get("isOutput")]
    assert {f"{n['module']}:{n.get('component', '0')}" for n in nodes} == set(placement)
    assert {n["module"] for n in nodes} == {"linear1", "linear2"}
    for n in nodes:  # the largest CI the page places a node by is the graph's max_ci
        assert placement[f"{n['module']}:{n.get('component', '0')}"] == [
            0,
            pytest.approx(n["maxCi"]),
        ]
    assert data(answer, "labels") == ["input"]
    assert len(values) == int(header["edges"]) > 0
    assert 'src="/graph/static/graph.js"' in answer.text


def test_a_text_page_places_each_component_at_its_largest_ci_token(graph_explorer):
    answer = page(graph_explorer, "smol", text="The cat sat on the mat")
    assert answer.status == 200, answer.text
    request = data(answer, "request")
    assert request["output"] == "ATTRIBUTION_OUTPUT_LOSS" and "threshold" not in request
    importances = http(
        f"{graph_explorer}/api/v1/ComputeImportances",
        "POST",
        {"decomposition": "smol", "text": "The cat sat on the mat", "selection": {"dense": {}}},
        token=TOKEN,
    ).json()
    values = importances["importances"][0]["values"]
    ci = np.frombuffer(base64.b64decode(values["data"]), "<f4").reshape(
        [int(s) for s in values["shape"]]
    )
    assert data(answer, "labels") == importances["tokens"]["strings"]
    expected = {
        f"{SMOL_MODULE}:{c}": [int(np.argmax(ci[:, c])), pytest.approx(float(ci[:, c].max()))]
        for c in range(ci.shape[1])
        if ci[:, c].max() > 0
    }
    assert data(answer, "placement") == expected
    header, _, _ = stream(graph_explorer, request)
    assert header["nodes"][-1]["isOutput"] and len(header["nodes"]) == len(expected) + 1


def test_fifty_thousand_candidate_edges_reach_the_page_pruned_to_max_edges(graph_explorer):
    answer = page(graph_explorer, "wide", input="1,0,0,0.5,0", output="logit:2", threshold="-1")
    assert answer.status == 200, answer.text
    request = data(answer, "request")
    assert request["maxEdges"] == "500" and request["edgesPerChunk"] == "250"
    header, messages, values = stream(graph_explorer, request)
    assert int(header["candidateEdges"]) >= 50_000
    assert int(header["edges"]) == len(values) == 500 and len(messages) == 2
    assert np.all(np.diff(np.abs(values)) <= 0), "strongest first"
    assert len(data(answer, "placement")) == 800  # every component is active at threshold -1


def test_without_an_input_the_page_is_a_form_with_one_hot_presets(graph_explorer):
    answer = http(f"{graph_explorer}/d/tms/graph", token=TOKEN)
    assert answer.status == 200 and 'id="graph-form"' in answer.text
    assert 'id="graph"' not in answer.text
    assert answer.text.count("/graph/d/tms/graph?input=") == 5
    assert "/graph/d/tms/graph?input=0%2C0%2C1%2C0%2C0" in answer.text


def test_the_decomposition_page_links_to_the_graph(graph_explorer):
    answer = http(f"{graph_explorer}/d/smol", token=TOKEN)
    assert 'href="/graph/d/smol/graph" id="graph-link"' in answer.text


def test_markup_in_the_text_is_escaped_in_the_page(graph_explorer):
    markup = "<img src=x onerror=alert(1)>"
    answer = page(graph_explorer, "smol", text=markup)
    assert answer.status == 200 and "<img" not in answer.text
    assert html.escape(markup, quote=True) in answer.text


TOY = {"input": "1,0,0,0.5,0"}
REFUSALS = [
    ("smol", {"text": ""}, 400, "text is empty"),
    ("smol", {"text": "x" * 2001}, 400, "text is 2001 characters long; at most 2000"),
    ("smol", {"tokens": "1,2,x"}, 400, "tokens: 'x' is not a whole number"),
    ("smol", {"tokens": "1,99999999"}, 400, "token_ids"),
    ("smol", {"input": "1,2"}, 400, "input= does not fit 'smol', a language model"),
    ("smol", {"text": "a", "tokens": "1"}, 400, "give one of text, tokens or input"),
    ("smol", {"text": "a", "output": "logit:49152"}, 400, "logit index 49152 is out of range"),
    ("tms", {**TOY, "output": "logit:5"}, 400, "the output has 5 entries (0..4)"),
    ("tms", {**TOY, "output": "loss"}, 400, "'tms' is not a causal language model"),
    ("tms", {**TOY, "output": "logits"}, 400, "output='logits' is not loss, none or logit:ID"),
    ("tms", {**TOY, "threshold": "nan"}, 400, "threshold='nan' is not a finite number"),
    ("tms", {**TOY, "threshold": "high"}, 400, "threshold='high' is not a number"),
    ("tms", {**TOY, "max_edges": "0"}, 400, "max_edges='0' is not a whole number >= 1"),
    ("tms", {**TOY, "max_edges": "10001"}, 400, "max_edges=10001 is more than a page draws"),
    ("tms", {**TOY, "edges": "600"}, 400, "edges=600 is more than max_edges=500"),
    ("tms", {**TOY, "min_abs": "-1"}, 400, "min_abs='-1' is not a finite number >= 0"),
    ("tms", {**TOY, "pinned": "linear3:1"}, 400, "pinned='linear3:1': no module 'linear3'"),
    ("tms", {**TOY, "pinned": "linear1:20"}, 400, "'linear1' has components 0..19"),
    ("tms", {"input": "1,0,0"}, 400, "shape"),
    ("tms", {"input": "1,0,inf,0,0"}, 400, "input: 'inf' is not a finite number"),
    ("tms", {"tokens": "1,2"}, 400, "tokens= does not fit 'tms', a toy: give input="),
    ("nope", TOY, 404, "nope"),
]


@pytest.mark.parametrize(("name", "query", "status", "says"), REFUSALS)
def test_bad_queries_are_refused_with_the_reason(graph_explorer, name, query, status, says):
    answer = page(graph_explorer, name, **query)
    assert answer.status == status, answer.text
    message = re.search(r'<p class="error-message">(.*?)</p>', answer.text, re.S)
    assert message and says in html.unescape(message.group(1)), answer.text


def test_a_page_url_names_each_parameter_it_keeps(graph_explorer):
    pinned = "linear1:3,linear2:4"
    answer = page(graph_explorer, "tms", **TOY, pinned=pinned, edges="7", min_abs="0.01")
    assert answer.status == 200
    assert f'data-pinned="{pinned}"' in answer.text and 'data-shown="7"' in answer.text
    assert 'id="min-abs" min="0" step="any" value="0.01"' in answer.text
    assert f'name="pinned" value="{pinned}">' in answer.text
