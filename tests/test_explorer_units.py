"""The explorer's pure logic, without a server: status mapping, page parameters, the session
cookie check, the SVG plots' values and escaping, and the harvest index against the reader."""

from __future__ import annotations

import math
import re

import grpc
import pytest
from starlette.requests import Request

from services.explorer.http_auth import COOKIE, authorized, session_value
from services.explorer.json_api import HTTP_STATUS, parse_request
from services.explorer.page_errors import PageError
from services.explorer.rpc import METHODS, RpcRefused
from services.explorer.svg_plots import bar_chart, line_chart
from services.explorer.views import params
from services.explorer.views.component import shade


def test_every_grpc_status_has_an_http_status():
    assert set(HTTP_STATUS) == set(grpc.StatusCode)
    assert HTTP_STATUS[grpc.StatusCode.INVALID_ARGUMENT] == 400
    assert HTTP_STATUS[grpc.StatusCode.FAILED_PRECONDITION] == 400
    assert HTTP_STATUS[grpc.StatusCode.UNAUTHENTICATED] == 401
    assert HTTP_STATUS[grpc.StatusCode.NOT_FOUND] == 404
    assert HTTP_STATUS[grpc.StatusCode.RESOURCE_EXHAUSTED] == 429
    assert HTTP_STATUS[grpc.StatusCode.UNIMPLEMENTED] == 501


def test_json_bodies_parse_into_the_rpcs_message_or_say_what_is_wrong():
    message = parse_request("GetComponentSummary", b'{"decomposition": "d", "component": 3}')
    assert message.decomposition == "d" and message.component == 3
    assert parse_request("ListDecompositions", b"  ").ByteSize() == 0
    with pytest.raises(RpcRefused) as info:
        parse_request("GetComponentSummary", b'{"component": "three"}')
    assert info.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert "spd.v1.GetComponentSummaryRequest" in info.value.message
    assert set(METHODS) >= {"Ablate", "ComputeAttributions", "ListComponents"}


def test_page_parameters_are_checked_with_messages_that_say_what_was_wrong():
    assert params.choice({}, "order", ("a", "b"), "a") == "a"
    assert params.positive_int({"page": "3"}, "page", 1) == 3
    assert params.component_index("7", 8, "m") == 7
    for call, status, says in [
        (lambda: params.choice({"order": "c"}, "order", ("a", "b"), "a"), 400, "not one of a, b"),
        (lambda: params.positive_int({"page": "0"}, "page", 1), 400, "whole number >= 1"),
        (lambda: params.positive_int({"page": "-2"}, "page", 1), 400, "whole number"),
        (lambda: params.component_index("8", 8, "m"), 404, "0..7"),
        (lambda: params.component_index("x", 8, "m"), 400, "whole number"),
        (lambda: params.module("z", ["m"], "d"), 404, "its modules: m"),
        (lambda: params.text({"q": "x" * 2001}, "q"), 400, "at most 2000"),
    ]:
        with pytest.raises(PageError) as info:
            call()
        assert info.value.status == status and says in info.value.message


def _request(headers: dict[str, str]) -> Request:
    raw = [(k.lower().encode(), v.encode()) for k, v in headers.items()]
    return Request({"type": "http", "method": "GET", "path": "/", "headers": raw})


def test_a_request_is_authorized_by_the_bearer_token_or_the_session_cookie():
    token = "s3cret"
    assert authorized(_request({}), None)
    assert not authorized(_request({}), token)
    assert authorized(_request({"Authorization": f"Bearer {token}"}), token)
    assert not authorized(_request({"Authorization": "Bearer other"}), token)
    assert authorized(_request({"Cookie": f"{COOKIE}={session_value(token)}"}), token)
    assert not authorized(_request({"Cookie": f"{COOKIE}={token}"}), token)
    assert token not in session_value(token) and session_value(token) != session_value("x")


def test_plots_carry_each_exact_value_and_escape_every_label():
    svg = bar_chart([0.5, -0.25, 2.0], "t<itle>", ["<a>", "b", "c"])
    assert re.findall(r"<title>[^:]+: ([-\d.]+)</title>", svg) == ["0.5", "-0.25", "2"]
    assert "<a>" not in svg and "&lt;a&gt;" in svg and "t&lt;itle&gt;" in svg
    assert svg.count('class="bar neg"') == 1
    line = line_chart({"loss": ([1, 2, 3], [1.0, 0.1, math.nan])}, "curve", log_y=True)
    assert re.findall(r"<title>loss: ([\d.,\s]+)</title>", line) == ["1, 1", "2, 0.1"]


def test_bars_scale_to_the_plot_area_by_hand():
    # one bar of 1 and one of 0.5 over [0, 1]: the second is half the first's height
    svg = bar_chart([1.0, 0.5], "t")
    heights = [float(h) for h in re.findall(r'height="([\d.]+)" class="bar"', svg)]
    assert heights[1] == pytest.approx(heights[0] / 2, abs=0.11)


def test_ci_shades_are_tenths_clamped_to_zero_and_one():
    assert [shade(v) for v in (-1.0, 0.0, 0.04, 0.05001, 0.5, 0.96, 1.0, 3.0)] == [
        0,
        0,
        0,
        1,
        5,
        10,
        10,
        10,
    ]


