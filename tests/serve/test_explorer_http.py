"""The explorer and the JSON API over real HTTP on 127.0.0.1, against a real Serve application:
every RPC in proto3 JSON equal to its gRPC answer, each refusal's HTTP status, the token on every
route, the pages' content (checked against the harvest read in-process), escaping, security
headers, and no 500 for any bad input."""

from __future__ import annotations

import json
import re
from html import escape as html_escape

import grpc
import numpy as np
import pytest
from google.protobuf import json_format

from services.explorer.rpc import METHODS, request_type
from services.explorer.views.components import PAGE_SIZE
from spd_client.generated.spd.v1 import decomposition_service_pb2_grpc as pb_grpc
from spd_core.harvest import HarvestReader
from spd_core.store import FactorStore
from tests.serve.conftest import EXPLORER_APP, TOKEN
from tests.serve.http_calls import http

pytestmark = pytest.mark.ray
TEXT_MODULE = "model.layers.3.mlp.down_proj"
EYE = {"shape": ["5", "5"], "dtype": "DTYPE_FLOAT32", "data": ""}


def _eye_tensor() -> dict:
    import base64

    data = np.eye(5, dtype="<f4").tobytes()
    return {**EYE, "data": base64.b64encode(data).decode()}


REQUESTS = {
    "ListDecompositions": {},
    "GetDecomposition": {"name": "tms"},
    "ComputeImportances": {
        "decomposition": "tms",
        "inputs": _eye_tensor(),
        "selection": {"topK": {"k": 2}},
    },
    "StreamImportances": {
        "request": {"decomposition": "tms", "inputs": _eye_tensor(), "selection": {"dense": {}}},
        "chunkSize": 2,
    },
    "Ablate": {
        "decomposition": "tms",
        "inputs": _eye_tensor(),
        "mode": "MASK_MODE_ABLATE",
        "components": {"linear1": {"indices": ["0", "3"]}},
    },
    "GetComponents": {"decomposition": "tms", "module": "linear1", "components": ["1", "2"]},
    "GetComponentContexts": {
        "decomposition": "smol",
        "module": TEXT_MODULE,
        "component": 1,
        "k": 2,
    },
    "ListComponents": {"decomposition": "tms", "pageSize": 5},
    "GetComponentSummary": {"decomposition": "tms", "module": "linear1", "component": 3},
    "ComputeAttributions": {"decomposition": "smol", "text": "The cat sat", "maxEdges": "20"},
}


def api(base: str, method: str, body, token: str | None = TOKEN):
    return http(f"{base}/api/v1/{method}", "POST", body, token=token)


@pytest.fixture(scope="module")
def stub(server):
    with grpc.insecure_channel(server) as channel:
        yield pb_grpc.DecompositionServiceStub(channel)


GRPC_METADATA = [("authorization", f"Bearer {TOKEN}"), ("application", EXPLORER_APP)]


def test_every_rpc_has_a_request_here():
    assert set(REQUESTS) == set(METHODS)


@pytest.mark.parametrize("method", list(REQUESTS))
def test_every_rpc_answers_in_proto3_json_what_grpc_answers(explorer, stub, method):
    answer = api(explorer, method, REQUESTS[method])
    assert answer.status == 200, answer.text
    request = json_format.ParseDict(REQUESTS[method], request_type(method)())
    call = getattr(stub, method)
    if METHODS[method].server_streaming:
        assert answer.headers["Content-Type"].startswith("application/x-ndjson")
        lines = [line for line in answer.text.splitlines() if line]
        want = [json_format.MessageToDict(m) for m in call(request, metadata=GRPC_METADATA)]
        got = [json.loads(line) for line in lines]
        assert len(got) == len(want) >= 1
        assert got == want  # every message, attribution floats to the same bits
    else:
        want = json_format.MessageToDict(call(request, metadata=GRPC_METADATA))
        assert answer.json() == want


