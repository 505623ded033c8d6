"""What the engine takes: entities as strings, positions and boxes; checks before work."""

from __future__ import annotations

import warnings

import pytest

from ravlm_graph.engine import EngineConfig, InputWarning, KnowledgeVQA, parse_entities
from ravlm_graph.types import Entity
from tests.models.knowledge_vqa.test_modeling import image, make_model, tiny  # noqa: F401  (tiny is a fixture)


@pytest.fixture(scope="module")
def engine(tiny):  # noqa: F811
    _, _, kg, retriever = tiny
    return KnowledgeVQA(make_model(tiny), EngineConfig(kg="unused", retrieval=retriever.config, detector=None), kg=kg,
                        retriever=retriever)


def _image_entities(a):
    return [(e.concept, e.box, e.referred) for e in a.entities if e.origin == "image"]


def test_plain_strings_pairs_and_positions(engine):
    a = engine.answer(image(), "what is the object used for?", entities=["apple"])
    assert _image_entities(a) == [("apple", None, True)]   # "the object": the only one
    assert a.subgraph_size > 0
    a = engine.answer(image(), "which of these can peel?", entities=[("apple", (0, 0, 8, 16)), "banana@right"])
    assert [(c, b) for c, b, _ in _image_entities(a)] == [("apple", (0.0, 0.0, 8.0, 16.0)),
                                                          ("banana", (32 / 3, 16 / 3, 16.0, 32 / 3))]
    a = engine.answer(image(), "what is the object on the right used for?", entities="apple@left,banana@right")
    assert [(c, r) for c, _, r in _image_entities(a)] == [("apple", False), ("banana", True)]
    assert a.references and "-> banana" in a.references[0]
    # Only the referred object seeds the subgraph; the other stays in the evidence.
    assert "banana" in a.subgraph.node_names
    assert [e.concept for e in a.subgraph.entities if e.origin == "image"] == ["banana"]
    d = a.to_dict()
    assert [e["concept"] for e in d["entities"] if e["referred"]] == ["banana"]


def test_entity_objects_still_work(engine):
    a = engine.answer(image(), "which of these can peel?", entities=[Entity("banana", 0.8, "image")])
    assert _image_entities(a) == [("banana", None, False)]


def test_unknown_and_mapped_names_warn_with_the_concept_used(engine):
    with pytest.warns(InputWarning, match="`bananna` is not a concept of the knowledge graph.*nearest concepts: banana"):
        a = engine.answer(image(), "which of these can peel?", entities=["apples", "bananna"])
    assert [e.concept for e in a.entities if e.origin == "image"] == ["apple", "bananna"]
    assert any("used concept `apple`" in n for n in a.notes)
    with pytest.warns(InputWarning, match="none of the given entities is a concept"):
        engine.answer(image(), "which of these can peel?", entities=["xqzzy"])


@pytest.mark.parametrize("entities, match", [
    (",", "expected one or more object names"),
    ([], "expected at least one entity, found an empty list"),
    (["apple", ""], r"entities of question 0\[1\]: expected a non-empty object name"),
    ("apple@behind", "'behind' is not a position word"),
])
def test_bad_entities_are_refused_before_the_image_is_read(engine, entities, match):
    # The image path does not exist: the entity error must come first.
    with pytest.raises(ValueError, match=match):
        engine.answer("/no/such/image.png", "which of these can peel?", entities=entities)


def test_missing_image_and_batch_shape(engine):
    with pytest.raises(FileNotFoundError):
        engine.answer("/no/such/image.png", "which of these can peel?", entities=["apple"])
    with pytest.raises(ValueError, match="expected one entity list per question"):
        engine.answer_batch([image()], ["which of these can peel?"], "apple")
    with pytest.raises(TypeError, match="expected a list of entities"):
        parse_entities(42)


def test_non_english_question_is_flagged(engine):
    with pytest.warns(InputWarning, match="looks like French"):
        a = engine.answer(image(), "Est-ce que la pomme est un fruit ?", entities=["apple"])
    assert a.notes and "English questions only" in a.notes[0]
    with pytest.warns(InputWarning, match="looks like Chinese"):
        engine.answer(image(), "苹果是水果吗？", entities=["apple"])
    with warnings.catch_warnings():
        warnings.simplefilter("error", InputWarning)
        engine.answer(image(), "which of these can peel?", entities=["apple"])


@pytest.mark.parametrize("dataset, box_missing, expected", [
    ("builtin", None, (0.0, 0.0, 16.0, 16.0)), ("fvqa", None, None),
    ("fvqa", "whole_image", (0.0, 0.0, 16.0, 16.0)), ("builtin", "none", None)])
def test_boxless_entities_as_the_model_reads_them(tiny, monkeypatch, dataset, box_missing, expected):  # noqa: F811
    _, _, kg, retriever = tiny
    eng = KnowledgeVQA(make_model(tiny), EngineConfig(kg="unused", retrieval=retriever.config, detector=None, dataset=dataset,
                                                      box_missing=box_missing), kg=kg, retriever=retriever)
    seen = []
    build = eng.features.build

    def spy(im, q, ents, *a, **k):
        seen.append(list(ents))
        return build(im, q, ents, *a, **k)

    monkeypatch.setattr(eng.features, "build", spy)
    a = eng.answer(image(), "which of these can peel?", entities=["apple", "banana@left"])
    assert [e.box for e in seen[0]] == [expected, (0.0, 16 / 3, 16 / 3, 32 / 3)]
    assert [e.box for e in a.entities if e.origin == "image"][0] is None   # the evidence shows what was given


