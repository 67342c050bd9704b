"""The pure logic of labelling: token summaries, prompts, answer parsing, detection scoring."""

import pytest

from spd_core.harvest.reader import ComponentStats, ComponentSummary, Example, TokenStat
from spd_core.interp.answers import parse_label, parse_selection
from spd_core.interp.prompts import TEMPLATE_SHA256, explainer_messages, scorer_messages
from spd_core.interp.scoring import (
    Context,
    balanced_accuracy,
    derangement,
    shuffled_snippets,
    split_examples,
)
from spd_core.interp.token_summary import token_summary


def stat(token: str, precision: float, recall: float, count: int) -> TokenStat:
    return TokenStat(0, token, precision, recall, count)


def test_token_summary_names_tokens_until_half_the_firings_with_joint_precision():
    # " Mr": 60 firings of 60 occurrences (p 1.0, r 0.6) reaches half the firings alone
    assert token_summary(100, [stat(" Mr", 1.0, 0.6, 60), stat(" Mrs", 1.0, 0.18, 18)]) == (
        'fires on " Mr" (precision 1.00, 60% of firings)'
    )
    # 30 of 60 occurrences, then 10 of 40: joint precision 40 / 100 = 0.40, share 0.3 + 0.1
    # + 0.05 (a third token: still under half, and the third is the last named)
    summary = token_summary(
        100, [stat("a", 0.5, 0.3, 30), stat("b", 0.25, 0.1, 10), stat("c", 0.5, 0.05, 5)]
    )
    # positions: 60 + 40 + 10 = 110; firings 45 -> 0.41
    assert summary == 'fires on "a", "b", "c" (precision 0.41, 45% of firings)'


def test_token_summary_without_firings_or_token_statistics():
    assert token_summary(0, []) == "never fires"
    assert token_summary(5, []) == ""
    assert (
        token_summary(3, [stat("\n", 0.5, 1.0, 3)])
        == 'fires on "\\n" (precision 0.50, 100% of firings)'
    )


# answers SmolLM2-135M-Instruct gave through `transformers serve` (and typical larger-model ones)
@pytest.mark.parametrize(
    ("answer", "label", "explanation"),
    [
        (
            "Label: names after Mr and Mrs\nExplanation: It fires on titles.",
            "names after Mr and Mrs",
            "It fires on titles",
        ),
        (
            "**Label:** punctuation at line ends\n**Explanation:** Commas and periods.",
            "punctuation at line ends",
            "Commas and periods",
        ),
        ("label: \"the word 'the'\"", "the word 'the'", ""),
        (
            "Sentence-initial capitals\nIt is active at the start of sentences.",
            "Sentence-initial capitals",
            "It is active at the start of sentences",
        ),
        (
            "Explanation: fires on verbs\nLabel: past-tense verbs.",
            "past-tense verbs",
            "fires on verbs",
        ),
    ],
)
def test_parse_label_reads_label_and_explanation(answer, label, explanation):
    parsed = parse_label(answer)
    assert parsed is not None and (parsed.label, parsed.explanation) == (label, explanation)


@pytest.mark.parametrize(
    "answer",
    [
        "",
        "   \n  ",
        "This component seems to respond to a very wide variety of different tokens in many contexts",
        # SmolLM2-135M restating the prompt: 10 words, no `Label:`
        "The neural network is active on 19.53% of all tokens.\n\nThe active token is named",
        "Label: " + "x" * 81,
        # SmolLM2-135M copying one of the examples (tiny-llama-2l, model.layers.0.mlp.up_proj:112)
        "The LUME I⏎⏎CHAPTER I⏎⏎E[[m]]ma Woodhouse, hands\n\nThe LUME I⏎⏎CHAPTER",
    ],
)
def test_parse_label_refuses_malformed_answers(answer):
    assert parse_label(answer) is None


