"""Entities a user gives: lists with positions and boxes, JSON files, API values, name -> concept."""

from __future__ import annotations

import json

import pytest


from tests.fakes import make_kg
from ravlm_graph.grounding.detectors.given import (EntitySpec, coerce_entity, nearest_concepts, parse_entity_list,
                                                   read_entity_file, resolve_concept, resolve_entities)
from ravlm_graph.types import Entity


# "scissor" is the well-connected lemma, "scissors" a stray node with one edge (as in
# CN-100K); "jean" has no plural node at all; "umbrella" and "knife" are plain.
TRIPLES = [
    ("scissor", "UsedFor", "cut_paper"), ("scissor", "AtLocation", "drawer"), ("scissor", "IsA", "tool"),
    ("scissor", "HasA", "blade"), ("scissors", "RelatedTo", "cut"),
    ("jean", "MadeOf", "denim"), ("jean", "IsA", "pant"), ("jean", "AtLocation", "closet"),
    ("umbrella", "UsedFor", "keep_dry"), ("umbrella", "AtLocation", "closet"), ("umbrella", "IsA", "object"),
    ("umbrella_stand", "AtLocation", "hall"), ("knife", "UsedFor", "cut"), ("knife", "IsA", "tool"),
    ("knife", "AtLocation", "kitchen"), ("ice_cream", "AtLocation", "freezer"), ("ice_cream", "IsA", "dessert"),
    ("ice_cream", "HasProperty", "cold"),
]


@pytest.fixture(scope="module")
def kg():
    return make_kg(TRIPLES)


def test_parse_names_positions_and_boxes():
    specs = parse_entity_list("knife@left,bread@top right, apple")
    assert [(s.name, s.position, s.box) for s in specs] == [
        ("knife", (0.0, None), None), ("bread", (1.0, 0.0), None), ("apple", None, None)]
    specs = parse_entity_list("knife@10,20,60,80,bread;apple@bottom-left")
    assert [(s.name, s.box, s.position) for s in specs] == [
        ("knife", (10.0, 20.0, 60.0, 80.0), None), ("bread", None, None), ("apple", None, (0.0, 1.0))]


@pytest.mark.parametrize("text, match", [
    (",", "expected one or more object names such as 'knife,bread'.*found ','"),
    ("", "expected one or more object names"),
    ("  ", "expected one or more object names"),
    ("knife,,bread", "item 2 is empty"),
    ("knife@", "item 1 .*expected a position .* or a box"),
    ("knife@behind", "'behind' is not a position word"),
    ("knife@1,2,3", "expected a box of 4 numbers"),
    ("knife@10,20,5,80", "expected x0 <= x1"),
    ("@left", "expected an object name before '@'"),
])
def test_parse_errors_name_the_item(text, match):
    with pytest.raises(ValueError, match=match):
        parse_entity_list(text)


def test_json_file(tmp_path):
    p = tmp_path / "ents.json"
    p.write_text(json.dumps([{"concept": "knife", "box": [10, 20, 60, 80]}, {"name": "bread", "position": "right"},
                             {"label": "apple", "bbox": [0, 0, 10, 10], "score": 0.5}, "cup"]))
    specs = read_entity_file(p)
    assert [(s.name, s.box, s.position, s.score) for s in specs] == [
        ("knife", (10.0, 20.0, 60.0, 80.0), None, 1.0), ("bread", None, (1.0, None), 1.0),
        ("apple", (0.0, 0.0, 10.0, 10.0), None, 0.5), ("cup", None, None, 1.0)]
    p.write_text(json.dumps({"entities": [{"concept": "knife"}]}))
    assert [s.name for s in read_entity_file(p)] == ["knife"]