def test_engine_config_box_missing_is_checked():
    with pytest.raises(ValueError, match="box_missing: expected"):
        EngineConfig.from_dict({"box_missing": "everywhere"})


def test_one_item_where_a_list_is_expected(engine):
    """A lone string, path or image where a list belongs is refused (it used to be split into
    characters); one entity mapping or Entity alone counts as a list of one."""
    with pytest.raises(TypeError, match="expected a list of images, found one str"):
        engine.answer_batch("scene.png", ["which of these can peel?"])
    with pytest.raises(TypeError, match="expected a list of images, found one Image"):
        engine.answer_batch(image(), ["which of these can peel?"])
    with pytest.raises(TypeError, match="expected a list of questions, found one str"):
        engine.answer_batch([image()], "which of these can peel?")
    with pytest.raises(TypeError, match="gallery, found one str"):
        engine.retrieve_images("peel", "scene.png")
    a = engine.answer(image(), "which of these can peel?", entities={"concept": "banana"})
    assert [e.concept for e in a.entities if e.origin == "image"] == ["banana"]
    a = engine.answer(image(), "which of these can peel?", entities=Entity("apple", 1.0, "image"))
    assert [e.concept for e in a.entities if e.origin == "image"] == ["apple"]
    assert engine.answer_batch([], []) == []
    for bad in (0, -1, 1.5, None, True):
        with pytest.raises(ValueError, match="top_k: expected an integer >= 1"):
            engine.answer(image(), "which of these can peel?", entities=["apple"], top_k=bad)


def test_entity_checks_its_score_and_box():
    import numpy as np

    for kwargs, match in (({"box": (60, 60, 10, 10)}, "x0 <= x1"), ({"box": "left"}, "4 numbers"),
                          ({"box": (0, 0, float("nan"), 1)}, "4 numbers"), ({"score": float("nan")}, "score"),
                          ({"score": 1.5}, "score")):
        args = {"concept": "knife", "score": 1.0, "origin": "image", **kwargs}
        with pytest.raises(ValueError, match=match):
            Entity(**args)
    e = Entity("knife", np.float32(0.5), "image", box=tuple(np.float32([1, 2, 3, 4])))  # numpy numbers are fine
    assert e.score == 0.5


def test_image_objects_unknown_to_the_graph_are_said(engine):
    with pytest.warns(InputWarning, match=r"none of the image's objects \(xqzzy\) is a concept"):
        a = engine.answer(image(), "which of these can peel?", entities=[Entity("xqzzy", 1.0, "image")])
    assert any("none of the image's objects" in n for n in a.notes)



def test_from_pretrained_argument_types(tmp_path):
    from ravlm_graph.utils.checkpoint import CheckpointError

    with pytest.raises(TypeError, match="kg: expected a KnowledgeGraph or a store folder, found int"):
        KnowledgeVQA.from_pretrained(tmp_path, kg=5)
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="kg_cache: expected a folder, found a file"):
        KnowledgeVQA.from_pretrained(tmp_path, kg_cache=tmp_path / "file")
    (tmp_path / "engine.json").mkdir()
    with pytest.raises(CheckpointError, match="engine.json is a folder"):
        KnowledgeVQA.from_pretrained(tmp_path)
    with pytest.raises(ValueError, match="EngineConfig.kg: expected a store folder"):
        EngineConfig.from_dict({"kg": 5})


def test_entities_given_to_a_model_without_the_graph_are_said(tiny):  # noqa: F811
    _, _, kg, retriever = tiny
    eng = KnowledgeVQA(make_model(tiny, fusion="none"), EngineConfig(kg="unused", retrieval=retriever.config,
                                                                     detector=None), kg=kg, retriever=retriever)
    with pytest.warns(InputWarning, match="reads no entities .* the given entities are not used"):
        a = eng.answer(image(), "which of these can peel?", entities=["apple"])
    assert a.entities == [] or all(e.origin != "image" for e in a.entities)


def test_evidence_prefers_facts_about_the_answer_and_the_image_objects():
    """Extra evidence facts are about the answer or an image object first; a fact between two
    of the question's words (``hill -CapableOf-> use_for``, from "used for") only fills in."""
    import numpy as np

    from ravlm_graph.engine import _reasoning_facts
    from ravlm_graph.retrieval.subgraph import Subgraph

    names = ["use_for", "hill", "knife", "cut", "weapon"]
    rels = ["CapableOf", "UsedFor", "IsA"]
    # edges (src, dst, rel): the question-word fact is the most relevant one
    edges = [(1, 0, 0), (2, 3, 1), (2, 4, 2)]
    sg = Subgraph(edge_index=np.array([[s for s, _, _ in edges], [d for _, d, _ in edges]]),
                  edge_type=np.array([r for _, _, r in edges]), edge_relevance=np.array([0.9, 0.5, 0.4]),
                  node_names=names, relation_names=rels, seed_mask=np.array([1, 0, 1, 0, 0], dtype=bool),
                  node_relevance=np.ones(5), origin=np.array([1, 0, 2, 0, 0]), node_id=np.arange(5))
    facts = _reasoning_facts(sg, "cut", max_paths=0, extra=2, focus=["knife"])
    assert len(facts) == 2 and not any("hill" in f for f in facts), facts
    assert _reasoning_facts(sg, "cut", max_paths=0, extra=3, focus=["knife"])[-1].startswith("a hill")
