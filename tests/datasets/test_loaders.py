import io
import json
from pathlib import Path
from types import MappingProxyType

import pytest

from ravlm_graph.datasets.loaders import UnknownRelationWarning, fvqa_relation, unknown_relations, load_aokvqa, load_csqa, load_fvqa, load_fvqa_kb_facts, load_lxmert, load_vqa
from ravlm_graph.types import Entity, Fact, VQARecord, canonical_relation, normalize_concept

FIX = Path(__file__).resolve().parents[1] / "fixtures" / "vqa"
FVQA_Q = FIX / "fvqa_train_split0_questions.json"
FVQA_T = FIX / "fvqa_train_split0_fact_triples.json"
FVQA_KB = FIX / "fvqa_conceptnet_facts.tsv"
FVQA_MORE_Q = FIX / "fvqa_more_relations_questions.json"
FVQA_MORE_T = FIX / "fvqa_more_relations_fact_triples.json"
FVQA_ALTERED_T = FIX / "fvqa_altered_relations_fact_triples.json"
OKVQA_Q = FIX / "okvqa_OpenEnded_mscoco_val2014_questions.json"
LXMERT = FIX / "okvqa_lxmert_format_testdev.json"
AOKVQA = FIX / "aokvqa_v1p0_val.json"
CSQA_TRAIN = FIX / "csqa_train.jsonl"
CSQA_VALID = FIX / "csqa_valid.jsonl"


def _write(tmp_path: Path, name: str, data) -> Path:
    p = tmp_path / name
    p.write_text(data if isinstance(data, str) else json.dumps(data), encoding="utf-8")
    return p


def _fvqa_raw():
    return json.loads(FVQA_Q.read_text()), json.loads(FVQA_T.read_text())


# --------------------------------------------------------------------------- records

def test_fact_verbalize_reads_as_english():
    assert Fact("apple", "UsedFor", "eat").verbalize() == "an apple is used for eating"
    assert Fact("makeup_cabinet", "AtLocation", "bedroom").verbalize() == "makeup cabinet can be found in a bedroom"
    assert Fact("pizza", "IsA", "italian_dish").verbalize() == "pizza is an italian dish"
    assert Fact("lizard", "CapableOf", "sun_itself").verbalize() == "a lizard can sun itself"
    assert Fact("person", "Desires", "time_alone").verbalize() == "person wants time alone"
    assert Fact("hot", "Antonym", "cold").verbalize() == "hot is the opposite of cold"
    assert Fact("whale", "MoreBig", "dolphin").verbalize() == "whale is bigger than a dolphin"
    assert Fact("balloon", "LessManeuverable", "airplane").verbalize() == \
        "a balloon is less maneuverable than an airplane"
    # No template: the relation's CamelCase words.
    assert Fact("paris", "ExternalURL", "x").verbalize() == "paris external url x"
    # ConceptNet's surface text wins when the fact carries one; it is not part of equality.
    f = Fact("knife", "UsedFor", "cut", surface="[[A knife]] is used for [[cutting bread]]")
    assert f.verbalize() == "A knife is used for cutting bread" and f == Fact("knife", "UsedFor", "cut")


def test_fact_equality_ignores_source_and_rejects_empty():
    assert Fact("a", "IsA", "b", source="fvqa") == Fact("a", "IsA", "b")
    assert hash(Fact("a", "IsA", "b", source="fvqa")) == hash(Fact("a", "IsA", "b"))
    with pytest.raises(ValueError, match="expected a non-empty string for tail, found ''"):
        Fact("a", "IsA", "")


def test_relation_and_concept_normalisation():
    assert canonical_relation("/r/UsedFor") == "UsedFor"
    assert canonical_relation("atlocation") == "AtLocation"
    assert canonical_relation("Has Property") == "HasProperty"
    assert canonical_relation("transnbhd") is None
    assert normalize_concept("  Makeup  Cabinet ") == "makeup_cabinet"
    assert normalize_concept("/c/en/ice_cream/n") == "ice_cream"
    assert fvqa_relation("transnbhd") == ("IsA", "dbpedia")
    assert fvqa_relation("big#f") == ("MoreBig", "webchild")
    assert fvqa_relation("natural#r") == ("LessNatural", "webchild")
    assert fvqa_relation("UsedFor") == ("UsedFor", "conceptnet")
    assert fvqa_relation("capital_of") is None


