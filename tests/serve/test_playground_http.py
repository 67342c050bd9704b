"""The prompt playground over real HTTP against a real Serve application: the page for a language
model (smol), a toy with an input vector (tms), an unharvested toy (bare) and a toy over token ids
(a tiny induction target); its tokens, L0, listed components, answers and divergences equal what
the JSON API answers for the same requests; every refusal is a 400 or 404 that says what was
wrong; markup in a prompt is text."""

from __future__ import annotations

import base64
import html as html_lib
import json
import re
import struct
from urllib.parse import urlencode

import numpy as np
import pytest

from services.explorer.views.playground_inputs import repeated_span
from tests.serve.conftest import TOKEN, run_http_app
from tests.serve.http_calls import http

pytestmark = pytest.mark.ray
TEXT_MODULE = "model.layers.3.mlp.down_proj"
TEXT = "The cat sat on the mat"
MARKUP = "<img src=x onerror=alert(1)>"


def _page(base: str, name: str, **query) -> str:
    pairs = [(k, v) for k, vs in query.items() for v in (vs if isinstance(vs, list) else [vs])]
    answer = http(f"{base}/d/{name}/prompt?{urlencode(pairs)}", token=TOKEN)
    assert answer.status == 200, answer.text
    return answer.text


def _api(base: str, method: str, body: dict) -> dict:
    answer = http(f"{base}/api/v1/{method}", "POST", body, token=TOKEN)
    assert answer.status == 200, answer.text
    return answer.json()


def _floats(tensor: dict) -> np.ndarray:
    raw = base64.b64decode(tensor.get("data", ""))
    shape = [int(s) for s in tensor["shape"]]
    return np.asarray(struct.unpack(f"<{len(raw) // 4}f", raw), dtype=np.float32).reshape(shape)


def _attr(html: str, cls: str, attr: str) -> list[str]:
    """`attr` of every element whose class list includes `cls`, in page order."""
    return [
        html_lib.unescape(value)
        for classes, value in re.findall(rf'class="([^"]*)"[^>]*?{attr}="([^"]*)"', html)
        if cls in classes.split()
    ]


def _tensor(array: np.ndarray, dtype: str) -> dict:
    return {
        "shape": [str(s) for s in array.shape],
        "dtype": dtype,
        "data": base64.b64encode(array.tobytes()).decode(),
    }


def test_the_text_page_shades_each_token_by_its_l0_from_compute_importances(explorer):
    html = _page(explorer, "smol", text=TEXT)
    ci = _api(
        explorer,
        "ComputeImportances",
        {"decomposition": "smol", "text": TEXT, "selection": {"dense": {}}},
    )
    decomposition = _api(explorer, "GetDecomposition", {"name": "smol"})
    threshold = json.loads(decomposition["configJson"])["ci_alive_threshold"]
    values = _floats(ci["importances"][0]["values"])
    strip = re.search(r'<section id="tokens">.*?</section>', html, re.S).group(0)
    shown = re.findall(r'data-l0="(\d+)">([^<]*)</a>', strip)
    assert [html_lib.unescape(t) for _, t in shown] == ci["tokens"]["strings"]
    assert [int(n) for n, _ in shown] == (values > threshold).sum(-1).tolist()
    last = values[-1]
    want = [i for i in np.argsort(-last, kind="stable") if last[i] > 0]
    got = [int(v.split(":")[1]) for v in re.findall(r'name="c" value="([^"]+)"', html)]
    assert got == want
    shown_ci = [float(v) for v in re.findall(r'title="CI [\d.]+" data-ci="([^"]+)"', html)]
    np.testing.assert_allclose(shown_ci, last[want], rtol=1e-6)
    for i in want:
        assert f'href="/explorer/d/smol/c/{TEXT_MODULE}/{i}"' in html
    assert "top input tokens" in html and 'id="no-harvest"' not in html


