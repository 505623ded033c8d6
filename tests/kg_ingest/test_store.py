import json

import numpy as np
import pytest

from kg_ingest import GraphBuilder, KnowledgeGraph, RelationConfig, StoreError, load_default, normalize_concept


def test_neighbors_by_relation_and_direction(tiny_kg):
    kg = tiny_kg
    assert kg.num_nodes == 6 and kg.num_edges == 6
    assert sorted(kg.neighbors("apple")) == [("AtLocation", "kitchen", 2.0), ("IsA", "fruit", 1.0),
                                             ("UsedFor", "eating", 1.0)]
    assert kg.neighbors("apple", relation="UsedFor") == [("UsedFor", "eating", 1.0)]
    assert kg.neighbors("apple", direction="in") == [("RelatedTo", "kitchen", 0.5)]
    assert sorted(kg.neighbors("fruit", direction="both")) == [("AtLocation", "market", 1.0),
                                                               ("IsA", "apple", 1.0), ("IsA", "banana", 1.0)]
    rel, concept, weight = kg.neighbors("banana")[0]
    assert (rel, concept, weight) == ("IsA", "fruit", 1.0)


def test_edges_between_both_directions(tiny_kg):
    assert sorted(tiny_kg.edges_between("apple", "kitchen")) == [
        ("apple", "AtLocation", "kitchen", 2.0), ("kitchen", "RelatedTo", "apple", 0.5)]
    assert tiny_kg.edges_between("banana", "market") == []


def test_lookup_exact_and_normalised(tiny_kg):
    kg = tiny_kg
    assert kg.concept_name(kg.concept_id("apple")) == "apple"
    assert kg.lookup("  Apple ") == kg.concept_id("apple")
    assert kg.lookup("pear") is None
    assert "banana" in kg and "pear" not in kg
    with pytest.raises(KeyError, match="concept 'pear' is not in the graph"):
        kg.concept_id("pear")
    assert normalize_concept("Ice-Cream  cone") == "ice_cream_cone"
    assert kg.search("ba") == ["banana"]


def test_k_hop_exact(tiny_kg):
    kg = tiny_kg
    names = lambda ids: sorted(kg.concept_names(ids))
    assert names(kg.k_hop(["banana"], 0)) == ["banana"]
    assert names(kg.k_hop(["banana"], 1)) == ["banana", "fruit"]
    assert names(kg.k_hop(["banana"], 2)) == ["apple", "banana", "fruit", "market"]
    assert names(kg.k_hop(["banana"], 2, direction="out")) == ["banana", "fruit", "market"]
    assert names(kg.k_hop(["eating", "market"], 1, direction="in")) == ["apple", "eating", "fruit", "market"]
    with pytest.raises(ValueError, match="non-negative integer"):
        kg.k_hop(["apple"], -1)
    with pytest.raises(ValueError, match="direction"):
        kg.k_hop(["apple"], 1, direction="sideways")
    with pytest.raises(KeyError, match="pear"):
        kg.k_hop(["pear"], 1)


def test_k_hop_agrees_with_networkx_on_cn100k():
    nx = pytest.importorskip("networkx")
    kg = load_default()
    g = kg.to_networkx().to_undirected(as_view=True)
    seeds = ["apple", "guitar", "umbrella"]
    expected = set()
    for s in seeds:
        expected |= set(nx.ego_graph(g, s, radius=2).nodes)
    got = set(kg.concept_names(kg.k_hop(seeds, 2)))
    assert got == expected and len(got) > 500


def test_subgraph_is_induced(tiny_kg):
    sg = tiny_kg.subgraph(["apple", "fruit", "kitchen"])
    assert sorted(sg.node_names()) == ["apple", "fruit", "kitchen"]
    assert sorted(sg.edges()) == [("apple", "AtLocation", "kitchen", 2.0), ("apple", "IsA", "fruit", 1.0),
                                  ("kitchen", "RelatedTo", "apple", 0.5)]