@pytest.mark.parametrize("name, expected", [
    # ConceptNet relations in any spelling
    ("UsedFor", ("UsedFor", "conceptnet")), ("/r/UsedFor", ("UsedFor", "conceptnet")),
    ("used_for", ("UsedFor", "conceptnet")), ("Used For", ("UsedFor", "conceptnet")),
    ("used-for", ("UsedFor", "conceptnet")), ("http://conceptnet.io/r/AtLocation", ("AtLocation", "conceptnet")),
    ("is_a", ("IsA", "conceptnet")), ("NotCapableOf", ("NotCapableOf", "conceptnet")),
    # DBpedia: category membership and every taxonomic rank, with or without a prefix
    ("transnbhd", ("IsA", "dbpedia")), ("animal_class", ("IsA", "dbpedia")),
    ("animal_kingdom", ("IsA", "dbpedia")), ("animal_phylum", ("IsA", "dbpedia")),
    ("animal_order", ("IsA", "dbpedia")), ("animal_genus", ("IsA", "dbpedia")),
    ("animal_species", ("IsA", "dbpedia")), ("plant_subfamily", ("IsA", "dbpedia")),
    ("dbo:family", ("IsA", "dbpedia")), ("http://dbpedia.org/ontology/superorder", ("IsA", "dbpedia")),
    ("http://purl.org/dc/terms/subject", ("IsA", "dbpedia")),
    # WebChild comparatives, both directions, any case, multi-word adjectives
    ("big#f", ("MoreBig", "webchild")), ("natural#r", ("LessNatural", "webchild")),
    ("Expensive#R", ("LessExpensive", "webchild")), ("well_known#f", ("MoreWellKnown", "webchild")),
    ("more_big", ("MoreBig", "webchild")), ("LessNatural", ("LessNatural", "webchild")),
    # unknown
    ("capital_of", None), ("conservation_status", None), ("", None), ("#f", None),
])
def test_fvqa_relation_by_rule(name, expected):
    assert fvqa_relation(name) == expected


def test_load_fvqa_more_real_relations():
    recs = {r.qid: r for r in load_fvqa(FVQA_MORE_Q, FVQA_MORE_T)}
    assert recs["4314"].facts[0] == Fact("giraffe", "IsA", "giraffidae")
    assert recs["4314"].facts[0].source == "dbpedia"
    assert recs["4314"].answer_concepts == ("giraffidae",)
    assert recs["1071"].facts[0] == Fact("snail", "IsA", "gastropoda")
    assert recs["875"].facts[0] == Fact("motorcycle", "MoreCool", "car")
    assert recs["699"].facts[0] == Fact("motorcycle", "LessStable", "car")
    assert recs["3518"].facts[0] == Fact("pizza", "IsA", "italian_design")
    assert recs["3513"].facts[0] == Fact("lizard", "CapableOf", "sun_itself_on_rock")
    assert all(r.extra["relation_known"] for r in recs.values())
    assert unknown_relations(recs.values()) == {}


def test_load_fvqa_unknown_relation_is_counted_not_fatal():
    with pytest.warns(UnknownRelationWarning,
                      match=r"1 of 9 records .*'conservation_status' x1 \(first at record '1071'\)"):
        altered = {r.qid: r for r in load_fvqa(FVQA_MORE_Q, FVQA_ALTERED_T)}
    plain = {r.qid: r for r in load_fvqa(FVQA_MORE_Q, FVQA_MORE_T)}
    assert len(altered) == 9
    # Other spellings of known relations give the same records.
    for qid in ("4314", "3512", "2689"):
        assert altered[qid].facts == plain[qid].facts and altered[qid].extra["relation_known"]
    # The unknown one is kept: same ends, answer and entities; its relation as written.
    u = altered["1071"]
    assert u.extra["relation_known"] is False and u.extra["fvqa_relation"] == "conservation_status"
    assert u.facts[0] == Fact("snail", "ConservationStatus", "gastropoda") and u.facts[0].source == "unknown"
    assert u.answer_concepts == plain["1071"].answer_concepts
    assert u.entities == plain["1071"].entities
    assert unknown_relations(altered.values()) == {"conservation_status": 1}


def test_record_is_immutable_and_validated():
    scores = {"dog": 1.0}
    r = VQARecord(qid="1", question="q?", dataset="x", split="train", answers=["dog"], answer_scores=scores)
    scores["cat"] = 1.0
    assert dict(r.answer_scores) == {"dog": 1.0}
    assert isinstance(r.answer_scores, MappingProxyType)
    assert r.answers == ("dog",)
    with pytest.raises(TypeError):
        r.answer_scores["cow"] = 1.0  # type: ignore[index]
    with pytest.raises(ValueError, match=r"x record '1': expected correct_choice in 0..1, found 2"):
        VQARecord(qid="1", question="q?", dataset="x", split="train", choices=("a", "b"), correct_choice=2)
    with pytest.raises(ValueError, match="expected one of"):
        Entity("dog", 1.0, "caption")


def test_load_image(tmp_path):
    from PIL import Image

    Image.new("L", (3, 2), color=7).save(tmp_path / "ok.png")
    (tmp_path / "bad.png").write_bytes(b"not an image")
    rec = VQARecord(qid="7", question="q", dataset="fvqa", split="train", image_path=tmp_path / "ok.png")
    im = rec.load_image()
    assert im.mode == "RGB" and im.size == (3, 2) and im.getpixel((0, 0)) == (7, 7, 7)
    with pytest.raises(ValueError, match=r"fvqa record '7': cannot decode image .*bad\.png"):
        VQARecord(qid="7", question="q", dataset="fvqa", split="train",
                  image_path=tmp_path / "bad.png").load_image()
    with pytest.raises(FileNotFoundError, match=r"fvqa record '7': image file not found: .*gone\.png"):
        VQARecord(qid="7", question="q", dataset="fvqa", split="train",
                  image_path=str(tmp_path / "gone.png")).load_image()
    with pytest.raises(FileNotFoundError, match="fvqa record '7': no image path"):
        VQARecord(qid="7", question="q", dataset="fvqa", split="train").load_image()