@pytest.mark.parametrize(
    ("mode", "extra"),
    [
        ("ablate", {"c": f"{TEXT_MODULE}:0,2"}),
        ("keep", {"c": f"{TEXT_MODULE}:1,3", "delta": "1"}),
        ("ci", {}),
        ("rounded_ci", {"threshold": "0.2"}),
        ("stochastic", {"seed": "3", "samples": "2"}),
    ],
)
def test_the_text_answer_equals_the_json_apis_ablate(explorer, mode, extra):
    html = _page(explorer, "smol", text=TEXT, pos="2", mode=mode, k="5", **extra)
    body: dict = {
        "decomposition": "smol",
        "text": TEXT,
        "mode": f"MASK_MODE_{mode.upper()}",
        "topKTokens": 5,
        "useDelta": extra.get("delta") == "1",
    }
    if "c" in extra:
        module, indices = extra["c"].split(":")
        body["components"] = {module: {"indices": indices.split(",")}}
    if mode == "rounded_ci":
        body["roundingThreshold"] = 0.2
    if mode == "stochastic":
        body |= {"seed": 3, "nSamples": 2}
    want = _api(explorer, "Ablate", body)
    for sample, tokens in enumerate(want["nextTokens"]):
        ids = [
            int(i)
            for i, s in zip(
                _attr(html, "masked-token", "data-id"),
                _attr(html, "masked-token", "data-sample"),
                strict=True,
            )
            if int(s) == sample
        ]
        assert ids == [int(i) for i in tokens["ids"]]
    probs = [float(p) for p in _attr(html, "masked-token", "data-prob")]
    want_probs = [p for t in want["nextTokens"] for p in t["probs"]]
    assert sorted(probs) == pytest.approx(sorted(want_probs), rel=1e-6)
    target = [int(i) for i in _attr(html, "target-token", "data-id")]
    assert target == [int(i) for i in want["targetNextTokens"]["ids"]]
    mean = [float(v) for v in _attr(html, "divergence", "data-value")]
    np.testing.assert_allclose(mean, _floats(want["divergence"])[:, 0], rtol=1e-6)
    by_position = [float(v) for v in re.findall(r'data-divergence="([^"]+)"', html)]
    assert len(by_position) == len(want["tokens"]["strings"])
    np.testing.assert_allclose(np.mean(by_position), np.mean(mean), rtol=1e-4, atol=1e-7)


def test_a_press_shows_the_answer_before_it_and_how_the_tokens_moved(explorer):
    chosen = f"{TEXT_MODULE}:0,1"
    html = _page(explorer, "smol", text=TEXT, c=chosen, mode="ablate", was_mode="ci")
    before = _api(
        explorer,
        "Ablate",
        {"decomposition": "smol", "text": TEXT, "mode": "MASK_MODE_CI"},
    )
    shown = float(_attr(html, "divergence-before", "data-value")[0])
    assert shown == pytest.approx(float(_floats(before["divergence"])[0, 0]), rel=1e-6)
    table = re.search(r'<table class="data" id="change-table">.*?</table>', html, re.S).group(0)
    rows = re.findall(r"<tr><td><span class=\"tok\">([^<]*)</span></td><td>([^<]*)</td>", table)
    before_tokens = dict(
        zip(before["nextTokens"][0]["strings"], before["nextTokens"][0]["probs"], strict=True)
    )
    assert rows
    for token, was in rows:
        token = html_lib.unescape(token).replace("⏎", "\n")
        if was != "not in top":
            assert float(was) == pytest.approx(before_tokens[token], abs=1e-4)
    assert 'name="was_mode" value="ablate"' in html  # the next press compares with this answer
    assert f'name="was_c" value="{chosen}"' in html


def test_the_take_it_away_line_names_the_store_and_the_selection(explorer, harvested_text_store):
    html = _page(explorer, "smol", text=TEXT, c=[f"{TEXT_MODULE}:2", f"{TEXT_MODULE}:0"])
    command = html_lib.unescape(re.search(r'<code id="export-command">([^<]*)</code>', html)[1])
    assert command == (
        f"spd export {harvested_text_store[0]} --ablate {TEXT_MODULE}:0,2 --out smol-edited"
    )
    assert "checked" in html and html.count(" checked>") == 2