def test_degree_and_relation_counts(tiny_kg):
    kg = tiny_kg
    d = dict(zip(kg.concept_names(range(kg.num_nodes)), kg.degree().tolist()))
    assert d == {"apple": 4, "banana": 1, "eating": 1, "fruit": 3, "kitchen": 2, "market": 1}
    assert kg.relation_counts() == {"AtLocation": 2, "IsA": 2, "UsedFor": 1, "RelatedTo": 1}
    st = kg.degree_stats(top=2)
    assert st["max"] == 4 and st["top"] == [("apple", 4), ("fruit", 3)]


def test_relation_config_merge_reverse_and_inverse():
    cfg = RelationConfig(merge={"PartOf": ["PartOf", "*HasA"], "IsA": ["IsA"]}, add_inverse=True, others="drop")
    b = GraphBuilder(cfg)
    b.add("HasA", "car", "wheel")
    b.add("IsA", "car", "vehicle")
    b.add("UsedFor", "car", "driving")  # not in the merge map, others="drop": dropped
    kg = b.build()
    assert sorted(kg.neighbors("wheel")) == [("PartOf", "car", 1.0)]
    assert sorted(kg.neighbors("car")) == [("IsA", "vehicle", 1.0), ("PartOf_inv", "wheel", 1.0)]
    assert b.stats.skipped["relation dropped"] == 1 and b.dropped_relations == {"UsedFor": 1}
    # By default a merge map keeps the relations it does not name.
    b = GraphBuilder(RelationConfig(merge={"PartOf": ["PartOf", "*HasA"]}))
    b.add("HasA", "car", "wheel")
    b.add("UsedFor", "car", "driving")
    assert sorted(b.build().neighbors("car")) == [("UsedFor", "driving", 1.0)]
    assert b.dropped_relations == {}
    with pytest.raises(ValueError, match="RelationConfig.others: expected 'keep' or 'drop', found 'maybe'"):
        RelationConfig(others="maybe")
    with pytest.raises(ValueError, match="merged into both"):
        RelationConfig(merge={"A": ["IsA"], "B": ["IsA"]})
    qa = RelationConfig.preset("qagnn17")
    assert len(qa.merge) == 17 and qa.resolve("/r/HasA") == ("PartOf", True) and qa.resolve("FormOf") is None
    keep = RelationConfig(keep=["IsA", "dbpedia/*"], drop=[])
    assert keep.resolve("dbpedia/genre") == ("dbpedia/genre", False) and keep.resolve("UsedFor") is None


def test_relation_config_from_json(tmp_path):
    p = tmp_path / "rel.json"
    p.write_text(json.dumps({"drop": ["RelatedTo"], "add_inverse": True}))
    cfg = RelationConfig.from_json(p)
    assert cfg.resolve("RelatedTo") is None and cfg.add_inverse
    p.write_text('{"drop": ["RelatedTo"],')
    with pytest.raises(ValueError, match=r"rel\.json:1: relation config is not valid JSON"):
        RelationConfig.from_json(p)
    p.write_text('{"dorp": []}')
    with pytest.raises(ValueError, match=r"unknown keys \['dorp'\]"):
        RelationConfig.from_json(p)


def test_save_load_round_trip_is_memory_mapped(tiny_kg, tmp_path):
    tiny_kg.save(tmp_path / "s")
    kg = KnowledgeGraph.load(tmp_path / "s")
    assert isinstance(kg.edge_src, np.memmap)
    assert kg.num_nodes == 6 and kg.num_edges == 6
    for name in ("edge_src", "edge_dst", "edge_rel", "edge_weight", "out_indptr", "in_indptr", "in_eid"):
        np.testing.assert_array_equal(getattr(kg, name), getattr(tiny_kg, name))
    assert kg.concept_names(range(6)) == tiny_kg.concept_names(range(6))
    assert sorted(kg.neighbors("apple", direction="both")) == sorted(tiny_kg.neighbors("apple", direction="both"))


