"""SQuAD v1.1/v2.0 exact match and F1 against values worked out by hand from the official definitions."""

import pytest

from moebert.errors import MoebertError
from moebert.tasks.squad_metrics import (
    exact_match_v1,
    exact_match_v2,
    f1_v1,
    f1_v2,
    normalize_answer,
    squad_v1,
    squad_v2,
)


def test_normalize_drops_case_punctuation_articles_and_extra_space():
    assert normalize_answer("The Eiffel Tower!") == "eiffel tower"
    assert exact_match_v1("The Eiffel Tower!", "eiffel tower") == 1.0
    # Punctuation is deleted, not turned into a space.
    assert normalize_answer("  U.S.A.,  don't  ") == "usa dont"
    # Punctuation goes before articles: "the-end" -> "theend", where the reverse order would leave "end".
    assert normalize_answer("the-end") == "theend"


def test_articles_are_removed_only_as_whole_words():
    assert exact_match_v1("an apple", "apple") == 1.0
    assert exact_match_v2("A  apple", "the apple") == 1.0
    assert normalize_answer("a theatre and an anthem") == "theatre and anthem"
    assert normalize_answer("Theatre") == "theatre"


def test_partial_f1():
    # [big, red, dog] vs [red, dog, barked]: 2 shared, P = R = 2/3, F1 = 2/3.
    assert f1_v1("the big red dog", "red dog barked") == pytest.approx(2 / 3)
    # [red, dog] vs [big, red, dog, barked]: P = 2/2, R = 2/4, F1 = 2 * 1 * 1/2 / (3/2) = 2/3 (not the mean
    # 3/4, and not 1 or 1/2 as when both divide by the same length).
    assert f1_v1("red dog", "the big red dog barked") == pytest.approx(2 / 3)
    assert f1_v2("red dog", "the big red dog barked") == pytest.approx(2 / 3)
    # Shared tokens count with multiplicity: min(3, 1) = 1, P = 1/3, R = 1, F1 = (2/3) / (4/3) = 1/2.
    assert f1_v1("dog dog dog", "dog") == pytest.approx(0.5)
    # min(2, 2) = 2 (a set would give 1), P = 2/3, R = 2/2, F1 = (4/3) / (5/3) = 4/5.
    assert f1_v1("dog dog cat", "dog dog") == pytest.approx(0.8)
    assert f1_v1("red dog", "black cat") == 0.0


def test_empty_answers_v1_versus_v2():
    assert exact_match_v1("", "dog") == 0.0 and f1_v1("", "dog") == 0.0
    assert f1_v2("", "dog") == 0.0 and f1_v2("dog", "") == 0.0
    # Both normalize to nothing: equal strings, but v1.1 has no overlap (0) where v2.0 scores a match (1).
    assert exact_match_v1("the", "a") == 1.0 and f1_v1("the", "a") == 0.0
    assert exact_match_v2("", "") == 1.0 and f1_v2("the", "") == 1.0


def test_squad_v1_takes_the_max_over_gold_answers():
    predictions = {"a": "The Eiffel Tower!", "b": "red dog", "c": "dog dog dog"}
    answers = {"a": ["eiffel tower"], "b": ["big red dog barked", "cat", "red dog"], "c": ["dog"]}
    # Exact: a 1, b max(0, 0, 1) = 1, c 0 -> 2/3. F1: a 1, b max(2/3, 0, 1) = 1, c 1/2 -> 2.5/3.
    # (A mean over b's golds would give exact 1/3, F1 5/9.)
    assert squad_v1(predictions, answers) == pytest.approx({"exact_match": 200 / 3, "f1": 250 / 3})


def test_squad_v2_unanswerable_questions():
    assert squad_v2({"q": ""}, {"q": []}) == pytest.approx(
        {"exact_match": 100.0, "f1": 100.0, "NoAns_exact_match": 100.0, "NoAns_f1": 100.0, "NoAns_total": 1}
    )
    assert squad_v2({"q": "cat"}, {"q": []})["f1"] == 0.0
    # Golds that normalize to nothing are dropped, leaving "": only an empty (after normalizing) prediction
    # scores. The list itself is not empty, so the official script counts the question under HasAns.
    only_articles = {"q": ["The", "!"]}
    assert squad_v2({"q": ""}, only_articles) == pytest.approx(
        {
            "exact_match": 100.0,
            "f1": 100.0,
            "HasAns_exact_match": 100.0,
            "HasAns_f1": 100.0,
            "HasAns_total": 1,
        }
    )
    assert squad_v2({"q": "a"}, only_articles)["f1"] == 100.0
    assert squad_v2({"q": "the end"}, only_articles)["f1"] == 0.0
    # An empty gold beside a real one is dropped too: "" no longer matches.
    assert squad_v2({"q": ""}, {"q": ["", "dog"]})["exact_match"] == 0.0