# --------------------------------------------------------------------------- FVQA

def test_load_fvqa_real_record_fields():
    recs = load_fvqa(FVQA_Q, FVQA_T, kb_facts=FVQA_KB)
    assert [r.qid for r in recs] == ["271", "272", "273", "96", "2039", "2688", "3516", "5764", "937", "171"]
    r = recs[1]
    assert r.qid == "272"
    assert r.question == "What is the object shown in this image used for"
    assert r.dataset == "fvqa" and r.split == "train"
    assert r.answers == ("coloring the lips",)
    assert dict(r.answer_scores) == {"coloring the lips": 1.0}
    assert r.answer_concepts == ("color_lip",)  # ans_source "kb": the fact's other end
    assert r.facts == (Fact("lipstick", "UsedFor", "color_lip"),)
    assert r.facts[0].source == "conceptnet"
    assert r.facts[0].verbalize() == "lipstick is used for coloring lip"
    assert r.image_id == "ILSVRC2012_test_00000444.JPEG" and r.image_path is None
    assert r.choices is None and r.correct_choice is None
    assert dict(r.extra) == {
        "kb_source": "conceptnet",
        "ans_source": "kb",
        "visual_concept_type": "obj",
        "fact_surface": "[[Lipstick]] is for [[coloring the lips]]",
        "fact_id": "conceptnet/e/18b413dee0ebe3cadef337f364baa61649f36b2a",
        "fvqa_relation": "UsedFor",
        "relation_known": True,
        "visual_concept": "lipstick",
        "fact_in_kb": True,
    }


def test_load_fvqa_relations_and_visual_concepts():
    by_id = {r.qid: r for r in load_fvqa(FVQA_Q, FVQA_T)}
    # DBpedia category -> IsA, "Category:" dropped, lower case.
    assert by_id["271"].facts == (Fact("lipstick", "IsA", "cosmetics"),)
    assert by_id["271"].facts[0].source == "dbpedia"
    assert by_id["937"].facts == (Fact("snow", "IsA", "cold"),)
    assert by_id["937"].answer_concepts == ("cold",)
    assert by_id["5764"].facts == (Fact("goldfish", "IsA", "actinopterygii"),)
    # WebChild comparatives; spaces -> underscores.
    assert by_id["96"].facts == (Fact("whale", "MoreBig", "dolphin"),)
    assert by_id["2039"].facts == (Fact("sweet_potato", "LessNatural", "banana"),)
    # ans_source "image": the answer is the visual concept (here the tail).
    assert by_id["2039"].extra["visual_concept"] == "banana"
    assert by_id["2039"].answer_concepts == ("banana",)
    # "kb" answer "bigger" matches neither end: the question names "dolphin", so whale is seen;
    # the gold answer is the choice the question offers, not the fact's other end.
    assert by_id["96"].extra["visual_concept"] == "whale"
    assert by_id["96"].answer_concepts == ("bigger",)
    # "people" vs "person": tie broken by the question naming "male or female".
    assert by_id["2688"].extra["visual_concept"] == "person"
    assert by_id["3516"].extra["visual_concept"] == "cheese"  # head, though "pizza" comes first in the surface
    assert by_id["171"].facts == (Fact("clock", "UsedFor", "telling_time"),)


def test_load_fvqa_given_entities_are_deterministic():
    recs = load_fvqa(FVQA_Q, FVQA_T, distractors=4, seed=0)
    pool = {r.extra["visual_concept"] for r in recs}
    assert pool == {"lipstick", "whale", "banana", "person", "cheese", "goldfish", "snow", "clock"}
    for r in recs:
        names = [e.concept for e in r.entities]
        assert all(e.origin == "image" for e in r.entities)
        assert len(names) == 5 and len(set(names)) == 5
        gold = r.extra["visual_concept"]
        assert gold in names
        fact_ends = {r.facts[0].head, r.facts[0].tail}
        assert set(names) - {gold} <= pool - fact_ends
    again = load_fvqa(FVQA_Q, FVQA_T, distractors=4, seed=0)
    assert [r.entities for r in again] == [r.entities for r in recs]
    other_seed = load_fvqa(FVQA_Q, FVQA_T, distractors=4, seed=1)
    assert [r.entities for r in other_seed] != [r.entities for r in recs]
    # The gold concept is not always in the same slot.
    assert len({[e.concept for e in r.entities].index(r.extra["visual_concept"]) for r in recs}) > 1


def test_load_fvqa_distractors_from_vocab_and_zero():
    vocab = ["Apple", "banana", "lipstick", "color lip", "Fire Truck"]
    r = load_fvqa(FVQA_Q, FVQA_T, distractors=2, concept_vocab=vocab)[1]
    names = [e.concept for e in r.entities]
    assert len(names) == 3 and "lipstick" in names
    assert set(names) - {"lipstick"} <= {"apple", "banana", "fire_truck"}
    # More distractors asked than available: all of them.
    r = load_fvqa(FVQA_Q, FVQA_T, distractors=10, concept_vocab=vocab)[1]
    assert sorted(e.concept for e in r.entities) == ["apple", "banana", "fire_truck", "lipstick"]
    r = load_fvqa(FVQA_Q, FVQA_T, distractors=0)[1]
    assert r.entities == (Entity("lipstick", 1.0, "image"),)