def test_the_toy_page_edits_the_input_vector_and_shows_ablates_outputs(explorer):
    html = _page(explorer, "tms", x="1,0,0.5,0,0", c="linear1:0,3", mode="ablate")
    x = np.asarray([[1, 0, 0.5, 0, 0]], dtype="<f4")
    want = _api(
        explorer,
        "Ablate",
        {
            "decomposition": "tms",
            "inputs": _tensor(x, "DTYPE_FLOAT32"),
            "mode": "MASK_MODE_ABLATE",
            "components": {"linear1": {"indices": ["0", "3"]}},
        },
    )
    masked = [
        float(v)
        for v in re.findall(r'class="masked-output" data-sample="0" data-value="([^"]+)"', html)
    ]
    target = [float(v) for v in re.findall(r'class="target-output" data-value="([^"]+)"', html)]
    np.testing.assert_allclose(masked, _floats(want["outputs"])[0, 0], rtol=1e-6)
    np.testing.assert_allclose(target, _floats(want["targetOutput"])[0], rtol=1e-6)
    assert "Components important on this input" in html and 'id="tokens"' not in html
    presets = re.findall(r'class="preset keeps-selection" href="([^"]+)">e(\d)<', html)
    assert [int(i) for _, i in presets] == list(range(5))
    assert "x=0%2C0%2C1%2C0%2C0" in presets[2][0] and "c=linear1%3A0%2C3" in presets[2][0]


def test_an_unharvested_toy_still_lists_its_components_and_says_why_no_tokens(explorer):
    html = _page(explorer, "bare", x="0,1,0,0,0")
    assert 'id="no-harvest"' in html and "spd harvest" in html
    assert re.findall(r'name="c" value="linear1:\d+"', html)


def test_markup_in_a_prompt_is_text(explorer):
    html = _page(explorer, "smol", text=MARKUP)
    body = html.split("</head>", 1)[1]
    assert "<img" not in body and "&lt;img src=x onerror=alert(1)&gt;" in body


def test_the_empty_form_and_the_links_to_it(explorer):
    html = _page(explorer, "smol")
    assert 'id="prompt-text"' in html and 'id="tokens"' not in html
    assert 'id="playground-link"' in http(f"{explorer}/d/smol", token=TOKEN).text
    component = http(f"{explorer}/d/smol/c/{TEXT_MODULE}/2?probe=Hi", token=TOKEN).text
    link = html_lib.unescape(re.search(r'href="([^"]+)" id="playground-link"', component)[1])
    assert link == f"/explorer/d/smol/prompt?text=Hi&c={TEXT_MODULE}%3A2"


@pytest.mark.parametrize(
    ("query", "status", "says"),
    [
        ("/d/smol/prompt?text=", 400, "text is empty"),
        ("/d/smol/prompt?text=%20%20", 400, "text is empty"),
        ("/d/smol/prompt?text=" + "x" * 2001, 400, "2001 characters"),
        ("/d/smol/prompt?text=Hi&c=nope:1", 400, "no module 'nope'"),
        (f"/d/smol/prompt?text=Hi&c={TEXT_MODULE}:4", 400, "has 4 components"),
        (f"/d/smol/prompt?text=Hi&c={TEXT_MODULE}", 400, "MODULE:INDEX"),
        (f"/d/smol/prompt?text=Hi&c={TEXT_MODULE}:a", 400, "whole numbers"),
        ("/d/smol/prompt?text=Hi&mode=zap", 400, "mode='zap' is not one of"),
        ("/d/smol/prompt?text=Hi&pos=40", 400, "pos=40 is past the last position"),
        ("/d/smol/prompt?text=Hi&k=0", 400, "k=0 is out of range"),
        ("/d/smol/prompt?text=Hi&samples=99", 400, "samples=99 is out of range"),
        ("/d/smol/prompt?text=Hi&threshold=2", 400, "threshold=2 is out of range"),
        ("/d/smol/prompt?text=Hi&x=1", 400, "give one of text, x or ids"),
        ("/d/nope/prompt?text=Hi", 404, "no decomposition"),
        ("/d/tms/prompt?text=Hi", 400, "takes no text"),
        ("/d/tms/prompt?x=1,2", 400, "x has 2 values"),
        ("/d/tms/prompt?x=1,b,0,0,0", 400, "'b' is not a number"),
        ("/d/tms/prompt?ids=1,2,3,4,5", 400, "takes an input vector"),
    ],
)
def test_each_refusal_is_a_page_that_says_what_was_wrong(explorer, query, status, says):
    answer = http(explorer + query, token=TOKEN)
    assert answer.status == status, answer.text
    assert says in html_lib.unescape(re.sub(r"<[^>]+>", " ", answer.text))
    assert "Traceback" not in answer.text


