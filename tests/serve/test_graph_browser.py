"""The attribution graph page in a real headless Chromium: it draws as many nodes and edges as
the JSON API returns for its URL, the pruning control changes the count without asking again
and keeps it in the URL, hovering highlights a node's edges, clicking opens its component,
shift-click pins it and a copied URL reopens the pins, a graph of over 50,000 candidate edges
arrives pruned, and markup typed as the prompt stays text."""

from __future__ import annotations

import json
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest

from tests.serve.browser import chromium
from tests.serve.conftest import TOKEN
from tests.serve.http_calls import http

pytestmark = pytest.mark.ray
TIMEOUT_MS = 180_000  # the language model's first graph loads the model
TOY = {"input": "1,0,0,0.5,0", "output": "logit:2", "threshold": "0"}


@pytest.fixture(scope="module")
def browser():
    with chromium() as b:
        yield b


class GraphTab:
    """A page that sends the token with every request and records console errors, uncaught
    exceptions, dialogs and every ComputeAttributions call."""

    def __init__(self, browser, base: str) -> None:
        self.base = base
        self.context = browser.new_context(extra_http_headers={"Authorization": f"Bearer {TOKEN}"})
        self.page = self.context.new_page()
        self.page.set_default_timeout(TIMEOUT_MS)
        self.errors: list[str] = []
        self.dialogs: list[str] = []
        self.graph_calls = 0
        self.page.on("console", lambda m: m.type == "error" and self.errors.append(m.text))
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.on("dialog", self._dialog)
        self.page.on("request", self._request)

    def _dialog(self, dialog) -> None:
        self.dialogs.append(dialog.message)
        dialog.dismiss()

    def _request(self, request) -> None:
        if request.url.endswith("/api/v1/ComputeAttributions"):
            self.graph_calls += 1

    def open(self, name: str, **query: str) -> None:
        self.page.goto(f"{self.base}/d/{name}/graph?{urlencode(query)}")
        self.page.wait_for_selector("#graph[data-state=done]")

    def counts(self) -> tuple[int, int]:
        """(nodes, edges) the page shows."""
        counts = self.page.locator("#graph-counts")
        return int(counts.get_attribute("data-nodes")), int(counts.get_attribute("data-edges"))

    def query(self) -> dict[str, list[str]]:
        return parse_qs(urlsplit(self.page.url).query)


@pytest.fixture
def tab(browser, graph_explorer):
    t = GraphTab(browser, graph_explorer)
    yield t
    t.context.close()
    assert not t.errors, f"console errors: {t.errors}"
    assert not t.dialogs, f"a string ran as script: {t.dialogs}"


def api_graph(base: str, page) -> tuple[int, int, int]:
    """(nodes, edges, candidate edges) the JSON API answers to the page's own request."""
    request = page.locator("#graph").get_attribute("data-request")
    answer = http(f"{base}/api/v1/ComputeAttributions", "POST", request, token=TOKEN)
    header = json.loads(answer.text.splitlines()[0])["header"]
    return len(header["nodes"]), int(header["edges"]), int(header["candidateEdges"])


def test_the_page_draws_what_the_api_returns_and_prunes_without_recomputing(tab, graph_explorer):
    tab.open("tms", **TOY)
    page = tab.page
    nodes, edges, _ = api_graph(graph_explorer, page)
    assert page.locator("svg.graph circle.node").count() == nodes
    assert page.locator("svg.graph line.edge").count() == edges > 10
    assert tab.counts() == (nodes, edges)
    page.locator("#edges-kept").fill("5")  # a range input: fill sets its value and fires input
    assert tab.counts() == (nodes, 5)
    assert page.locator("svg.graph line.edge:not(.off)").count() == 5
    assert tab.query()["edges"] == ["5"]
    page.locator("#edges-kept").fill(str(edges))
    page.locator("#min-abs").fill("1e9")
    assert tab.counts() == (nodes, 0) and tab.query()["min_abs"] == ["1000000000"]
    assert "edges" not in tab.query()
    assert tab.graph_calls == 1


def test_hover_highlights_a_nodes_edges_and_click_opens_its_component(tab):
    tab.open("tms", **TOY)
    page = tab.page
    strongest = page.locator("svg.graph line.edge title").last.text_content()
    key = strongest.split(" → ")[0]  # the source of the strongest edge (drawn last)
    node = page.locator(f"svg.graph circle.node[data-key='{key}']")
    node.hover()
    highlighted = page.locator("svg.graph line.edge.hl")
    touching = [
        t for t in page.locator("svg.graph line.edge title").all_text_contents() if key in t
    ]
    assert page.locator("svg.graph.focus").count() == 1
    assert highlighted.count() == len(touching) > 0
    assert key in page.inner_text("#graph-info")
    module, component = key.rsplit(":", 1)
    node.click()
    page.wait_for_url(f"**/d/tms/c/{module}/{component}")


def test_shift_click_pins_and_a_copied_url_reopens_the_pins(tab, browser, graph_explorer):
    tab.open("tms", **TOY)
    page = tab.page
    nodes = page.locator("svg.graph a circle.node")
    keys = [nodes.nth(i).get_attribute("data-key") for i in (0, 2)]
    for i in (0, 2):
        nodes.nth(i).click(modifiers=["Shift"])
    assert "/graph?" in page.url  # shift-click pins, it does not follow the link
    assert tab.query()["pinned"] == [",".join(keys)]
    assert page.locator("#pinned-list a.pinned-component").all_text_contents() == keys
    copied = page.url
    again = GraphTab(browser, graph_explorer)
    try:
        again.page.goto(copied)
        again.page.wait_for_selector("#graph[data-state=done]")
        pinned = again.page.locator("svg.graph circle.node.pinned")
        assert [pinned.nth(i).get_attribute("data-key") for i in range(pinned.count())] == keys
        assert again.page.locator("svg.graph.has-pins").count() == 1
        shown = again.page.locator("#pinned-list a.pinned-component").all_text_contents()
        assert shown == keys
        assert not again.errors
    finally:
        again.context.close()


def test_fifty_thousand_candidate_edges_arrive_pruned_and_the_control_still_filters(
    tab, graph_explorer
):
    tab.open("wide", input="1,0,0,0.5,0", output="logit:2", threshold="-1")
    page = tab.page
    nodes, edges, candidates = api_graph(graph_explorer, page)
    assert candidates >= 50_000 and edges == 500
    assert page.locator("svg.graph line.edge").count() == 500
    assert tab.counts() == (nodes, 500) and nodes == 801
    page.locator("#edges-kept").fill("100")
    assert tab.counts() == (nodes, 100)
    assert tab.graph_calls == 1


def test_markup_as_the_prompt_renders_as_text_and_runs_nothing(tab, graph_explorer):
    markup = "<img src=x onerror=alert(1)>"
    tab.open("smol", text=markup)
    page = tab.page
    assert page.locator("#graph-text").input_value() == markup
    labels = "".join(page.locator("svg.graph text.position").all_text_contents())
    assert "<img" in labels and "onerror" in labels
    assert page.locator("img").count() == 0
    nodes, edges, _ = api_graph(graph_explorer, page)
    assert tab.counts() == (nodes, edges)
    assert page.locator("svg.graph circle.node.output").count() == 1