def test_load_fvqa_subset_mapping_file_objects_and_images(tmp_path):
    qs, ts = _fvqa_raw()
    recs = load_fvqa({"273": qs["273"]}, {"273": ts["273"]}, images_root=tmp_path)
    assert len(recs) == 1 and recs[0].split == "unknown"
    assert recs[0].facts == (Fact("lipstick", "AtLocation", "makeup_cabinet"),)
    assert recs[0].entities == (Entity("lipstick", 1.0, "image"),)  # no other concept to draw from
    assert recs[0].image_path == tmp_path / "ILSVRC2012_test_00000444.JPEG"
    with pytest.raises(FileNotFoundError, match="fvqa record '273': image file not found"):
        recs[0].load_image()
    with open(FVQA_Q, "rb") as fq, open(FVQA_T, encoding="utf-8") as ft:
        from_files = load_fvqa(fq, ft)
    assert [r.facts for r in from_files] == [r.facts for r in load_fvqa(FVQA_Q, FVQA_T)]


def test_load_fvqa_without_fact_triples_uses_surface_spans():
    r = load_fvqa(FVQA_Q)[2]
    assert r.qid == "273" and r.facts == ()
    assert r.extra["visual_concept"] == "lipstick"
    assert r.answer_concepts == ("makeup_cabinet",)


def test_load_fvqa_kb_facts():
    facts = load_fvqa_kb_facts(FVQA_KB)
    assert len(facts) == 8
    assert facts[0] == Fact("360_backflip", "RelatedTo", "skateboard")
    assert Fact("clock", "UsedFor", "telling_time") in facts  # "telling time" in the file
    assert load_fvqa_kb_facts(io.StringIO("IsA\tdog\tanimal\n")) == [Fact("dog", "IsA", "animal")]


def test_load_fvqa_kb_facts_errors(tmp_path):
    with pytest.raises(ValueError, match=r"kb\.tsv: line 2: expected 3 tab-separated fields .*found 2"):
        load_fvqa_kb_facts(_write(tmp_path, "kb.tsv", "relation\thead\ttail\nIsA\tdog\n"))
    with pytest.raises(ValueError, match=r"kb\.tsv: line 1: unknown relation 'IsKindOf'"):
        load_fvqa_kb_facts(_write(tmp_path, "kb.tsv", "IsKindOf\tdog\tanimal\n"))


def test_load_fvqa_errors(tmp_path):
    qs, ts = _fvqa_raw()
    with pytest.raises(ValueError, match=r"questions\.json: malformed JSON at line 1 column 2"):
        load_fvqa(_write(tmp_path, "questions.json", "{oops"))
    rec = {k: v for k, v in qs["272"].items() if k != "answer"}
    rec["question_id"] = "12345"
    with pytest.raises(ValueError, match=r"^questions\.json: record '12345': missing field 'answer'$"):
        load_fvqa(_write(tmp_path, "questions.json", {"12345": rec}))
    with pytest.raises(ValueError, match=r"questions\.json: record '272': field 'question': expected str, found int"):
        load_fvqa(_write(tmp_path, "questions.json", {"272": {**qs["272"], "question": 5}}))
    with pytest.raises(ValueError, match=r"record '999': field 'question_id' is '272', expected '999'"):
        load_fvqa(_write(tmp_path, "questions.json", {"999": qs["272"]}))
    q = _write(tmp_path, "questions.json", {"272": qs["272"]})
    with pytest.raises(ValueError, match=r"facts\.json: record '272': missing supporting fact"):
        load_fvqa(q, _write(tmp_path, "facts.json", {"273": ts["273"]}))
    with pytest.raises(ValueError, match=r"facts\.json: record '272': expected \[head, relation, tail\]"):
        load_fvqa(q, _write(tmp_path, "facts.json", {"272": ["lipstick", "UsedFor"]}))
    with pytest.raises(ValueError, match="expected a JSON object keyed by question id, found list"):
        load_fvqa(_write(tmp_path, "questions.json", [1]))
    with pytest.raises(ValueError, match="expected distractors >= 0, found -1"):
        load_fvqa(q, distractors=-1)


# --------------------------------------------------------------------------- VQA / OK-VQA

def _okvqa_annotations():
    # Synthetic annotations in the official format (the real OK-VQA file is not in the fixtures).
    answers = ["Racing", "racing", "motocross", "motocross", "racing", "racing",
               "riding", "riding", "dirt bike racing", "dirt bike racing"]
    return {"annotations": [
        {"question_id": 2971475, "image_id": 297147, "question_type": "other", "answer_type": "other",
         "answers": [{"answer": a, "raw_answer": a, "answer_confidence": "yes", "answer_id": i + 1}
                     for i, a in enumerate(answers)]},
        {"question_id": 3397615, "image_id": 339761, "question_type": "other", "answer_type": "other",
         "answers": [{"answer": "vine", "answer_id": i + 1} for i in range(10)]},
        {"question_id": 3575865, "image_id": 357586, "answers": [{"answer": "teddy bear"}] * 10},
        {"question_id": 949225, "image_id": 94922, "answers": [{"answer": "mouth"}] * 10},
    ]}


