"""The explorer end to end in a real headless Chromium: sign in, follow links from the home page
to the component table, a component and a co-active component, use the probe box (its CI equals
the JSON API's), reopen a copied URL, and never a console error or a script run from a string."""

from __future__ import annotations

import base64
import struct
from urllib.parse import quote

import pytest

from tests.serve.browser import chromium
from tests.serve.conftest import TOKEN
from tests.serve.http_calls import http

pytestmark = pytest.mark.ray
TEXT_MODULE = "model.layers.3.mlp.down_proj"
MARKUP = "<img src=x onerror=alert(1)>"
TIMEOUT_MS = 180_000  # a language model's first page loads the model and its harvest windows


@pytest.fixture(scope="module")
def browser():
    with chromium() as b:
        yield b


class Tab:
    """A signed-in page that records console errors, uncaught exceptions and dialogs."""

    def __init__(self, browser, base: str) -> None:
        self.base = base
        self.context = browser.new_context()
        self.page = self.context.new_page()
        self.page.set_default_timeout(TIMEOUT_MS)
        self.errors: list[str] = []
        self.dialogs: list[str] = []
        self.page.on("console", lambda m: m.type == "error" and self.errors.append(m.text))
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.on("dialog", self._dialog)

    def _dialog(self, dialog) -> None:
        self.dialogs.append(dialog.message)
        dialog.dismiss()

    def sign_in(self) -> None:
        self.page.goto(self.base + "/")
        assert "/login" in self.page.url
        self.page.fill("input[name=token]", TOKEN)
        self.page.click("button[type=submit]")
        self.page.wait_for_url(self.base + "/")

    def close(self) -> None:
        self.context.close()


@pytest.fixture
def tab(browser, explorer):
    t = Tab(browser, explorer)
    t.sign_in()
    yield t
    t.close()
    assert not t.errors, f"console errors: {t.errors}"
    assert not t.dialogs, f"a string ran as script: {t.dialogs}"


def _api_ci(base: str, text: str, component: int) -> tuple[list[str], list[float]]:
    body = {
        "decomposition": "smol",
        "text": text,
        "modules": [TEXT_MODULE],
        "selection": {"dense": {}},
    }
    answer = http(f"{base}/api/v1/ComputeImportances", "POST", body, token=TOKEN).json()
    values = answer["importances"][0]["values"]
    c = int(values["shape"][1])
    raw = base64.b64decode(values["data"])
    floats = struct.unpack(f"<{len(raw) // 4}f", raw)
    return answer["tokens"]["strings"], [floats[i * c + component] for i in range(len(floats) // c)]


def test_home_to_table_to_component_to_a_coactive_component(tab):
    page = tab.page
    rows = page.locator("#decompositions tbody tr")
    assert rows.count() == 3
    page.click("a[href$='/d/smol/components']")
    page.wait_for_selector("#components")
    links = page.locator("a.component-link")
    assert links.count() == 4
    links.first.click()
    page.wait_for_selector("#examples")
    first = page.url
    assert f"/d/smol/c/{TEXT_MODULE}/" in first
    shaded = page.locator("#examples .context").first.locator(".tok")
    assert shaded.count() == 8  # every token of the window has its CI
    assert shaded.first.get_attribute("title").startswith("CI ")
    coactive = page.locator("a.coactive")
    assert coactive.count() >= 1
    target = coactive.first.get_attribute("href")
    coactive.first.click()
    page.wait_for_selector("h1")
    assert page.url.endswith(target) and page.url != first
    page.click(f"header a[href$='/components?module={TEXT_MODULE}']")
    page.wait_for_selector("#components")


def test_the_probe_box_shows_the_json_apis_ci_and_its_url_reopens_it(tab, browser, explorer):
    page = tab.page
    page.goto(f"{explorer}/d/smol/c/{TEXT_MODULE}/2")
    page.fill("#probe-text", "The cat sat on the mat")
    page.click("#probe-form button")
    page.wait_for_selector("#probe-result[data-done='1']")
    spans = page.locator("#probe-result .tok")
    strings, ci = _api_ci(explorer, "The cat sat on the mat", 2)
    assert spans.all_text_contents() == strings
    shown = [
        float(v) for v in (spans.nth(i).get_attribute("data-ci") for i in range(spans.count()))
    ]
    assert shown == pytest.approx(ci, abs=1e-6)
    assert "probe=The+cat" in page.url or "probe=The%20cat" in page.url
    again = Tab(browser, explorer)
    again.sign_in()
    again.page.goto(page.url)
    again.page.wait_for_selector("#probe-result[data-done='1']")
    assert again.page.locator("#probe-result .tok").all_text_contents() == strings
    again.close()
    assert not again.errors


def test_markup_typed_into_the_probe_renders_as_text_and_runs_nothing(tab, explorer):
    page = tab.page
    page.goto(f"{explorer}/d/smol/c/{TEXT_MODULE}/0?probe={quote(MARKUP)}")
    page.wait_for_selector("#probe-result[data-done='1']")
    assert page.locator("#probe-result img").count() == 0
    assert "".join(page.locator("#probe-result .tok").all_text_contents()).strip() != ""
    assert page.locator("#probe-text").input_value() == MARKUP
    page.wait_for_timeout(300)  # an onerror handler would have fired by now


@pytest.mark.parametrize(
    ("path", "selector"),
    [
        ("/d/tms", "#modules"),
        ("/d/tms/components?order=mean_ci&module=linear2", "#components"),
        ("/d/tms/c/linear1/3", "#one-hot svg"),
        ("/d/bare", "#no-harvest"),
        ("/d/bare/c/linear1/0", "#factors svg"),
        ("/d/smol", "#modules"),
    ],
)
def test_each_page_renders_without_a_console_error(tab, explorer, path, selector):
    tab.page.goto(explorer + path)
    tab.page.wait_for_selector(selector)
    assert tab.page.locator("svg.plot").count() >= (1 if path != "/d/bare" else 0)


def test_the_table_pages_with_links_that_keep_the_query(tab, explorer):
    page = tab.page
    page.goto(f"{explorer}/d/tms/components?order=mean_ci")
    page.wait_for_selector("#components")
    first = page.locator("a.component-link").all_text_contents()
    page.select_option("select[name=module]", "linear1")
    page.click("form.filters button")
    page.wait_for_url("**module=linear1**")
    assert "order=mean_ci" in page.url
    assert page.locator("a.component-link").count() == 20
    assert first  # the unfiltered table had rows