@pytest.mark.parametrize("content, match", [
    ("[{\"concept\": \"knife\"},\n {\"concept\": }]", r"ents.json:2: not valid JSON"),
    ("[]", "expected at least one entity, found an empty list"),
    ("{\"knife\": 1}", "expected a JSON list of entities"),
    ("[{\"box\": [0, 0, 1, 1]}]", r"ents.json\[0\]: expected an object with a non-empty 'concept'"),
    ("[{\"concept\": \"knife\", \"score\": 3}]", r"ents.json\[0\]: expected a score in \[0, 1\]"),
    ("[{\"concept\": \"knife\", \"position\": \"behind\"}]", r"ents.json\[0\]: .*'behind' is not a position word"),
])
def test_json_file_errors(tmp_path, content, match):
    p = tmp_path / "ents.json"
    p.write_text(content)
    with pytest.raises(ValueError, match=match):
        read_entity_file(p)
    with pytest.raises(FileNotFoundError, match="entity file not found"):
        read_entity_file(tmp_path / "missing.json")


def test_api_values():
    assert coerce_entity("knife") == EntitySpec("knife", where="entity")
    assert coerce_entity(("knife", (1, 2, 3, 4))).box == (1.0, 2.0, 3.0, 4.0)
    assert coerce_entity(("knife", "top left")).position == (0.0, 0.0)
    e = Entity("knife", 1.0, "image")
    assert coerce_entity(e) is e
    with pytest.raises(TypeError, match="expected an object name, a \\(name, box\\) pair"):
        coerce_entity(42, "entities[0]")
    with pytest.raises(ValueError, match="entities\\[1\\]: expected a non-empty object name"):
        coerce_entity(" ", "entities[1]")


def test_names_map_to_graph_concepts(kg):
    m = resolve_concept("scissors", kg)   # the lemma has the facts
    assert (m.concept, m.known) == ("scissor", True)
    assert "used concept `scissor`" in m.note and "`scissors` has 1 fact" in m.note
    m = resolve_concept("jeans", kg)      # no lemma from the dictionary: a rule-based singular
    assert (m.concept, m.known) == ("jean", True) and "not in the knowledge graph" in m.note
    m = resolve_concept("Ice Cream", kg)
    assert (m.concept, m.known, m.note) == ("ice_cream", True, None)
    m = resolve_concept("umbrella", kg)
    assert (m.concept, m.note) == ("umbrella", None)


def test_unknown_names_get_the_nearest_concepts(kg):
    m = resolve_concept("umbrela", kg)
    assert not m.known and m.concept == "umbrela"
    assert m.suggestions[0] == "umbrella"
    assert "not a concept of the knowledge graph" in m.note and "nearest concepts: umbrella" in m.note
    assert nearest_concepts("knif", kg)[0] == "knife"
    m = resolve_concept("xqzzy", kg)
    assert not m.known and m.suggestions == ()


def test_resolve_entities_positions_become_boxes(kg):
    ents, matches = resolve_entities(["knife@left", ("scissors", (0.5, 0.0, 1.0, 0.5)), "umbrella",
                                      {"concept": "knife", "position": "left"}], kg, (120, 90))
    assert [(e.concept, e.box, e.label, e.origin) for e in ents] == [
        ("knife", (0.0, 30.0, 40.0, 60.0), "knife", "image"),         # the middle-left cell
        ("scissor", (60.0, 0.0, 120.0, 45.0), "scissors", "image"),   # fractions of the image
        ("umbrella", None, "umbrella", "image")]                      # a duplicate knife@left dropped
    assert [m.concept for m in matches] == ["knife", "scissor", "umbrella", "knife"]
    with pytest.raises(ValueError, match="lies outside the 120 x 90 image"):
        resolve_entities([("knife", (200, 0, 300, 50))], kg, (120, 90))
    # a box that reaches outside is clipped to the image, with a note
    ents, matches = resolve_entities([("knife", (-10, -20, 60, 80)), ("umbrella", (0, 0, 1000, 1000))], kg, (120, 90))
    assert [e.box for e in ents] == [(0.0, 0.0, 60.0, 80.0), (0.0, 0.0, 120.0, 90.0)]
    assert all("reaches outside the 120 x 90 image; clipped" in m.note for m in matches)
    assert matches[0].known and matches[0].concept == "knife"
    with pytest.raises(ValueError, match="expected at least one entity"):
        resolve_entities([], kg, (120, 90))
