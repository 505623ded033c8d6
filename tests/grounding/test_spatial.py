"""Spatial references: parsing, the linker leaving pointing words alone, selection by box."""

from __future__ import annotations

import dataclasses

import pytest


from tests.fakes import make_kg
from ravlm_graph.grounding import Entity, TextGrounder, tokenize
from ravlm_graph.grounding.config import GroundingConfig
from ravlm_graph.grounding.spatial import (parse_position, parse_references, position_box, refer_entities,
                                           select_entities, spatial_token_mask)


# Position and pointing words that are also concepts of ConceptNet, so that a linker
# without the spatial rule would find them ("left" as the verb "leave").
TRIPLES = [
    ("leave", "RelatedTo", "go"), ("left", "RelatedTo", "direction"), ("right", "RelatedTo", "correct"),
    ("top", "IsA", "toy"), ("bottom", "PartOf", "body"), ("middle", "RelatedTo", "center"),
    ("corner", "PartOf", "room"), ("thing", "RelatedTo", "object"), ("object", "RelatedTo", "thing"),
    ("item", "RelatedTo", "thing"), ("picture", "AtLocation", "wall"), ("top_hat", "IsA", "hat"),
    ("use", "RelatedTo", "tool"), ("use_for", "RelatedTo", "use"), ("hang", "RelatedTo", "wall"),
    ("knife", "UsedFor", "cut"), ("upper", "RelatedTo", "top"), ("key", "UsedFor", "open_door"),
]


@pytest.fixture(scope="module")
def grounder():
    return TextGrounder(make_kg(TRIPLES))


@pytest.mark.parametrize("question, text, where", [
    ("What is the thing on the left used for?", "the thing on the left", "left"),
    ("What is the object at the top right?", "the object at the top right", "top right"),
    ("What can the middle one do?", "the middle one", "middle"),
    ("Is the left item edible?", "the left item", "left"),
    ("What purpose does the top-right item serve?", "the top-right item", "top right"),
    ("Is the object in the bottom left able to eat cheese?", "the object in the bottom left", "bottom left"),
    ("Name something that the thing at the lower left has.", "the thing at the lower left", "bottom left"),
    ("Would the leftmost item help?", "the leftmost item", "left"),
    ("What is in the upper right corner?", "the upper right corner", "top right"),
    ("What is on the left hand side?", "the left hand side", "left"),
    ("What is this thing used for?", "this thing", "(no position)"),
    ("What is the pictured item made of?", "the pictured item", "(no position)"),
])
def test_parse_references(question, text, where):
    refs = parse_references(question)
    assert len(refs) == 1
    r = refs[0]
    assert r.text == text
    assert question[r.span[0]:r.span[1]] == text
    assert r.describe() == where


@pytest.mark.parametrize("question", [
    "Which of these is made of denim?",
    "Where might you have left your keys?",   # a bare "left" is the verb: no reference
    "Where would you hang a picture?",
])
def test_no_reference(question):
    assert parse_references(question) == []


def test_positions_as_targets():
    r = parse_references("the object at the top right")[0]
    assert (r.x, r.y) == (1.0, 0.0)
    r = parse_references("the middle left item")[0]
    assert (r.x, r.y) == (0.0, 0.5)
    r = parse_references("the thing in the center")[0]
    assert (r.x, r.y) == (0.5, 0.5)
    assert parse_references("the thing on the left", GroundingConfig(spatial=False)) == []


def test_linker_never_links_position_or_pointing_words(grounder):
    g = grounder.ground("What is the thing on the left used for?")
    assert "leave" not in g.concepts and "left" not in g.concepts and "thing" not in g.concepts
    assert "use_for" in g.concepts
    assert [r.text for r in g.references] == ["the thing on the left"]
    g = grounder.ground("What is in the top right corner of the picture?")
    assert not {"top", "right", "corner", "picture"} & set(g.concepts)
    g = grounder.ground("Is the upper item a knife?")
    assert g.concepts == ["knife"]


def test_linker_keeps_concepts_that_only_share_a_word(grounder):
    # "a picture" is a concept, not the image; "top hat" holds a content word.
    assert "picture" in grounder.ground("Where would you hang a picture?").concepts
    assert "top_hat" in grounder.ground("Where do you buy a top hat?").concepts


def test_linker_without_spatial_rule_links_them():
    g = TextGrounder(make_kg(TRIPLES), GroundingConfig(spatial=False))
    assert "leave" in g.ground("What is the thing on the left used for?").concepts


def test_token_mask():
    toks = tokenize("What is the object in the picture made of?")
    mask = spatial_token_mask(toks)
    assert [t.norm for t, m in zip(toks, mask) if m] == ["object", "picture"]
    toks = tokenize("Is an object a picture?")
    assert not any(spatial_token_mask(toks))


def _e(concept, box=None, origin="image", score=1.0):
    return Entity(concept, score, origin, box=box)