def test_load_vqa_questions_only():
    recs = load_vqa(OKVQA_Q, images_root="/images/val2014")
    assert [r.qid for r in recs] == ["2971475", "3397615", "3575865", "949225"]
    r = recs[0]
    assert (r.question, r.dataset, r.split, r.image_id) == ("What sport can you use this for?", "okvqa",
                                                            "val2014", "297147")
    assert r.image_path == Path("/images/val2014/COCO_val2014_000000297147.jpg")
    assert r.answers == () and dict(r.answer_scores) == {}


def test_load_vqa_with_annotations(tmp_path):
    recs = load_vqa(OKVQA_Q, _write(tmp_path, "ann.json", _okvqa_annotations()))
    r = recs[0]
    assert r.answers == ("Racing", "racing", "motocross", "motocross", "racing", "racing",
                         "riding", "riding", "dirt bike racing", "dirt bike racing")
    # racing: 4 humans -> 1.0; the others 2 humans each -> 0.6.
    assert dict(r.answer_scores) == pytest.approx(
        {"racing": 1.0, "motocross": 0.6, "riding": 0.6, "dirt bike racing": 0.6})
    assert r.answer_concepts == ("racing", "motocross", "riding", "dirt_bike_racing")
    assert dict(r.extra) == {"question_type": "other", "answer_type": "other"}
    assert dict(recs[1].answer_scores) == {"vine": 1.0}


def test_load_vqa_errors(tmp_path):
    ann = _okvqa_annotations()
    with pytest.raises(ValueError, match=r"q\.json: expected a JSON object with a 'questions' list"):
        load_vqa(_write(tmp_path, "q.json", {"questions": {}}))
    with pytest.raises(ValueError, match=r"q\.json: malformed JSON at line 2"):
        load_vqa(_write(tmp_path, "q.json", '{"questions": [\n}'))
    with pytest.raises(ValueError, match=r"q\.json: record '5': missing field 'image_id'"):
        load_vqa(_write(tmp_path, "q.json", {"questions": [{"question_id": 5, "question": "why?"}]}))
    with pytest.raises(ValueError, match=r"ann\.json: record '949225': missing annotation"):
        load_vqa(OKVQA_Q, _write(tmp_path, "ann.json", {"annotations": ann["annotations"][:3]}))
    broken = json.loads(json.dumps(ann))
    del broken["annotations"][1]["answers"]
    with pytest.raises(ValueError, match=r"ann\.json: record '3397615': missing field 'answers'"):
        load_vqa(OKVQA_Q, _write(tmp_path, "ann.json", broken))
    broken = json.loads(json.dumps(ann))
    broken["annotations"][1]["answers"][3] = {"answer_id": 4}
    with pytest.raises(ValueError, match=r"ann\.json: record '3397615': answer 3: missing field 'answer'"):
        load_vqa(OKVQA_Q, _write(tmp_path, "ann.json", broken))


# --------------------------------------------------------------------------- LXMERT format

def test_load_lxmert_real_record():
    recs = load_lxmert(LXMERT, images_root="/coco")
    assert len(recs) == 4
    r = recs[1]
    assert (r.qid, r.question, r.split, r.dataset) == ("3397615", "Name the type of plant this is?",
                                                      "val2014", "okvqa")
    assert r.answers == ("vine", "climbing", "looks like some kind of ivy", "ficus")
    assert dict(r.answer_scores) == {"vine": 1.0, "climbing": 0.667, "looks like some kind of ivy": 0.667,
                                     "ficus": 0.667}
    assert r.image_id == "COCO_val2014_000000339761"
    assert r.image_path == Path("/coco/COCO_val2014_000000339761.jpg")
    assert dict(r.extra) == {"class": 8}


def test_load_lxmert_unlabelled_and_errors(tmp_path):
    rec = {"question_id": 1, "sent": "what?", "img_id": "COCO_test2015_000000000001"}
    recs = load_lxmert(_write(tmp_path, "test.json", [rec]))
    assert recs[0].answers == () and recs[0].split == "test2015"
    labelled = {**rec, "question_id": 2, "label": {"dog": 1}}
    with pytest.raises(ValueError, match=r"lx\.json: record '1': missing field 'label'"):
        load_lxmert(_write(tmp_path, "lx.json", [labelled, rec]))
    # the first record without its label: an error too, not a file read as unlabelled
    with pytest.raises(ValueError, match=r"lx\.json: record '1': missing field 'label'"):
        load_lxmert(_write(tmp_path, "lx.json", [rec, labelled]))
    with pytest.raises(ValueError, match=r"lx\.json: record '2': field 'label': expected a score in \[0, 1\] "
                                         r"for 'dog', found 3"):
        load_lxmert(_write(tmp_path, "lx.json", [{**labelled, "label": {"dog": 3}}]))
    with pytest.raises(ValueError, match=r"lx\.json: expected a JSON list of records, found dict"):
        load_lxmert(_write(tmp_path, "lx.json", {}))


