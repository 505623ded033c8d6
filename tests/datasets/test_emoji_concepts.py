import json

import numpy as np
import pytest

from kg_ingest import KnowledgeGraph, load_default
from ravlm_graph.datasets.builtin import default_emoji_root
from ravlm_graph.datasets.emoji_concepts import candidate_concepts, count_nameable_facts, link_emoji
from ravlm_graph.datasets.templates import TEMPLATES, check_templates, is_nameable, render_question


@pytest.fixture(scope="module")
def kg():
    return load_default(with_fvqa=True)


def _tiny_kg(edges):
    names = sorted({h for h, _, _ in edges} | {t for _, _, t in edges})
    rels = sorted({r for _, r, _ in edges})
    idx = {n: i for i, n in enumerate(names)}
    rows = sorted((idx[h], rels.index(r), idx[t]) for h, r, t in edges)
    src, rel, dst = (np.array(c) for c in zip(*rows))
    return KnowledgeGraph.from_arrays(names, rels, src, dst, rel, np.ones(len(rows)))


def test_candidates_follow_the_rule():
    assert candidate_concepts("red apple", ["apple"]) == ["red_apple", "apple"]
    assert candidate_concepts("fire engine", ["fire_engine"]) == ["fire_engine", "engine"]
    assert candidate_concepts("clock face four-thirty", ["clock430"]) == ["clock_face_four_thirty", "clock"]
    assert candidate_concepts("lion face", ["lion_face"])[:2] == ["lion_face", "lion"]
    assert candidate_concepts("ballot box with ballot", [])[:3] == ["ballot_box_with_ballot", "ballot_box", "box"]
    assert candidate_concepts("chopsticks", []) == ["chopsticks", "chopstick"]
    assert candidate_concepts("leaf fluttering in wind", ["leaves"]) == [
        "leaf_fluttering_in_wind", "leaf_fluttering", "leaves", "leaf", "fluttering"]
    assert candidate_concepts("rabbit", ["rabbit2"]) == ["rabbit"]


@pytest.mark.parametrize("name,shorts,concept,rule", [
    ("red apple", ["apple"], "apple", "core"),
    ("fire engine", ["fire_engine"], "fire_engine", "name"),
    ("guide dog", ["guide_dog"], "dog", "head_noun"),
    ("hocho", ["hocho", "knife"], "knife", "short_name"),
    ("clock face four-thirty", ["clock430"], "clock", "core"),
    ("chopsticks", ["chopsticks"], "chopstick", "name"),
    ("ear of maize", ["corn"], "corn", "override"),
    ("mahjong tile red dragon", ["mahjong"], None, "refused"),
    ("qwxz gizmo", ["qwxz"], None, "no_candidate"),
])
def test_link_real_names(kg, name, shorts, concept, rule):
    link = link_emoji(name, shorts, kg)
    assert (link.concept, link.rule) == (concept, rule)
    if concept:
        assert link.facts >= 5


def test_min_facts_threshold():
    g = _tiny_kg([("apple", "UsedFor", "eat"), ("apple", "AtLocation", "kitchen"), ("apple", "IsA", "fruit"),
                  ("apple", "UsedFor", "in_kitchen_and_more"), ("red_apple", "IsA", "apple")])
    assert count_nameable_facts(g, "apple") == 3  # the clause-like tail is not nameable
    assert link_emoji("red apple", ["apple"], g, min_facts=3).concept == "apple"
    # red_apple exists but has too few facts, and apple is below the bar too
    link = link_emoji("red apple", ["apple"], g, min_facts=4)
    assert (link.concept, link.rule, link.facts) == (None, "too_few_facts", 3)


def test_packaged_index_agrees_with_rule(kg):
    index = json.loads((default_emoji_root() / "index.json").read_text())
    assert 300 <= len(index) <= 857
    for rec in index:
        link = link_emoji(rec["name"], rec["short_names"], kg)
        assert link.concept == rec["concept"], rec["name"]
        assert (default_emoji_root() / "twemoji64" / rec["image"]).is_file()
        assert (default_emoji_root() / "noto64" / rec["image"]).is_file()
    assert "CC BY 4.0" in (default_emoji_root() / "ATTRIBUTION.md").read_text()


def test_nameable_answers():
    assert is_nameable("eat", "UsedFor")
    assert is_nameable("make_pie", "UsedFor")
    assert not is_nameable("in_kitchen", "AtLocation")
    assert not is_nameable("red_and_white", "HasProperty")
    assert not is_nameable("go_at_0_degree", "CapableOf")
    assert not is_nameable("apple", "IsA", head="apple")
    assert not is_nameable("large_city_on_the_coast", "AtLocation")
    assert not is_nameable("fruit", "Antonym")


def test_templates_cover_all_relations():
    check_templates()
    assert all(len(ts) >= 4 for by_rel in TEMPLATES.values() for ts in by_rel.values())
    assert render_question("Can {obj} {ans}?", obj="the thing on the left", answer="fly") == \
        "Can the thing on the left fly?"
    assert render_question("Is {obj} {a_ans}?", obj="the object", answer="insect") == "Is the object an insect?"
    assert render_question("{Obj} is made out of what?", obj="the middle item") == \
        "The middle item is made out of what?"