# q1, q2 answerable, q3, q4 not; dict order differs from null-score order on purpose.
ANSWERS = {"q3": [], "q4": [], "q1": ["red dog"], "q2": ["the big red dog barked"]}
PREDICTIONS = {"q1": "Red dog.", "q2": "red dog", "q3": "", "q4": "cat"}
# Per question (exact, f1): q1 (1, 1), q2 (0, 2/3), q3 (1, 1), q4 (0, 0).


def test_squad_v2_has_answer_breakdown():
    assert squad_v2(PREDICTIONS, ANSWERS) == pytest.approx(
        {
            "exact_match": 50.0,  # 2/4
            "f1": 200 / 3,  # (1 + 2/3 + 1 + 0) / 4 = 2/3
            "HasAns_exact_match": 50.0,
            "HasAns_f1": 250 / 3,
            "HasAns_total": 2,  # f1 (1 + 2/3) / 2 = 5/6
            "NoAns_exact_match": 50.0,
            "NoAns_f1": 50.0,
            "NoAns_total": 2,
        }
    )


def test_squad_v2_best_null_threshold():
    null_scores = {"q1": -2.0, "q3": -1.0, "q2": 0.5, "q4": 3.0}
    result = squad_v2(PREDICTIONS, ANSWERS, null_scores)
    # Start with all null: 2 right (q3, q4). Answer in null-score order q1, q3, q2, q4:
    # exact: 2 +1 (q1) = 3 at -2.0, +0 (q3's prediction is empty) = 3, +0 (q2) = 3 (a tie does not move the
    #        threshold), -1 (q4 predicts "cat") = 2 -> best 3/4 at -2.0.
    # f1:    2 +1 = 3 at -2.0, +0 = 3, +2/3 = 11/3 at 0.5, -1 = 8/3 -> best 11/12 at 0.5.
    assert result["exact_match"] == 50.0 and result["f1"] == pytest.approx(200 / 3)
    assert result["best_exact_match"] == 75.0 and result["best_exact_match_thresh"] == -2.0
    assert result["best_f1"] == pytest.approx(1100 / 12) and result["best_f1_thresh"] == 0.5
    # All null is best: 1 right, answering loses it -> 100% at the default threshold 0.0.
    lone = squad_v2({"q": "cat"}, {"q": []}, {"q": -5.0})
    assert (lone["best_f1"], lone["best_f1_thresh"], lone["f1"]) == (100.0, 0.0, 0.0)


def test_squad_v2_threshold_search_runs_in_null_score_order_and_charges_wrong_answers():
    # Null-score order c, b, a differs from id order; b is unanswerable but predicts "dog".
    answers = {"a": ["cat"], "b": [], "c": ["x"]}
    predictions = {"a": "cat", "b": "dog", "c": "x"}
    # Start all null: 1 right (b). +1 (c) = 2 at 0.0, -1 (b) = 1, +1 (a) = 2, a tie -> 2/3 at 0.0.
    result = squad_v2(predictions, answers, {"c": 0.0, "b": 1.0, "a": 2.0})
    assert result["best_exact_match"] == result["best_f1"] == pytest.approx(200 / 3)
    assert result["best_exact_match_thresh"] == result["best_f1_thresh"] == 0.0
    # One more right answer after b: 2 at 0.0, 1, 2, 3 at 3.0 -> 3/4 at 3.0. Charging b's answer 0 or 2
    # instead of 1 would give 4/4 or 2/4.
    result = squad_v2(
        {**predictions, "d": "y"}, {**answers, "d": ["y"]}, {"c": 0.0, "b": 1.0, "a": 2.0, "d": 3.0}
    )
    assert (result["best_exact_match"], result["best_exact_match_thresh"]) == (75.0, 3.0)


def test_missing_ids_raise():
    with pytest.raises(MoebertError, match=r"predictions lack 2 of the 3 question ids.*'b'"):
        squad_v1({"a": "x"}, {"a": ["x"], "b": ["y"], "c": ["z"]})
    with pytest.raises(MoebertError, match=r"predictions lack 1 .*'q2'"):
        squad_v2({k: v for k, v in PREDICTIONS.items() if k != "q2"}, ANSWERS)
    with pytest.raises(MoebertError, match=r"null_scores lack 1 .*'q4'"):
        squad_v2(PREDICTIONS, ANSWERS, {"q1": 0.0, "q2": 0.0, "q3": 0.0})
    with pytest.raises(MoebertError, match=r"gold answers.*'a'"):
        squad_v1({"a": "x"}, {"a": []})