@pytest.mark.parametrize(
    ("method", "body", "status", "code"),
    [
        ("GetDecomposition", {"name": "nope"}, 404, "NOT_FOUND"),
        ("GetDecomposition", "{not json", 400, "INVALID_ARGUMENT"),
        ("GetDecomposition", {"nam": "tms"}, 400, "INVALID_ARGUMENT"),
        ("ListComponents", {"decomposition": "bare"}, 400, "FAILED_PRECONDITION"),
        ("ComputeImportances", {"decomposition": "tms"}, 400, "INVALID_ARGUMENT"),
        ("GetComponents", {"decomposition": "tms", "module": "nope"}, 404, "NOT_FOUND"),
        ("ListComponents", {"decomposition": "tms", "pageSize": 100000}, 429, "RESOURCE_EXHAUSTED"),
        ("NoSuchMethod", {}, 404, "NOT_FOUND"),
    ],
)
def test_refusals_map_to_http_statuses_with_a_json_body(explorer, method, body, status, code):
    answer = api(explorer, method, body)
    assert answer.status == status, answer.text
    assert answer.json()["code"] == code
    assert answer.json()["message"] and "Traceback" not in answer.text


def test_a_refused_stream_is_an_http_error_not_an_empty_stream(explorer):
    answer = api(explorer, "StreamImportances", {"request": {"decomposition": "nope"}})
    assert answer.status == 404 and answer.json()["code"] == "NOT_FOUND"


def test_the_api_without_the_token_is_401_unauthenticated(explorer):
    answer = api(explorer, "ListDecompositions", {}, token=None)
    assert answer.status == 401 and answer.json()["code"] == "UNAUTHENTICATED"
    assert api(explorer, "ListDecompositions", {}, token="wrong").status == 401


PAGES = [
    "/",
    "/d/tms",
    "/d/tms/components",
    "/d/tms/c/linear1/3",
    "/d/smol/c/" + TEXT_MODULE + "/1",
    "/static/explorer.css",
    "/static/explorer.js",
]


@pytest.mark.parametrize("path", PAGES)
def test_every_route_needs_the_token_and_answers_with_it(explorer, path):
    without = http(explorer + path)
    if path.startswith("/static/"):
        assert without.status == 401
    else:
        assert without.status == 303
        assert without.headers["Location"].startswith(f"/{EXPLORER_APP}/login?next=")
    assert http(explorer + path, token="wrong").status in (303, 401)
    with_token = http(explorer + path, token=TOKEN)
    assert with_token.status == 200, with_token.text
    assert "Content-Security-Policy" in with_token.headers
    assert "script-src 'self'" in with_token.headers["Content-Security-Policy"]
    assert "unsafe-inline" not in with_token.headers["Content-Security-Policy"]


def test_the_health_route_is_open(explorer):
    answer = http(explorer + "/healthz")
    assert answer.status == 200 and answer.json() == {"status": "SERVING"}


def test_login_sets_an_httponly_strict_cookie_that_then_opens_every_route(explorer):
    assert http(explorer + "/login").status == 200
    wrong = http(explorer + "/login", "POST", "token=nope&next=/d/tms")
    assert wrong.status == 401 and "not valid" in wrong.text
    right = http(explorer + "/login", "POST", f"token={TOKEN}&next=/d/tms")
    assert right.status == 303 and right.headers["Location"] == f"/{EXPLORER_APP}/d/tms"
    cookie = right.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie.replace("Strict", "strict")
    assert TOKEN not in cookie
    session = cookie.split(";", 1)[0]
    for path in PAGES:
        assert http(explorer + path, headers={"Cookie": session}).status == 200, path
    answer = http(
        explorer + "/api/v1/ListDecompositions", "POST", "{}", headers={"Cookie": session}
    )
    assert answer.status == 200
    forged = http(explorer + "/", headers={"Cookie": "spd_session=" + "0" * 64})
    assert forged.status == 303