INDUCTION_APP = "playground-induction"


@pytest.fixture(scope="module")
def induction(server, http_port, tmp_path_factory) -> str:
    """Base URL of an application serving a tiny induction decomposition (a toy over token ids:
    24 ids in [0, 16)), 3 steps, no harvest."""
    import torch
    from ray import serve

    from spd_core.config import config_from_dict
    from spd_core.targets.registry import load_toy_target, toy_target_spec
    from spd_core.task import make_task
    from spd_core.train.single_process import decompose
    from tests.test_induction_target import TINY, tiny_induction_config

    cache = tmp_path_factory.mktemp("induction-cache")
    load_toy_target(toy_target_spec("induction-2l", **TINY), cache)
    config = config_from_dict(tiny_induction_config())
    path = tmp_path_factory.mktemp("induction") / "ih.zarr"
    decompose(config, make_task(config, torch.device("cpu"), cache_dir=cache), out=path)
    args = {"stores": [f"ih={path}"], "token": TOKEN, "replica_cpus": 0.5}
    yield run_http_app(args, INDUCTION_APP, http_port)
    serve.delete(INDUCTION_APP)


def test_a_toy_over_token_ids_takes_ids_and_answers_next_tokens(induction):
    empty = _page(induction, "ih")
    preset = re.search(r'class="preset keeps-selection" href="([^"]+)">repeated span<', empty)
    ids = repeated_span(24, 16)
    assert html_lib.unescape(preset[1]).endswith(
        "ids=" + ",".join(map(str, ids)).replace(",", "%2C")
    )
    html = _page(
        induction, "ih", ids=",".join(map(str, ids)), c="layers.1.attn.v_proj:0,1", mode="ablate"
    )
    x = np.asarray([ids], dtype="<i8")
    want = _api(
        induction,
        "Ablate",
        {
            "decomposition": "ih",
            "inputs": _tensor(x, "DTYPE_INT64"),
            "mode": "MASK_MODE_ABLATE",
            "components": {"layers.1.attn.v_proj": {"indices": ["0", "1"]}},
        },
    )
    logits = _floats(want["outputs"])[0, 0, -1].astype(np.float64)
    probs = np.exp(logits - logits.max())
    probs /= probs.sum()
    top = np.argsort(-probs)[:10]
    assert [int(i) for i in _attr(html, "masked-token", "data-id")] == top.tolist()
    shown = [float(p) for p in _attr(html, "masked-token", "data-prob")]
    np.testing.assert_allclose(shown, probs[top], rtol=1e-5)
    strip = re.findall(r'data-pos="(\d+)" data-l0="\d+">(\d+)</a>', html)
    assert [int(t) for _, t in strip] == ids
    by_position = [float(v) for v in re.findall(r'data-divergence="([^"]+)"', html)]
    assert len(by_position) == 24
    assert np.mean(by_position) == pytest.approx(float(_floats(want["divergence"])[0, 0]), rel=1e-4)
    assert 'id="no-harvest"' in html
    bad = http(f"{induction}/d/ih/prompt?ids=1,2,3", token=TOKEN)
    assert bad.status == 400 and "ids has 3 values" in bad.text
    bad = http(f"{induction}/d/ih/prompt?ids=" + ",".join(["16"] * 24), token=TOKEN)
    assert bad.status == 400 and "16 is not a token id" in bad.text
