"""The prompt playground in a real headless Chromium: type a prompt, choose a token, tick two
components and ablate them (the shown next tokens equal the JSON API's answer for the same
request), a copied URL reopens the same selection, markup typed as a prompt stays text, a toy's
presets and buttons work, and never a console error or a dialog."""

from __future__ import annotations

import base64

import numpy as np
import pytest

from tests.serve.browser import chromium
from tests.serve.conftest import TOKEN
from tests.serve.http_calls import http
from tests.serve.test_explorer_browser import MARKUP, TEXT_MODULE, Tab

pytestmark = pytest.mark.ray
TEXT = "The cat sat on the mat"


@pytest.fixture(scope="module")
def browser():
    with chromium() as b:
        yield b


def _tab(browser, explorer) -> Tab:
    t = Tab(browser, explorer)
    t.sign_in()
    return t


def _closed_cleanly(t: Tab) -> None:
    t.close()
    assert not t.errors, f"console errors: {t.errors}"
    assert not t.dialogs, f"a string ran as script: {t.dialogs}"


@pytest.fixture
def tab(browser, explorer):
    t = _tab(browser, explorer)
    yield t
    _closed_cleanly(t)


def _shown(page, cls: str) -> list[tuple[int, float]]:
    cells = page.locator(f"#next-tokens .{cls}")
    return [
        (int(cells.nth(i).get_attribute("data-id")), float(cells.nth(i).get_attribute("data-prob")))
        for i in range(cells.count())
    ]


def _two_components(base: str) -> list[tuple[int, int]]:
    """[(position, component), (position, component)]: two components of TEXT_MODULE with CI > 0
    at the given positions (both at one position where one has two)."""
    body = {"decomposition": "smol", "text": TEXT, "selection": {"dense": {}}}
    answer = http(f"{base}/api/v1/ComputeImportances", "POST", body, token=TOKEN).json()
    values = answer["importances"][0]["values"]
    raw = base64.b64decode(values["data"])
    ci = np.frombuffer(raw, dtype="<f4").reshape([int(s) for s in values["shape"]])
    for pos, row in enumerate(ci):
        if (row > 0).sum() >= 2:
            return [(pos, int(c)) for c in np.argsort(-row, kind="stable")[:2]]
    found = [(pos, int(row.argmax())) for pos, row in enumerate(ci) if row.max() > 0]
    other = next(f for f in found if f[1] != found[0][1])
    return [found[0], other]


def test_ablating_two_chosen_components_shows_the_json_apis_next_tokens(tab, browser, explorer):
    picks = _two_components(explorer)
    chosen = sorted(c for _, c in picks)
    page = tab.page
    page.goto(f"{explorer}/d/smol/prompt")
    page.fill("#prompt-text", TEXT)
    page.click("#run")
    page.wait_for_selector("#tokens")
    for pos, component in picks:
        if page.locator("#tokens a.chosen").get_attribute("data-pos") != str(pos):
            page.click(f"#tokens a[data-pos='{pos}']")  # the link carries the ticked boxes
            page.wait_for_url(f"**pos={pos}**")
        assert page.locator("#tokens a.chosen").get_attribute("data-pos") == str(pos)
        page.check(f"input[name=c][data-index='{component}']")
    assert page.locator("input[name=c]:checked").count() == 2
    value = f"{TEXT_MODULE}:{chosen[0]},{chosen[1]}"
    command = page.locator("#export-command").text_content()
    assert command.startswith("spd export ") and f"--ablate {value} --out smol-edited" in command
    copied = page.url  # the selection is in the URL before any press
    page.click("#ablate-button")
    page.wait_for_selector("#answer[data-mode='ablate']")
    body = {
        "decomposition": "smol",
        "text": TEXT,
        "mode": "MASK_MODE_ABLATE",
        "components": {TEXT_MODULE: {"indices": [str(i) for i in chosen]}},
        "topKTokens": 10,
    }
    want = http(f"{explorer}/api/v1/Ablate", "POST", body, token=TOKEN).json()
    masked, target = _shown(page, "masked-token"), _shown(page, "target-token")
    assert [i for i, _ in masked] == [int(i) for i in want["nextTokens"][0]["ids"]]
    assert [p for _, p in masked] == pytest.approx(want["nextTokens"][0]["probs"], rel=1e-6)
    assert [i for i, _ in target] == [int(i) for i in want["targetNextTokens"]["ids"]]
    texts = page.locator("#next-tokens .masked-token").all_text_contents()
    assert texts == [s.replace("\n", "⏎") for s in want["nextTokens"][0]["strings"]]
    assert page.locator("#changes").count() == 1  # against the CI answer shown before the press
    assert page.locator("#tokens a.chosen").get_attribute("data-pos") == str(picks[-1][0])
    again = _tab(browser, explorer)
    again.page.goto(copied)
    again.page.wait_for_selector("#tokens")
    ticked = again.page.locator("input[name=c]:checked")
    assert sorted(int(ticked.nth(i).get_attribute("data-index")) for i in range(2)) == chosen
    assert ticked.count() == 2
    assert again.page.locator("#export-command").text_content() == command
    _closed_cleanly(again)


def test_markup_typed_as_a_prompt_renders_as_text_and_runs_nothing(tab, explorer):
    page = tab.page
    page.goto(f"{explorer}/d/smol/prompt")
    page.fill("#prompt-text", MARKUP)
    page.click("#run")
    page.wait_for_selector("#tokens")
    assert page.locator("main img").count() == 0
    assert "".join(page.locator("#tokens .tok").all_text_contents()).strip() != ""
    assert page.locator("#prompt-text").input_value() == MARKUP
    page.wait_for_timeout(300)  # an onerror handler would have fired by now


def test_a_toy_preset_and_keep_show_the_masked_output_beside_the_targets(tab, explorer):
    page = tab.page
    page.goto(f"{explorer}/d/tms")
    page.click("#playground-link")
    page.click("a.preset >> text=e1")
    page.wait_for_selector("#outputs")
    assert page.locator("#prompt-x").input_value() == "0,1,0,0,0"
    page.locator("input[name=c]").first.check()
    page.click("#keep-button")
    page.wait_for_selector("#answer[data-mode='keep']")
    assert page.locator("#outputs .masked-output").count() == 5
    assert page.locator("#outputs .target-output").count() == 5
    assert page.locator("#change-table tbody tr").count() == 5
