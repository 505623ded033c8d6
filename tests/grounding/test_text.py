"""Text grounding: tokenising, lemma matching, longest-match-first, spans, bad input."""

from __future__ import annotations

import pytest


from tests.fakes import make_kg
from ravlm_graph.grounding.config import GroundingConfig
from ravlm_graph.grounding import Entity, GroundingResult, TextGrounder, concept_variants, tokenize, word_forms


TRIPLES = [
    ("ice_cream", "AtLocation", "freezer"), ("ice", "IsA", "water"), ("cream", "IsA", "dairy"),
    ("fire_truck", "UsedFor", "fire"), ("truck", "IsA", "vehicle"), ("red", "IsA", "color"),
    ("magazine", "AtLocation", "bookstore"), ("read_newspaper", "HasPrerequisite", "newspaper"),
    ("watch_film", "UsedFor", "entertainment"), ("talk_to", "RelatedTo", "conversation"),
    ("person", "CapableOf", "talk_to"), ("you_get", "RelatedTo", "red"), ("keep", "RelatedTo", "store"),
    ("heifer", "IsA", "cow"), ("the", "RelatedTo", "article"), ("cup_of_coffee", "AtLocation", "cafe"),
]


@pytest.fixture(scope="module")
def grounder():
    return TextGrounder(make_kg(TRIPLES))


def test_entity_type_is_frozen_and_validated():
    e = Entity("apple", 0.9, "image", box=(0.0, 0.0, 1.0, 1.0), label="Apple")
    with pytest.raises(Exception):
        e.score = 1.0  # frozen
    with pytest.raises(ValueError, match="origin"):
        Entity("apple", 1.0, "caption")
    with pytest.raises(ValueError, match="concept"):
        Entity("", 1.0, "question")
    with pytest.raises(ValueError, match="span"):
        Entity("apple", 1.0, "question", span=(5, 2))


def test_tokenize_offsets_and_possessive():
    toks = tokenize("Where does a heifer's master live?")
    assert [t.norm for t in toks] == ["where", "does", "a", "heifer", "master", "live"]
    h = toks[3]
    assert (h.start, h.end, h.text) == (13, 21, "heifer's")


def test_word_forms_lemmas():
    assert word_forms("trucks") == ("trucks", "truck")
    assert "read" in word_forms("reading")
    assert word_forms("trucks", lemmatize=False) == ("trucks",)
    assert "read_newspaper" in concept_variants("reading_newspaper")


def test_longest_match_first_with_spans(grounder):
    q = "Where do you keep ice cream?"
    res = grounder.ground(q)
    assert isinstance(res, GroundingResult) and res.reason is None
    by = {e.concept: e for e in res}
    assert by["ice_cream"].span == (18, 27) and q[18:27] == "ice cream"
    assert by["ice_cream"].origin == "question" and by["ice_cream"].label == "ice cream"
    # nested words are kept, with a lower score than the longest match
    assert by["ice"].score < by["ice_cream"].score
    assert "keep" in by and "the" not in by


def test_nested_off_and_lemma_multiword(grounder):
    g = TextGrounder(grounder.kg, GroundingConfig(keep_nested=False))
    assert g.ground("The red fire trucks").concepts == ["red", "fire_truck"]
    assert "magazine" in g.ground("Where would you find magazines?").concepts
    assert "read_newspaper" in g.ground("Reading newspaper is one way to practice what?").concepts


def test_determiners_dropped_inside_ngrams(grounder):
    res = grounder.ground("Janet was watching the film because she liked it")
    e = next(e for e in res if e.concept == "watch_film")
    assert e.label == "watching the film"
    assert "cup_of_coffee" in grounder.ground("a great cup of coffee").concepts


def test_stop_words_and_function_word_phrases(grounder):
    # "you get" starts with a pronoun: not a concept; "talk to" ends with a particle: fine
    res = grounder.ground("What do you get when you talk to the man?")
    assert "you_get" not in res.concepts
    assert "talk_to" in res.concepts
    assert "the" not in grounder.ground("the the the").concepts


def test_general_concepts_demoted_or_dropped(grounder):
    p = next(e for e in grounder.ground("a person keeps it") if e.concept == "person")
    assert p.score == pytest.approx(0.3)
    g = TextGrounder(grounder.kg, GroundingConfig(drop_general=True))
    assert "person" not in g.ground("a person keeps it").concepts


def test_no_match_across_punctuation(grounder):
    assert "ice_cream" not in grounder.ground("I like ice. Cream is sweet").concepts


def test_bad_input(grounder):
    assert grounder.ground("").reason == "empty question"
    assert grounder.ground("   ").entities == ()
    res = grounder.ground("what is it?")
    assert len(res) == 0 and "no concept" in res.reason
    with pytest.raises(TypeError, match="str"):
        grounder.ground(None)


def test_config_validation():
    with pytest.raises(ValueError, match="max_ngram"):
        GroundingConfig(max_ngram=0)
    with pytest.raises(ValueError, match="general_concepts"):
        GroundingConfig(general_concepts="person")
    c = GroundingConfig(max_ngram=3)
    assert GroundingConfig.from_dict(c.to_dict()) == c