def test_atomic_replace_and_failure_keeps_old_store(tiny_kg, tmp_path, monkeypatch):
    out = tmp_path / "s"
    tiny_kg.save(out)
    before = sorted(p.name for p in out.iterdir())
    import kg_ingest.store as store

    def boom(kg, d):
        (d / "partial.npy").write_bytes(b"x")
        raise RuntimeError("disk full")

    monkeypatch.setattr(store, "_write_store", boom)
    with pytest.raises(RuntimeError, match="disk full"):
        tiny_kg.save(out)
    assert sorted(p.name for p in out.iterdir()) == before
    assert [p.name for p in tmp_path.iterdir()] == ["s"]  # no temporary folder left behind
    assert KnowledgeGraph.load(out).num_edges == 6


def test_refuses_to_replace_a_folder_that_is_not_a_store(tiny_kg, tmp_path):
    d = tmp_path / "docs"
    d.mkdir()
    (d / "thesis.tex").write_text("precious")
    with pytest.raises(StoreError, match="not a kg store; refusing to replace it"):
        tiny_kg.save(d)
    assert (d / "thesis.tex").read_text() == "precious"


@pytest.mark.parametrize("damage, message", [
    (lambda d: (d / "meta.json").write_text("{bad json"), "damaged metadata: not valid JSON"),
    (lambda d: (d / "meta.json").unlink(), r"not a kg store \(no meta.json\)"),
    (lambda d: (d / "edge_dst.npy").write_bytes((d / "edge_dst.npy").read_bytes()[:-8]), "truncated or replaced"),
    (lambda d: (d / "in_eid.npy").unlink(), "in_eid.npy: missing store file"),
    (lambda d: (d / "concepts.bin").write_bytes(b"abc"), "concepts.bin: size 3 bytes, offsets expect"),
    (lambda d: _rewrite(d, "edge_dst", lambda a: a + 100), r"node ids outside \[0, 6\)"),
    (lambda d: _rewrite(d, "edge_src", lambda a: a[:3]), "expected int32 array of length 6"),
    (lambda d: _set_meta(d, format_version=99), "store format version 99"),
])
def test_damaged_store_fails_clearly(tiny_kg, tmp_path, damage, message):
    d = tmp_path / "s"
    tiny_kg.save(d)
    damage(d)
    with pytest.raises(StoreError, match=message):
        KnowledgeGraph.load(d)


def _rewrite(d, name, fn):
    """Rewrite an array and record its new size and checksum (damage the checksums cannot see)."""
    from .conftest import rehash

    a = np.load(d / f"{name}.npy")
    np.save(d / f"{name}.npy", fn(a).astype(a.dtype))
    rehash(d)


def _set_meta(d, **kw):
    meta = json.loads((d / "meta.json").read_text())
    meta.update(kw)
    (d / "meta.json").write_text(json.dumps(meta))


def test_load_missing_folder_and_file(tmp_path):
    with pytest.raises(StoreError, match="no such store folder"):
        KnowledgeGraph.load(tmp_path / "nope")
    f = tmp_path / "f"
    f.write_text("x")
    with pytest.raises(StoreError, match="expected a store folder, found a file"):
        KnowledgeGraph.load(f)


def test_bundled_default_and_fvqa_merge(tmp_path):
    kg = load_default()
    assert kg.num_edges > 95_000 and "ice_cream" in kg
    assert ("HasA", "seed", 1.0) in kg.neighbors("apple")  # train.txt: HasA\tapple\tseed
    assert ("CapableOf", "fall_from_tree", 1.0) in kg.neighbors("apple")
    with_fvqa = load_default(with_fvqa=True, out=tmp_path / "d")
    assert with_fvqa.num_edges > kg.num_edges
    assert "360_backflip" in with_fvqa and "360_backflip" not in kg
    again = load_default(with_fvqa=True, out=tmp_path / "d")  # reused, not rebuilt
    assert again.path == tmp_path / "d" and again.num_edges == with_fvqa.num_edges