# --------------------------------------------------------------------------- A-OKVQA

def test_load_aokvqa_real_record():
    recs = load_aokvqa(AOKVQA, images_root="/coco/val2017")
    assert len(recs) == 3
    r = recs[1]
    assert r.qid == "2Aq5RiEn7eyfWjEbpuYT2o"
    assert r.question == "Which number birthday is probably being celebrated?"
    assert (r.dataset, r.split, r.image_id) == ("aokvqa", "val", "377368")
    assert r.image_path == Path("/coco/val2017/000000377368.jpg")
    assert r.choices == ("one", "ten", "nine", "thirty") and r.correct_choice == 3
    assert r.correct_answer == "thirty"
    assert r.answers == ("thirty", "30th", "thirty", "thirty", "thirty", "30th", "thirty", "thirty", "thirty",
                         "thirty")
    # thirty: 8 humans -> 1.0; 30th: 2 humans -> (2 * 1/3 + 8 * 2/3) / 10 = 0.6
    assert dict(r.answer_scores) == pytest.approx({"thirty": 1.0, "30th": 0.6})
    assert r.answer_concepts == ("thirty", "30th")
    assert r.rationales[1] == "The cake says 30."
    assert len(r.rationales) == 3
    assert dict(r.extra) == {"difficult_direct_answer": False}


def test_load_aokvqa_test_split_and_errors(tmp_path):
    base = json.loads(AOKVQA.read_text())[0]
    test_rec = {k: v for k, v in base.items()
                if k not in ("correct_choice_idx", "direct_answers", "rationales")} | {"split": "test"}
    r = load_aokvqa(_write(tmp_path, "t.json", [test_rec]))[0]
    assert r.correct_choice is None and r.answers == () and r.rationales == ()
    assert r.choices == ("toothpick", "food", "popsicle stick", "cigarette")
    val_rec = {k: v for k, v in base.items() if k != "correct_choice_idx"}
    with pytest.raises(ValueError, match=r"a\.json: record '22jbM6gDxdaMaunuzgrsBB': missing field "
                                         r"'correct_choice_idx'"):
        load_aokvqa(_write(tmp_path, "a.json", [val_rec]))
    with pytest.raises(ValueError, match=r"record '22jbM6gDxdaMaunuzgrsBB': field 'correct_choice_idx': "
                                         r"expected 0\.\.3, found 4"):
        load_aokvqa(_write(tmp_path, "a.json", [{**base, "correct_choice_idx": 4}]))
    with pytest.raises(ValueError, match=r"field 'direct_answers': expected a list of strings"):
        load_aokvqa(_write(tmp_path, "a.json", [{**base, "direct_answers": [1, 2]}]))
    with pytest.raises(ValueError, match=r"a\.json: record 0: missing field 'question_id'"):
        load_aokvqa(_write(tmp_path, "a.json", [{"question": "q"}]))


# --------------------------------------------------------------------------- CommonsenseQA

def test_load_csqa_real_records():
    recs = load_csqa(CSQA_TRAIN)
    assert len(recs) == 3
    r = recs[1]
    assert r.qid == "61fe6e879ff18686d7552425a36344c8"
    assert r.question == "Sammy wanted to go to where the people were.  Where might he go?"
    assert (r.dataset, r.split) == ("csqa", "train")
    assert r.choices == ("race track", "populated areas", "the desert", "apartment", "roadblock")
    assert r.correct_choice == 1 and r.answers == ("populated areas",)
    assert r.answer_concepts == ("populated_areas",)
    assert r.question_concept == "people"
    assert r.entities == (Entity("people", 1.0, "question"),)
    assert r.image_path is None and r.image_id is None
    v = load_csqa(CSQA_VALID)[0]
    assert v.split == "valid"
    assert v.question_concept == "revolving_door"
    assert v.extra["question_concept_raw"] == "revolving door"


def _csqa_line(**over):
    rec = {"answerKey": "B", "id": "q1", "question": {
        "question_concept": "dog", "stem": "Where is a dog?",
        "choices": [{"label": lab, "text": t} for lab, t in zip("ABCDE", ["moon", "kennel", "sea", "sky", "sun"])]}}
    rec.update(over)
    return json.dumps(rec)


def test_load_csqa_unlabelled_test_file():
    line = json.loads(_csqa_line())
    del line["answerKey"]
    recs = load_csqa(io.StringIO(json.dumps(line) + "\n\n" + json.dumps(line) + "\n"), split="test")
    assert len(recs) == 2
    assert recs[0].correct_choice is None and recs[0].answers == () and recs[0].split == "test"
    assert recs[0].choices == ("moon", "kennel", "sea", "sky", "sun")


