import math
from dataclasses import dataclass

import numpy as np
import pytest

from ravlm_graph.evaluation.metrics import breakdown, exact_match, multiple_choice_accuracy, soft_score_accuracy, subgraph_coverage, topk_accuracy, vqa_accuracy
from ravlm_graph.datasets.answers import normalize_answer, vqa_answer_scores


# --------------------------------------------------------------------------- normalisation

@pytest.mark.parametrize("raw, expected", [
    ("Yes.", "yes"),
    ("yes", "yes"),
    ("a dog", "dog"),
    ("The Dog", "dog"),
    ("an apple", "apple"),
    ("two", "2"),
    ("Ten", "10"),
    ("eleven", "eleven"),          # only zero..ten (and none) are mapped
    ("none", "0"),
    ("The Two Dogs!", "2 dogs"),
    ("dont", "don't"),
    ("isnt it", "isn't it"),
    ("it's", "it's"),              # the apostrophe is not punctuation
    ("1,000", "1000"),             # comma between digits: all punctuation deleted
    ("yes, 1,000", "yes 1000"),    # ... anywhere in the answer
    ("black/white", "black white"),  # a mark not next to a space becomes a space
    ("black / white", "black white"),  # next to a space: deleted
    ("x-ray", "x ray"),
    ("2.5", "2.5"),                # a period followed by a digit stays
    ("5.", "5"),
    ("u.s.a.", "usa"),
    ("mr. t", "mr t"),
    ("  hot\tdog\n", "hot dog"),
    ("", ""),
])
def test_normalize_answer_official_rules(raw, expected):
    assert normalize_answer(raw) == expected


def test_normalize_answer_rejects_non_string():
    with pytest.raises(TypeError, match="expected a str, found int"):
        normalize_answer(3)


# --------------------------------------------------------------------------- VQA accuracy

def test_vqa_accuracy_leave_one_out_counts():
    others = ["cat"] * 10
    # 0 of 10 humans: every subset has 0 matches.
    assert vqa_accuracy("dog", others) == 0.0
    # 1 of 10: the subset without the matching human has 0 matches (score 0), the 9
    # others have 1 (score 1/3): (9 * 1/3 + 1 * 0) / 10 = 0.3.
    assert vqa_accuracy("dog", ["dog"] + ["cat"] * 9) == pytest.approx(0.3)
    # 2 of 10: 2 subsets with 1 match (1/3), 8 with 2 (2/3): (2/3 + 16/3) / 10 = 0.6.
    assert vqa_accuracy("dog", ["dog"] * 2 + ["cat"] * 8) == pytest.approx(0.6)
    # 3 of 10: 3 subsets with 2 matches (2/3), 7 with 3 (1): (2 + 7) / 10 = 0.9.
    assert vqa_accuracy("dog", ["dog"] * 3 + ["cat"] * 7) == pytest.approx(0.9)
    # 4 of 10: every subset has >= 3 matches: 1.0.
    assert vqa_accuracy("dog", ["dog"] * 4 + ["cat"] * 6) == 1.0
    assert vqa_accuracy("dog", ["dog"] * 10) == 1.0


def test_vqa_accuracy_normalises_both_sides():
    assert vqa_accuracy("two", ["2"] * 10) == 1.0
    assert vqa_accuracy("2", ["two"] * 3 + ["3"] * 7) == pytest.approx(0.9)
    assert vqa_accuracy("a dog", ["dog"] * 10) == 1.0
    assert vqa_accuracy("Yes.", ["yes"] * 10) == 1.0
    assert vqa_accuracy("Dont", ["don't"] * 4 + ["no"] * 6) == 1.0


def test_vqa_accuracy_official_unanimous_quirk():
    # The official script does not normalise when all 10 answers are identical.
    assert vqa_accuracy("Yes.", ["yes"] * 10, official_unanimous_quirk=True) == 0.0
    assert vqa_accuracy("yes", ["yes"] * 10, official_unanimous_quirk=True) == 1.0
    # With differing answers it normalises as usual: 9 of 10 -> 1.0.
    assert vqa_accuracy("Yes.", ["yes"] * 9 + ["no"], official_unanimous_quirk=True) == 1.0


def test_vqa_accuracy_other_answer_counts():
    # With 3 answers: leave-one-out subsets of 2; 1 match: (2 * 1/3 + 0) / 3 = 2/9.
    assert vqa_accuracy("dog", ["dog", "cat", "cow"]) == pytest.approx(2 / 9)


def test_vqa_accuracy_errors():
    with pytest.raises(ValueError, match="expected at least one human answer, found none"):
        vqa_accuracy("dog", [])
    with pytest.raises(TypeError, match="expected a sequence of answers, found a str"):
        vqa_accuracy("dog", "dog")


def test_vqa_answer_scores():
    answers = ["Dog", "dog", "dog", "a dog", "cat", "cat", "puppy", "dog", "cat", "two"]
    # dog: 5 humans -> 1.0; cat: 3 -> 0.9; puppy: 1 -> 0.3; 2: 1 -> 0.3
    assert vqa_answer_scores(answers) == pytest.approx({"dog": 1.0, "cat": 0.9, "puppy": 0.3, "2": 0.3})
    assert list(vqa_answer_scores(answers)) == ["dog", "cat", "puppy", "2"]