def test_login_never_redirects_to_another_site(explorer):
    answer = http(explorer + "/login", "POST", f"token={TOKEN}&next=//evil.example/x")
    assert answer.status == 303 and answer.headers["Location"] == f"/{EXPLORER_APP}/"


def _text(html: str) -> str:
    return re.sub(r"<[^>]+>", " ", html)


def test_home_lists_each_decomposition_with_its_kind_modules_and_harvest(explorer):
    html = http(explorer + "/", token=TOKEN).text
    rows = {
        name: row
        for name, row in re.findall(r'<a href="[^"]*/d/(\w+)">\w+</a>(.*?)</tr>', html, re.S)
    }
    assert set(rows) == {"tms", "bare", "smol"}
    assert "toy" in rows["tms"] and "harvested" in rows["tms"]
    assert "none" in rows["bare"] and "spd harvest" in rows["bare"]
    assert "language model" in rows["smol"] and TEXT_MODULE in rows["smol"]
    assert "C=20" in rows["tms"] and "linear2" in rows["tms"]


def test_the_decomposition_page_shows_metrics_curves_and_modules(explorer, harvested_toy):
    html = http(explorer + "/d/tms", token=TOKEN).text
    store = FactorStore.open(harvested_toy)
    assert f"{store.metrics['l0/linear1']:.6g}" in html
    assert html.count("<svg") >= 2 and "loss terms" in html
    assert "linear1" in html and "StochasticReconLoss" in html
    bare = http(explorer + "/d/bare", token=TOKEN).text
    assert 'id="no-harvest"' in bare and "spd harvest" in bare


def _table(html: str) -> list[tuple[str, int]]:
    return [(m, int(c)) for m, c in re.findall(r"/c/([\w.]+)/(\d+)\">", html)]


def test_the_table_pages_through_every_component_in_order(explorer, harvested_toy):
    reader = HarvestReader.open(FactorStore.open(harvested_toy))
    rows = reader.table()
    modules = reader.modules
    for order, key in (("frequency", "firing_frequency"), ("mean_ci", "mean_ci_when_firing")):

        def value(r, key=key):
            v = getattr(r, key)
            return -1.0 if v != v else v

        want = [
            (r.module, r.component)
            for r in sorted(rows, key=lambda r: (-value(r), modules.index(r.module), r.component))
        ]
        got = _table(http(f"{explorer}/d/tms/components?order={order}", token=TOKEN).text)
        assert got == want[:PAGE_SIZE] == want  # 40 components: one page
    only = _table(http(f"{explorer}/d/tms/components?module=linear2", token=TOKEN).text)
    assert {m for m, _ in only} == {"linear2"} and len(only) == 20


def test_the_token_search_finds_the_components_whose_precise_tokens_include_it(
    explorer, harvested_text_store
):
    reader = HarvestReader.open(FactorStore.open(harvested_text_store[0]))
    summaries = [reader.summary(TEXT_MODULE, c) for c in range(4)]
    token = next(t.token for s in summaries for t in s.tokens_by_precision if t.token.strip())
    want = {
        c
        for c, s in enumerate(summaries)
        if any(
            t.token.strip().casefold() == token.strip().casefold() for t in s.tokens_by_precision
        )
    }
    from urllib.parse import quote

    html = http(f"{explorer}/d/smol/components?q={quote(token.strip())}", token=TOKEN).text
    assert {c for _, c in _table(html)} == want