def test_load_csqa_errors(tmp_path):
    with pytest.raises(ValueError, match=r"c\.jsonl: line 2: malformed JSON at column 2"):
        load_csqa(_write(tmp_path, "c.jsonl", _csqa_line() + "\n{bad\n"))
    with pytest.raises(ValueError, match=r"c\.jsonl: line 1: record 'q1': field 'answerKey': expected one of "
                                         r"\['A', 'B', 'C', 'D', 'E'\], found 'F'"):
        load_csqa(_write(tmp_path, "c.jsonl", _csqa_line(answerKey="F")))
    unlabelled = json.loads(_csqa_line(id="q2"))
    del unlabelled["answerKey"]
    with pytest.raises(ValueError, match=r"c\.jsonl: line 2: record 'q2': missing field 'answerKey'"):
        load_csqa(_write(tmp_path, "c.jsonl", _csqa_line() + "\n" + json.dumps(unlabelled)))
    # the first record without its answerKey and a later one with it: an error naming both
    with pytest.raises(ValueError, match=r"line 2: record 'q1': has an 'answerKey' but c\.jsonl: line 1: record "
                                         r"'q2' has none"):
        load_csqa(_write(tmp_path, "c.jsonl", json.dumps(unlabelled) + "\n" + _csqa_line()))
    bad = json.loads(_csqa_line())
    bad["question"]["choices"][1]["label"] = "X"
    with pytest.raises(ValueError, match=r"record 'q1': expected choices labelled \['A', 'B', 'C', 'D', 'E'\], "
                                         r"found \['A', 'X', 'C', 'D', 'E'\]"):
        load_csqa(_write(tmp_path, "c.jsonl", json.dumps(bad)))
    bad = json.loads(_csqa_line())
    del bad["question"]["question_concept"]
    with pytest.raises(ValueError, match=r"c\.jsonl: line 1: record 'q1': missing field 'question_concept'"):
        load_csqa(_write(tmp_path, "c.jsonl", json.dumps(bad)))


def test_load_fvqa_empty_question_or_answer_names_file_and_record(tmp_path):
    data = json.loads(FVQA_Q.read_text())
    qid = next(iter(data))
    for key in ("question", "answer"):
        bad = {k: dict(v) for k, v in data.items()}
        bad[qid][key] = " "
        p = tmp_path / "q.json"
        p.write_text(json.dumps(bad))
        with pytest.raises(ValueError, match=rf"q\.json: record '{qid}': field '{key}' is empty"):
            load_fvqa(p, FVQA_T)


def test_load_csqa_rejects_empty_text_and_warns_on_duplicates_and_fewer_choices(tmp_path, caplog):
    bad = json.loads(_csqa_line())
    bad["question"]["stem"] = "  "
    with pytest.raises(ValueError, match=r"c\.jsonl: line 1: record 'q1': field 'stem' is empty"):
        load_csqa(_write(tmp_path, "c.jsonl", json.dumps(bad)))
    bad = json.loads(_csqa_line())
    bad["question"]["choices"][2]["text"] = ""
    with pytest.raises(ValueError, match=r"c\.jsonl: line 1: record 'q1': choice 'C': field 'text' is empty"):
        load_csqa(_write(tmp_path, "c.jsonl", json.dumps(bad)))
    short = json.loads(_csqa_line(id="q3"))
    short["question"]["choices"] = short["question"]["choices"][:3]
    text = "\n".join([_csqa_line(), _csqa_line(id="q2"), _csqa_line(), json.dumps(short)]) + "\n"
    with caplog.at_level("WARNING", logger="ravlm_graph.datasets.loaders"):
        recs = load_csqa(_write(tmp_path, "c.jsonl", text))
    assert len(recs) == 4
    assert "c.jsonl: 1 duplicate question id: 'q1' (lines 1 and 3)" in caplog.text
    assert "c.jsonl: 1 question with fewer than the usual 5 choices (first: 'q3')" in caplog.text


def test_load_csqa_and_fvqa_accept_a_byte_order_mark(tmp_path):
    p = tmp_path / "train.jsonl"
    p.write_bytes(b"\xef\xbb\xbf" + (_csqa_line() + "\n").encode())
    assert [r.qid for r in load_csqa(p)] == ["q1"]
    assert [r.qid for r in load_csqa(io.StringIO("\ufeff" + _csqa_line()))] == ["q1"]
    q = tmp_path / "q.json"
    q.write_bytes(b"\xef\xbb\xbf" + FVQA_Q.read_bytes())
    assert len(load_fvqa(q, FVQA_T)) == len(load_fvqa(FVQA_Q, FVQA_T))


def test_fvqa_answers_that_are_no_end_of_the_fact():
    """A comparative choice the question offers ("bigger or smaller than dolphin?" ->
    bigger) or a yes/no answer is the gold answer itself, not the end of the fact it
    shares no word with; a synonym of an end (people / person) still maps to the end."""
    q = {"1": {"question": "Whether the animal in the image is bigger or smaller than dolphin?", "answer": "bigger",
               "img_file": "a.jpg", "ans_source": "kb", "fact": ["f1"]},
         "2": {"question": "Is this office neat and tidy?", "answer": "Yes", "img_file": "b.jpg",
               "ans_source": "kb", "fact": ["f2"]},
         "3": {"question": "What object in this image can dine with other people?", "answer": "people",
               "img_file": "c.jpg", "ans_source": "image", "fact": ["f3"]}}
    t = {"1": ["whale", "MoreBig", "dolphin"], "2": ["office", "HasProperty", "tidy_place"],
         "3": ["person", "CapableOf", "dine"]}
    recs = {r.qid: r for r in load_fvqa(q, t)}
    assert recs["1"].answer_concepts == ("bigger",) and recs["1"].extra["answer_outside_fact"]
    assert recs["2"].answer_concepts == ("yes",)
    assert recs["3"].answer_concepts == ("person",) and not recs["3"].extra.get("answer_outside_fact")