# --------------------------------------------------------------------------- other metrics

def test_exact_match():
    assert exact_match("The Lipstick.", "lipstick") == 1.0
    assert exact_match("lipstick", ["mascara", "Lipstick"]) == 1.0
    assert exact_match("lip", "lipstick") == 0.0


def test_topk_accuracy():
    ranked = ["dog", "cat", "Cow"]
    assert topk_accuracy(ranked, "cow", 1) == 0.0
    assert topk_accuracy(ranked, "cow", 3) == 1.0
    assert topk_accuracy(ranked, ["a dog"], 1) == 1.0
    assert topk_accuracy(ranked, "horse", 10) == 0.0
    with pytest.raises(ValueError, match="expected k >= 1, found 0"):
        topk_accuracy(ranked, "cow", 0)
    with pytest.raises(TypeError, match="found a str"):
        topk_accuracy("dog", "dog", 1)


@pytest.mark.parametrize("k", [True, False])
def test_topk_accuracy_refuses_bool_k(k):
    with pytest.raises(TypeError, match="found bool"):
        topk_accuracy(["a"], "a", k)


@pytest.mark.parametrize("k", [0, -1, np.int64(0)])
def test_topk_accuracy_refuses_non_positive_k(k):
    with pytest.raises(ValueError, match="expected k >= 1"):
        topk_accuracy(["a"], "a", k)


@pytest.mark.parametrize("k", [1.0, "1", None])
def test_topk_accuracy_refuses_non_integer_k(k):
    with pytest.raises(TypeError, match="expected an integer k"):
        topk_accuracy(["a"], "a", k)


def test_topk_accuracy_accepts_numpy_integer_k():
    assert topk_accuracy(["b", "a"], "a", np.int64(2)) == 1.0
    assert topk_accuracy(["b", "a"], "a", np.int64(1)) == 0.0


def test_multiple_choice_accuracy():
    assert multiple_choice_accuracy([0, 1, 2], [0, 2, 2]) == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match="found 2 predictions for 3 questions"):
        multiple_choice_accuracy([0, 1], [0, 1, 2])
    with pytest.raises(ValueError, match="expected at least one question"):
        multiple_choice_accuracy([], [])


def test_multiple_choice_accuracy_accepts_numpy_arrays():
    assert multiple_choice_accuracy(np.array([0, 1]), np.array([0, 1])) == 1.0
    assert multiple_choice_accuracy(np.array([0, 1, 2]), np.array([0, 2, 2])) == pytest.approx(2 / 3)
    assert multiple_choice_accuracy([0, 1, 2], np.array([0, 2, 2])) == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match="expected at least one question"):
        multiple_choice_accuracy(np.array([]), np.array([]))
    with pytest.raises(ValueError, match="found 2 predictions for 3 questions"):
        multiple_choice_accuracy(np.array([0, 1]), np.array([0, 1, 2]))


def test_soft_score_accuracy_lxmert_labels():
    label = {"racing": 1, "motocross": 0.667, "riding": 0.667}
    assert soft_score_accuracy("Racing", label) == 1.0
    assert soft_score_accuracy("motocross.", label) == 0.667
    assert soft_score_accuracy("bike", label) == 0.0
    assert soft_score_accuracy("dog", {"a dog": 0.3, "dog": 0.6}) == 0.6


def test_subgraph_coverage():
    assert subgraph_coverage(["makeup cabinet"], ["lipstick", "makeup_cabinet"]) == 1.0
    assert subgraph_coverage(["Makeup_Cabinet", "drawer"], {"lipstick"}) == 0.0
    assert math.isnan(subgraph_coverage([], ["lipstick"]))


@dataclass
class _Result:
    relation: str
    split: str
    score: float


def test_breakdown_per_group():
    results = [
        {"relation": "UsedFor", "split": "train", "score": 1.0},
        {"relation": "UsedFor", "split": "test", "score": 0.0},
        {"relation": "IsA", "split": "test", "score": 1.0},
        {"relation": "IsA", "split": "test", "score": math.nan},  # skipped
    ]
    assert breakdown(results, key="relation") == {"UsedFor": 0.5, "IsA": 1.0}
    assert breakdown(results, key="split") == {"train": 1.0, "test": 0.5}
    objs = [_Result("UsedFor", "train", 0.3), _Result("IsA", "train", 0.9)]
    assert breakdown(objs, key=lambda r: r.relation[0]) == pytest.approx({"U": 0.3, "I": 0.9})
    # A list-valued key counts the item in each of its groups.
    multi = [{"rels": ["IsA", "UsedFor"], "acc": 1.0}, {"rels": ["IsA"], "acc": 0.0}]
    assert breakdown(multi, key="rels", value="acc") == {"IsA": 0.5, "UsedFor": 1.0}
    assert breakdown([], key="relation") == {}


def test_breakdown_missing_field():
    with pytest.raises(KeyError, match="item 1: missing field 'relation'"):
        breakdown([{"relation": "IsA", "score": 1.0}, {"score": 0.0}], key="relation")
    with pytest.raises(KeyError, match="item 0: missing field 'score'"):
        breakdown([{"relation": "x"}], key="relation")