# A 120 x 120 image: two objects side by side; a 2 x 2 grid; three in a column.
PAIR = [_e("bank", (10, 40, 50, 80)), _e("motorcycle", (70, 40, 110, 80))]
GRID = [_e("mailbox", (5, 5, 55, 55)), _e("ticket", (65, 5, 115, 55)),
        _e("mouse", (5, 65, 55, 115)), _e("bucket", (65, 65, 115, 115))]
COLUMN = [_e("pig", (40, 0, 80, 40)), _e("egg", (40, 40, 80, 80)), _e("jean", (40, 80, 80, 120))]


@pytest.mark.parametrize("entities, question, chosen", [
    (PAIR, "What is the thing on the left used for?", ["bank"]),
    (PAIR, "What is the right one?", ["motorcycle"]),
    (GRID, "What is the object at the top right?", ["ticket"]),
    (GRID, "Is the bottom-left item alive?", ["mouse"]),
    (GRID, "What is the thing on the left?", ["mailbox", "mouse"]),   # two left objects: both
    (COLUMN, "What can the middle one do?", ["egg"]),
    (COLUMN, "What is the topmost object?", ["pig"]),
    (COLUMN, "What is the thing at the bottom made of?", ["jean"]),
    ([_e("umbrella", (30, 30, 90, 90))], "What is this thing used for?", ["umbrella"]),
])
def test_selection_by_box(entities, question, chosen):
    sel = refer_entities(question, entities, (120, 120))
    assert sel.reason is None
    assert [sel.entities[i].concept for i in sel.selected] == chosen
    assert [e.concept for e in sel.entities if e.referred] == chosen
    # Every entity stays in the evidence with its score; the model reads the chosen ones.
    assert [e.concept for e in sel.entities] == [e.concept for e in entities]
    assert [e.score for e in sel.entities] == [e.score for e in entities]
    assert [e.concept for e in sel.focus] == chosen


def test_relative_positions_without_image_size():
    # Both objects in the right half: "the left one" is the one further left.
    ents = [_e("a", (60, 0, 70, 10)), _e("b", (100, 0, 110, 10))]
    sel = refer_entities("the thing on the left", ents, (120, 120))
    assert [e.concept for e in sel.entities if e.referred] == ["a"]
    idx, why = select_entities(parse_references("the right item")[0], ents)
    assert (idx, why) == ([1], None)


def test_unreferred_factor_keeps_others_with_lower_score():
    cfg = GroundingConfig(unreferred_factor=0.25)
    q = _e("use_for", origin="question", score=0.9)
    sel = refer_entities("the thing on the left", PAIR + [q], (120, 120), cfg)
    assert [(e.concept, e.score) for e in sel.focus] == [("bank", 1.0), ("motorcycle", 0.25), ("use_for", 0.9)]


@pytest.mark.parametrize("entities, question, reason", [
    ([_e("knife"), _e("bread")], "What is the thing on the left?", "no image entity has a box"),
    (PAIR, "What is this thing?", "2 image entities and no position"),
    ([_e("use", origin="question")], "the left item", "no image entity to choose from"),
    (PAIR, "Which of these is a vehicle?", "no spatial reference"),
    # A detector that found only the top-left and bottom-right objects: nothing is at the top right.
    ([GRID[0], GRID[3]], "What is the object at the top right?", "no image entity at the top right"),
    # A detector that missed the middle object of three: neither of the others is "the middle one".
    ([_e("apple", (0, 40, 40, 80)), _e("gift", (80, 40, 120, 80))], "What can the middle one do?",
     "no image entity at the middle"),
])
def test_unresolved_reference_changes_nothing(entities, question, reason):
    sel = refer_entities(question, entities, (120, 120))
    assert reason in sel.reason
    assert sel.selected == ()
    assert sel.focus == list(entities) and not any(e.referred for e in sel.entities)


def test_parse_position_and_box():
    assert parse_position("left") == (0.0, None)
    assert parse_position("top-right") == (1.0, 0.0)
    assert parse_position("bottom_left") == (0.0, 1.0)
    assert parse_position("center") == (0.5, 0.5)
    with pytest.raises(ValueError, match="'behind' is not a position word"):
        parse_position("behind")
    assert position_box(0.0, None, 120, 90) == (0.0, 30.0, 40.0, 60.0)
    assert position_box(1.0, 0.0, 120, 90) == (80.0, 0.0, 120.0, 30.0)
    assert position_box(0.5, 0.5, 120, 90) == (40.0, 30.0, 80.0, 60.0)


def test_config_word_sets_round_trip_and_validate():
    cfg = GroundingConfig(left_words=("Left", "port"))
    assert cfg.left_words == ("left", "port")
    assert GroundingConfig.from_dict(cfg.to_dict()) == cfg
    assert parse_references("the port item", cfg)[0].x == 0.0
    with pytest.raises(ValueError, match="left_words"):
        GroundingConfig(left_words="left")
    with pytest.raises(ValueError, match="unreferred_factor"):
        GroundingConfig(unreferred_factor=2.0)
    assert dataclasses.replace(cfg, spatial=False).spatial is False