# --------------------------------------------------------------------------- uneven checks, evened out

_LOG = "ravlm_graph.datasets.loaders"


def test_load_vqa_warns_on_duplicate_questions_and_annotations(tmp_path, caplog):
    q = json.loads(OKVQA_Q.read_text())
    q["questions"].append(dict(q["questions"][0]))  # question 2971475 again, as record 4
    ann = _okvqa_annotations()
    first = json.loads(json.dumps(ann["annotations"][0]))
    first["answers"] = [{"answer": "skiing"}] * 10
    ann["annotations"].insert(0, first)  # an earlier, different copy of 2971475's annotation
    with caplog.at_level("WARNING", logger=_LOG):
        recs = load_vqa(_write(tmp_path, "q.json", q), _write(tmp_path, "ann.json", ann))
    assert "q.json: 1 duplicate question id: '2971475' (questions 0 and 4)" in caplog.text
    assert ("ann.json: 1 duplicate annotation question id (the last annotation of each is kept): "
            "'2971475' (annotations 0 and 1)") in caplog.text
    assert recs[0].answers[0] == "Racing"  # the last copy


def test_load_vqa_warns_on_annotations_for_no_question(tmp_path, caplog):
    ann = _okvqa_annotations()
    ann["annotations"] += [{"question_id": 77, "answers": [{"answer": "x"}] * 10},
                           {"question_id": "78", "answers": [{"answer": "y"}] * 10}]
    with caplog.at_level("WARNING", logger=_LOG):
        recs = load_vqa(OKVQA_Q, _write(tmp_path, "ann.json", ann))
    assert len(recs) == 4
    assert ("ann.json: 2 annotations for no question of okvqa_OpenEnded_mscoco_val2014_questions.json "
            "(ignored; first: '77', '78')") in caplog.text


def test_load_vqa_clean_files_log_nothing(tmp_path, caplog):
    with caplog.at_level("WARNING", logger=_LOG):
        load_vqa(OKVQA_Q, _write(tmp_path, "ann.json", _okvqa_annotations()), images_root="/img")
        load_lxmert(LXMERT)
        load_aokvqa(AOKVQA, images_root="/img")
    assert caplog.text == ""


def test_load_vqa_non_numeric_image_id_names_file_record_and_field(tmp_path):
    q = json.loads(OKVQA_Q.read_text())
    q["questions"][1]["image_id"] = "abc"
    path = _write(tmp_path, "q.json", q)
    assert load_vqa(path)[1].image_id == "abc"  # no image path needed: accepted as written
    with pytest.raises(ValueError, match=r"q\.json: record '3397615': field 'image_id': expected a numeric COCO "
                                         r"image id .* found 'abc'"):
        load_vqa(path, images_root="/images")
    q["questions"][1]["image_id"] = "339761"
    assert load_vqa(_write(tmp_path, "q.json", q), images_root="/i")[1].image_path == \
        Path("/i/COCO_val2014_000000339761.jpg")


def test_load_aokvqa_non_numeric_image_id_names_file_record_and_field(tmp_path):
    base = json.loads(AOKVQA.read_text())[0]
    with pytest.raises(ValueError, match=r"a\.json: record '22jbM6gDxdaMaunuzgrsBB': field 'image_id': "
                                         r"expected a numeric COCO image id .* found 'abc'"):
        load_aokvqa(_write(tmp_path, "a.json", [{**base, "image_id": "abc"}]), images_root="/coco")


def test_load_lxmert_warns_on_duplicate_question_ids(tmp_path, caplog):
    data = json.loads(LXMERT.read_text())
    data.append(dict(data[1]))
    with caplog.at_level("WARNING", logger=_LOG):
        recs = load_lxmert(_write(tmp_path, "lx.json", data))
    assert len(recs) == 5
    assert "lx.json: 1 duplicate question id: '3397615' (records 1 and 4)" in caplog.text


def test_load_aokvqa_warns_on_duplicate_ids_and_short_direct_answers(tmp_path, caplog):
    data = json.loads(AOKVQA.read_text())
    data.append(dict(data[0]))
    data[1] = {**data[1], "direct_answers": data[1]["direct_answers"][:3]}
    with caplog.at_level("WARNING", logger=_LOG):
        recs = load_aokvqa(_write(tmp_path, "a.json", data))
    assert len(recs) == 4 and len(recs[1].answers) == 3
    assert "a.json: 1 duplicate question id: '22jbM6gDxdaMaunuzgrsBB' (records 0 and 3)" in caplog.text
    assert ("a.json: 1 record without the 10 direct answers of the official files (their count in parentheses; "
            "VQA scores are over the answers given): '2Aq5RiEn7eyfWjEbpuYT2o' (3)") in caplog.text
