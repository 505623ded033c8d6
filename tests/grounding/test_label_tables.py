"""Label tables (COCO, ImageNet/WordNet) and their mapping onto a KG's concepts."""

from __future__ import annotations

import json

import pytest

from kg_ingest import KnowledgeGraph
from ravlm_graph.grounding.label_tables import (
    TOO_GENERAL_SYNSETS,
    LabelMapper,
    coverage,
    load_label_table,
)


def _kg(rows):
    names = sorted({n for s, _, d in rows for n in (s, d)} | {"lonely"})
    ix = {n: i for i, n in enumerate(names)}
    rels = sorted({r for _, r, _ in rows})
    edges = sorted((ix[s], rels.index(r), ix[d]) for s, r, d in rows)
    return KnowledgeGraph.from_arrays(names, rels, [e[0] for e in edges], [e[2] for e in edges],
                                      [e[1] for e in edges], [1.0] * len(edges))


@pytest.fixture(scope="module")
def tiny_kg():
    # "lonely" is a concept without edges; "tabby" too is absent, so tabby goes up to "cat"
    return _kg([("cat", "IsA", "animal"), ("table", "AtLocation", "kitchen"), ("ski", "UsedFor", "skiing"),
                ("dog", "IsA", "animal"), ("fish", "IsA", "animal")])


@pytest.fixture(scope="module")
def coco():
    return load_label_table("coco")


@pytest.fixture(scope="module")
def imagenet():
    return load_label_table("imagenet")


def test_coco_table_entries(coco):
    assert len(coco) == 90 and len(coco.used) == 80
    assert [c.index for c in coco.classes] == list(range(1, 91))
    assert (coco[1].name, coco[17].name, coco[90].name) == ("person", "cat", "toothbrush")
    assert coco[67].terms == ("dining_table", "table") and coco[72].terms == ("television", "tv")
    unused = sorted(c.index for c in coco.classes if not c.used)
    assert unused == [12, 26, 29, 30, 45, 66, 68, 69, 71, 83]
    assert coco[12].name == "street sign"


def test_imagenet_table_entries(imagenet):
    assert len(imagenet) == 1000
    assert (imagenet[0].key, imagenet[0].terms) == ("n01440764", ("tench", "Tinca tinca"))
    assert (imagenet[281].key, imagenet[281].name) == ("n02123045", "tabby")
    assert (imagenet[967].key, imagenet[967].name) == ("n07920052", "espresso")
    assert imagenet[999].name == "toilet tissue"
    keys = [c.key for c in imagenet.classes]
    assert keys == sorted(keys)  # the classifier's output order is the sorted WordNet ids
    # every parent is listed, and depth is one more than the shallowest parent
    for w, s in imagenet.synsets.items():
        if s["parents"]:
            assert s["depth"] == 1 + min(imagenet.synsets[p]["depth"] for p in s["parents"]), w
    assert imagenet.synsets["n00001740"] == {"names": ["entity"], "parents": [], "depth": 0}


def test_hypernym_levels(imagenet):
    levels = imagenet.hypernym_levels(281)  # tabby
    assert levels[0] == ["domestic cat", "house cat", "Felis domesticus", "Felis catus"]
    assert "cat" in levels[1]
    flat = {n for lv in levels for n in lv}
    assert not flat & {"entity", "object", "organism", "living thing", "whole"}
    # without the depth limit the root is reached, but the upper-ontology nodes stay out
    flat0 = {n for lv in imagenet.hypernym_levels(281, min_synset_depth=0) for n in lv}
    assert "entity" in flat0 and "organism" not in flat0 and "n00004475" in TOO_GENERAL_SYNSETS


def test_mapping_on_a_tiny_graph(tiny_kg, coco, imagenet):
    m = LabelMapper(coco, tiny_kg)
    hit = m.concept(67)  # dining table: the second term
    assert (hit.concept, hit.via, hit.term, hit.degree) == ("table", "name", "table", 1)
    assert m.concept(35).concept == "ski"  # "skis" -> ski
    assert m.concept(1).concept is None and m.concept(1).via == "none"  # no person in this graph
    mi = LabelMapper(imagenet, tiny_kg)
    tabby = mi.concept(281)
    assert (tabby.concept, tabby.via, tabby.term, tabby.level) == ("cat", "hypernym", "cat", 2)
    assert mi.concept(0).concept == "fish"  # tench -> ... -> fish
    with pytest.raises(KeyError, match=r"no class 1000 \(expected 0..999\)"):
        mi.concept(1000)


def test_min_degree(tiny_kg):
    table = load_label_table("coco")
    lonely = type(table)(kind="coco", classes=[type(table.classes[0])(1, "1", "lonely", ("lonely", "cat"))])
    assert LabelMapper(lonely, tiny_kg, min_degree=0).concept(1).concept == "lonely"
    assert LabelMapper(lonely, tiny_kg, min_degree=1).concept(1).concept == "cat"
    with pytest.raises(ValueError, match="min_degree: expected >= 0, found -1"):
        LabelMapper(lonely, tiny_kg, min_degree=-1)


def test_coverage_of_the_bundled_kg(coco, imagenet):
    from kg_ingest import load_default

    kg = load_default(with_fvqa=True)
    rc, ri = coverage(coco, kg), coverage(imagenet, kg)
    assert rc.total == 80 and ri.total == 1000
    assert rc.share >= 0.95 and ri.share >= 0.95, (rc.summary(), ri.summary())
    assert ri.by_hypernym > 0 and len(ri.unmatched) == ri.total - ri.matched
    m = LabelMapper(coco, kg)
    assert [m.concept(i).concept for i in (1, 17, 72, 77)] == ["person", "cat", "television", "cell_phone"]
    mi = LabelMapper(imagenet, kg)
    assert mi.concept(967).concept == "espresso"
    assert (mi.concept(0).concept, mi.concept(0).via) == ("fish", "hypernym")


def test_load_errors(tmp_path):
    p = tmp_path / "coco.json"
    p.write_text(json.dumps({"format": "something-else", "version": 1, "classes": []}))
    with pytest.raises(ValueError, match="expected format 'ravlm-coco-labels', found 'something-else'"):
        load_label_table("coco", p)
    p.write_text('{"format": "ravlm-coco-labels",\n "version": 1,\n "classes": [}')
    with pytest.raises(ValueError, match=r"coco.json:3: not valid JSON"):
        load_label_table("coco", p)
    p.write_text(json.dumps({"format": "ravlm-coco-labels", "version": 1, "classes": [{"id": 1}]}))
    with pytest.raises(ValueError, match=r"classes\[0\]: expected id, name, concepts"):
        load_label_table("coco", p)
    with pytest.raises(ValueError, match="expected one of \\['coco', 'imagenet'\\], found 'voc'"):
        load_label_table("voc")