@pytest.mark.parametrize(
    ("path", "status", "says"),
    [
        ("/d/tms/components?order=random", 400, "order"),
        ("/d/tms/components?page=0", 400, "page"),
        ("/d/tms/components?page=abc", 400, "page"),
        ("/d/tms/components?page=99", 400, "last page"),
        ("/d/tms/components?module=nope", 404, "no module"),
        ("/d/nope", 404, "no decomposition"),
        ("/d/nope/components", 404, "no decomposition"),
        ("/d/tms/c/nope/1", 404, "no module"),
        ("/d/tms/c/linear1/20", 404, "20 components"),
        ("/d/tms/c/linear1/-1", 400, "whole number"),
        ("/d/tms/c/linear1/1e3", 400, "whole number"),
        ("/d/tms/components?q=" + "x" * 3000, 400, "characters"),
        ("/static/..%2Fhttp_app.py", 404, "static"),
        ("/static/nope.js", 404, "static"),
        ("/no/such/page", 404, "Not Found"),
    ],
)
def test_bad_parameters_are_400_and_unknown_things_404_pages(explorer, path, status, says):
    answer = http(explorer + path, token=TOKEN)
    assert answer.status == status, answer.text
    assert says in _text(answer.text) and "Traceback" not in answer.text


def test_the_unharvested_table_says_to_run_spd_harvest(explorer):
    html = http(explorer + "/d/bare/components", token=TOKEN).text
    assert 'id="no-harvest"' in html and "spd harvest" in html


def test_the_toy_component_page_shows_its_factors_and_its_ci_on_one_hot_inputs(explorer, stub):
    html = http(explorer + "/d/tms/c/linear1/3", token=TOKEN).text
    assert "U (output direction)" in html and "V (input direction)" in html
    assert "CI on each one-hot input" in html and 'id="probe"' not in html
    request = json_format.ParseDict(
        {
            "decomposition": "tms",
            "inputs": _eye_tensor(),
            "modules": ["linear1"],
            "selection": {"dense": {}},
        },
        request_type("ComputeImportances")(),
    )
    from spd_client.tensor_codec import from_proto

    ci = from_proto(stub.ComputeImportances(request, metadata=GRPC_METADATA).importances[0].values)
    shown = [float(v) for v in re.findall(r"feature \d+: ([-\d.e+]+)</title>", html)]
    np.testing.assert_allclose(shown, ci[:, 3], rtol=1e-3, atol=1e-6)


def test_the_text_component_page_shades_every_token_of_its_examples(explorer, harvested_text_store):
    reader = HarvestReader.open(FactorStore.open(harvested_text_store[0]))
    summary = reader.summary(TEXT_MODULE, 1)
    html = http(f"{explorer}/d/smol/c/{TEXT_MODULE}/1", token=TOKEN).text
    examples = re.findall(r'<div class="context">(.*?)</div>', html, re.S)
    assert len(examples) == len(summary.top_examples) >= 1
    for example, want in zip(examples, summary.top_examples, strict=True):
        tokens = re.findall(r'class="tok ci-(\d+)( firing)?" title="CI ([\d.]+)">', example)
        assert len(tokens) == 8  # the whole window, not only the firing token
        firing = [float(ci) for _, f, ci in tokens if f]
        assert firing == pytest.approx([want.importance], abs=2e-4)
    assert 'id="probe-form"' in html and "Input tokens by precision" in html
    for t in summary.tokens_by_precision:
        assert f'<span class="tok">{html_escape(t.token)}</span>' in html


def test_strings_from_a_corpus_are_escaped():
    from services.explorer.harvest_index import Row
    from services.explorer.http_app import TEMPLATES as env
    from spd_core.interp import Interpretation

    row = Row(
        "m", 0, 1, 0.5, 0.9, (("<script>", 1.0),), Interpretation('fires on "<i>"', "", "<b>")
    )
    html = env.get_template("components.html").render(
        root="",
        d={"name": "x"},
        modules=["m"],
        rows=[row],
        has_tokens=True,
        first_rank=1,
        total=1,
        page=1,
        pages=1,
        order="frequency",
        order_urls={"frequency": "", "mean_ci": ""},
        q="<b>q</b>",
        no_harvest=None,
        rank_plots=[],
    )
    assert "<script>" not in html.split("</head>")[1] and "&lt;script&gt;" in html
    assert "<b>q</b>" not in html and "<b>" not in html and "&lt;b&gt;" in html