def test_the_harvest_index_sorts_and_filters_as_the_reader_table_does(harvest_toy_store, tmp_path):
    import shutil

    from services.explorer.harvest_index import HarvestIndex
    from services.serving.harvest_cache import ServedHarvest
    from spd_core.harvest import (
        HarvestReader,
        HarvestSettings,
        harvest,
        harvest_inputs,
        write_harvest,
    )
    from spd_core.loading import load_decomposition
    from spd_core.store import FactorStore

    path = tmp_path / "tms.zarr"
    shutil.copytree(harvest_toy_store, path)
    store = FactorStore.open(path)
    dec = load_decomposition(store)
    s = HarvestSettings(threshold=dec.config.ci_alive_threshold, shard_size=64, top_k=4)
    write_harvest(path, harvest(dec, harvest_inputs(store, dec, s, inputs=128), s))
    reader = HarvestReader.open(FactorStore.open(path))
    index = HarvestIndex(ServedHarvest(reader.load()))
    rows = reader.table()
    order = reader.modules

    def key(r, by):
        v = getattr(r, by)
        return (-(-1.0 if math.isnan(v) else v), order.index(r.module), r.component)

    for name, by in (("frequency", "firing_frequency"), ("mean_ci", "mean_ci_when_firing")):
        want = [(r.module, r.component) for r in sorted(rows, key=lambda r, by=by: key(r, by))]
        assert [(r.module, r.component) for r in index.select(name, None, None)] == want
        only = [(r.module, r.component) for r in index.select(name, "linear2", None)]
        assert only == [w for w in want if w[0] == "linear2"]
    assert not index.has_tokens and index.select("frequency", None, "x") == []
    freqs = index.rank_frequencies("linear1")
    assert list(freqs) == sorted(
        (r.firing_frequency for r in rows if r.module == "linear1"), reverse=True
    )


def test_a_playground_url_round_trips_through_its_query_and_drops_defaults():
    from urllib.parse import parse_qsl, urlsplit

    from services.explorer.views.playground_query import parse_query, prompt_url

    pairs = [
        ("text", "a <b> & c"),
        ("pos", "2"),
        ("c", "m.b:3"),
        ("c", "m.a:1,0"),
        ("c", "m.a:1"),
        ("mode", "ablate"),
        ("delta", "1"),
        ("k", "10"),
        ("was_mode", "ci"),
    ]
    q = parse_query(pairs)
    assert q.selected == {"m.b": (3,), "m.a": (0, 1)} and q.delta and q.k == 10
    url = prompt_url("d", q)
    back = parse_qsl(urlsplit(url).query)
    assert ("k", "10") not in back  # a default is left out
    assert back == [
        ("text", "a <b> & c"),
        ("pos", "2"),
        ("c", "m.b:3"),
        ("c", "m.a:0,1"),
        ("mode", "ablate"),
        ("delta", "1"),
        ("was_mode", "ci"),
    ]
    assert parse_query(back) == q
    assert prompt_url("d", parse_query([])) == "/d/d/prompt"


@pytest.mark.parametrize(
    ("pairs", "says"),
    [
        ([("text", " ")], "text is empty"),
        ([("c", "m")], "MODULE:INDEX"),
        ([("c", "m:-1")], "whole numbers"),
        ([("mode", "ci"), ("mode", "keep")], "given 2 times"),
        ([("x", "1,nan")], "not finite"),
        ([("ids", "1,2.5")], "'2.5' is not a whole number"),
        ([("delta", "yes")], "delta='yes'"),
        ([("seed", "-1")], "seed=-1 is out of range"),
    ],
)
def test_bad_playground_parameters_say_what_was_wrong(pairs, says):
    from services.explorer.views.playground_query import parse_query

    with pytest.raises(PageError) as info:
        parse_query(pairs)
    assert info.value.status == 400 and says in info.value.message


def test_the_repeated_span_preset_ends_inside_its_second_copy():
    from services.explorer.views.playground_inputs import repeated_span

    for seq_len, vocab in ((64, 64), (24, 16), (10, 5)):
        ids = repeated_span(seq_len, vocab)
        assert len(ids) == seq_len and all(0 <= i < vocab for i in ids)
        k = max(2, min(seq_len // 3, vocab // 2))
        span = ids[2 : 2 + k]
        assert len(set(span)) == k
        assert ids[seq_len - k + 1 :] == span[:-1]  # the next token should be span[-1]
        assert not set(span) & set(ids[:2] + ids[2 + k : seq_len - k + 1])


def test_the_export_command_quotes_what_a_shell_would_split():
    from services.explorer.views.playground import export_command

    command = export_command("/runs/my store.zarr", "d", {"h.0.mlp": (1, 4), "h.1.mlp": (0,)})
    assert command == (
        "spd export '/runs/my store.zarr' --ablate h.0.mlp:1,4 --ablate h.1.mlp:0 --out d-edited"
    )


def test_changes_pair_each_token_before_and_after_a_press():
    from services.explorer.views.playground_answer import Answer, Prob, changes

    def answer(*probs):
        return Answer("", [[Prob(i, t, p) for i, t, p in probs]], [], [], [], [0.0], "kl")

    before = answer((1, "a", 0.5), (2, "b", 0.3))
    after = answer((2, "b", 0.6), (3, "c", 0.2))
    rows = [(c.text, c.before, c.after, c.difference) for c in changes(before, after, [])]
    assert rows == [
        ("b", 0.3, 0.6, pytest.approx(0.3)),
        ("c", None, 0.2, None),
        ("a", 0.5, None, None),
    ]