def test_parse_selection():
    assert parse_selection("2, 5", 6) == frozenset({1, 4})
    assert parse_selection("Snippets 1 and 3 match. (7 is not a snippet)", 6) == frozenset({0, 2})
    assert parse_selection("None of them.", 6) == frozenset()
    assert parse_selection("I cannot tell.", 6) is None
    assert parse_selection("9", 6) is None
    assert parse_selection("2. 5", 6) == frozenset({1, 4})
    # SmolLM2-135M's answer to the scorer's prompt: the snippets again, numbered, not a choice
    assert parse_selection("1. The cat sat in the window\n2. She went to school\n", 6) is None


def test_balanced_accuracy_by_hand():
    # 3 positives {0,1,2}, 3 negatives {3,4,5}; choose {0,3}: TPR 1/3, TNR 2/3 -> 0.5
    assert balanced_accuracy(frozenset({0, 3}), frozenset({0, 1, 2}), 6) == pytest.approx(0.5)
    assert balanced_accuracy(frozenset({0, 1, 2}), frozenset({0, 1, 2}), 6) == 1.0
    assert balanced_accuracy(frozenset(), frozenset({0, 1, 2}), 6) == 0.5
    assert balanced_accuracy(frozenset(range(6)), frozenset({0, 1, 2}), 6) == 0.5
    # 2 positives of 5: choose {0, 4}: TPR 1/2, TNR 2/3 -> 7/12
    assert balanced_accuracy(frozenset({0, 4}), frozenset({0, 1}), 5) == pytest.approx(7 / 12)
    with pytest.raises(ValueError, match="firing and non-firing"):
        balanced_accuracy(frozenset(), frozenset(range(3)), 3)


def test_split_examples_holds_out_odd_ranks_and_never_shows_them():
    shown, held = split_examples(list(range(10)), n_shown=4, n_held_out=3)
    assert held == [1, 3, 5] and shown == [0, 2, 4, 6]
    assert split_examples([7], 10, 3) == ([7], [])
    shown, held = split_examples(list(range(5)), 10, 2)
    assert (shown, held) == ([0, 2, 4], [1, 3]) and not set(shown) & set(held)


def test_shuffled_snippets_and_derangement_are_seeded():
    firing = [Context("a", str(k), "") for k in range(3)]
    silent = [Context("b", str(k), "") for k in range(3)]
    snippets, positives = shuffled_snippets(firing, silent, seed=4)
    assert sorted(c.before for c in snippets) == ["a"] * 3 + ["b"] * 3
    assert {k for k, c in enumerate(snippets) if c.before == "a"} == positives
    assert shuffled_snippets(firing, silent, seed=4) == (snippets, positives)
    keys = [("m", k) for k in range(7)]
    cycle = derangement(keys, seed=1)
    assert sorted(cycle) == keys and sorted(cycle.values()) == keys
    assert all(cycle[k] != k for k in keys) and derangement(keys, seed=1) == cycle
    assert derangement(keys[:1], 0) == {}


def test_prompts_mark_the_token_and_carry_the_statistics():
    summary = ComponentSummary(
        ComponentStats("layers.0.mlp", 3, 10, 0.125, 0.9),
        4,
        80,
        0.0,
        [0.0, 1.0],
        [10],
        [Example(0.91, 0, 2, " Mr", "Said\n", " Smith")],
        [],
        [],
        tokens_by_precision=[stat(" Mr", 1.0, 0.6, 6)],
        tokens_by_recall=[stat(" Mr", 1.0, 0.6, 6)],
    )
    _, user = explainer_messages(summary, summary.top_examples)
    assert "layers.0.mlp" in user["content"] and "12.50%" in user["content"]
    assert "1. (0.91) Said⏎[[ Mr]] Smith" in user["content"]
    assert '" Mr" 1.00' in user["content"] and '" Mr" 60%' in user["content"]
    _, ask = scorer_messages("titles", [Context("x ", "y", " z")])
    assert ask["content"].startswith("Label: titles") and "1. x [[y]] z" in ask["content"]
    assert len(TEMPLATE_SHA256) == 64
