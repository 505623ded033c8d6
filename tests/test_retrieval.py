"""Subgraph retrieval on a small graph with a deterministic fake text encoder."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch
from torch_geometric.data import Batch, Data

from kg_ingest import KnowledgeGraph
from ravlm_graph.retrieval.config import RetrievalConfig
from ravlm_graph.retrieval.embeddings import NodeEmbeddings
from ravlm_graph.grounding import Entity
from ravlm_graph.retrieval.subgraph import Subgraph
from ravlm_graph.utils.graph import GraphBatch
from ravlm_graph.retrieval.retriever import SubgraphRetriever
from ravlm_graph.retrieval.scoring import _ranges, personalized_pagerank


def make_kg(triples):
    """A store from (head, relation, tail[, weight]) tuples."""
    rows4 = [(t[0], t[1], t[2], t[3] if len(t) > 3 else 1.0) for t in triples]
    names = sorted({h for h, _, _, _ in rows4} | {t for _, _, t, _ in rows4})
    rels = sorted({r for _, r, _, _ in rows4})
    idx = {n: i for i, n in enumerate(names)}
    rows = sorted((idx[h], rels.index(r), idx[t], w) for h, r, t, w in rows4)
    return KnowledgeGraph.from_arrays(names, rels, [r[0] for r in rows], [r[2] for r in rows],
                                      [r[1] for r in rows], [r[3] for r in rows])


class BagOfWords:
    """Deterministic stand-in for MiniLM: hashed bag of words, unit norm."""

    name = "bow"
    dim = 64

    def __init__(self):
        self.calls = 0

    def encode(self, texts, progress=False):
        if isinstance(texts, str):
            texts = [texts]
        self.calls += len(texts)
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for i, t in enumerate(texts):
            for w in t.lower().replace("?", " ").split():
                w = w[:-1] if w.endswith("s") else w
                out[i, int(hashlib.md5(w.encode()).hexdigest(), 16) % self.dim] += 1
            out[i] /= max(np.linalg.norm(out[i]), 1e-9)
        return out


TRIPLES = [
    ("apple", "UsedFor", "eat"), ("apple", "IsA", "fruit"), ("apple", "AtLocation", "tree"),
    ("knife", "UsedFor", "cut"), ("knife", "AtLocation", "kitchen"), ("cut", "RelatedTo", "slice"),
    ("fruit", "AtLocation", "market"), ("fruit", "HasProperty", "sweet"), ("tree", "HasA", "leaf"),
    ("kitchen", "PartOf", "house"), ("house", "HasA", "door"), ("door", "UsedFor", "enter"),
    ("eat", "Causes", "full"), ("market", "HasA", "stall"), ("island", "IsA", "land"),
]


@pytest.fixture(scope="module")
def kg():
    return make_kg(TRIPLES)


@pytest.fixture()
def retriever(kg):
    enc = BagOfWords()
    ne = NodeEmbeddings(kg, enc)
    return SubgraphRetriever(kg, embeddings=ne, encoder=enc)


def test_ranges():
    assert _ranges(np.array([0, 5, 9]), np.array([2, 5, 12])).tolist() == [0, 1, 9, 10, 11]
    assert _ranges(np.array([3]), np.array([3])).tolist() == []


def test_ppr_agrees_with_dense_solution():
    src, dst = np.array([0, 1, 2, 3]), np.array([1, 2, 3, 0])
    w = np.array([1.0, 2.0, 1.0, 1.0])
    r = np.array([1.0, 0, 0, 0])
    p = personalized_pagerank(src, dst, w, 4, r, alpha=0.3, iters=200)
    # dense: p = alpha r + (1-alpha) P^T p, P row-normalised symmetric weights
    a = np.zeros((4, 4))
    for s, d, x in zip(src, dst, w):
        a[s, d] += x
        a[d, s] += x
    pm = a / a.sum(1, keepdims=True)
    exact = np.linalg.solve(np.eye(4) - 0.7 * pm.T, 0.3 * r)
    np.testing.assert_allclose(p, exact, atol=1e-8)
    assert p.sum() == pytest.approx(1.0)


def test_khop_subgraph_fields(kg, retriever):
    sg = retriever.retrieve([Entity("apple", 0.9, "image"), Entity("knife", 1.0, "question")], method="khop",
                            budget=50)
    assert isinstance(sg, Subgraph) and sg.reason is None
    names = set(sg.node_names)
    # 2 hops around apple and knife, nothing from the island component
    assert {"apple", "knife", "eat", "fruit", "tree", "cut", "kitchen", "slice", "market", "house", "full"} <= names
    assert "island" not in names and "door" not in names  # door is 3 hops from knife
    n, e = sg.num_nodes, sg.num_edges
    assert sg.edge_index.shape == (2, e) and sg.edge_type.shape == (e,) and sg.edge_weight.shape == (e,)
    assert sg.node_id.shape == sg.node_relevance.shape == sg.seed_mask.shape == sg.origin.shape == (n,)
    assert sg.edge_relevance.shape == (e,) and sg.seed_mask.dtype == torch.bool
    assert [kg.concept_name(i) for i in sg.node_id.tolist()] == sg.node_names
    # seeds first, with their origin
    assert sg.node_names[:2] == ["knife", "apple"]
    assert sg.origin[:2].tolist() == [1, 2] and sg.seed_mask[:2].all() and not sg.seed_mask[2:].any()
    # edges are exactly the store edges among the nodes
    got = {(sg.node_names[s], sg.relation_names[r], sg.node_names[d])
           for (s, d), r in zip(sg.edge_index.t().tolist(), sg.edge_type.tolist())}
    assert got == {(h, r, t) for h, r, t in TRIPLES if h in names and t in names}


def test_origin_both_and_unknown_seed(retriever):
    sg = retriever.retrieve([Entity("apple", 1.0, "image"), Entity("apple", 0.5, "question"),
                             Entity("zebra", 1.0, "image")], method="khop")
    assert sg.origin[sg.index_of("apple")].item() == 3
    assert sg.info["missing_seeds"] == ["zebra"]


def test_budget_and_connectivity(retriever):
    for method in ("khop", "ppr", "relevance", "hybrid", "pcst"):
        sg = retriever.retrieve(["apple", "knife"], "what do you cut an apple with?", budget=5, method=method)
        assert 2 <= sg.num_nodes <= 5, method
        g = sg.to_networkx().to_undirected()
        import networkx as nx

        comps = list(nx.connected_components(g))
        assert all(c & {"apple", "knife"} for c in comps), (method, comps)  # each part holds a seed


def test_relevance_prefers_question_words(retriever):
    sg = retriever.retrieve(["apple"], "is the fruit sweet?", budget=3, method="relevance", ground_question=False)
    assert sg.node_names[0] == "apple"
    assert "fruit" in sg.node_names and "sweet" in sg.node_names  # sweet is reachable via fruit only
    assert sg.node_relevance[0] == 1.0
    assert (sg.node_relevance >= 0).all() and (sg.node_relevance <= 1).all()


def test_question_grounding_adds_seeds(retriever):
    sg = retriever.retrieve([Entity("island", 1.0, "image")], "What is a knife used for?", method="khop", budget=20)
    assert {"island", "knife"} <= set(sg.node_names)
    assert sg.origin[sg.index_of("knife")].item() == 1 and sg.origin[sg.index_of("island")].item() == 2


def test_verbalize_and_paths(retriever):
    sg = retriever.retrieve(["knife"], "Where is a knife kept in a house?", budget=20, method="hybrid",
                            ground_question=False)
    facts = sg.verbalize(max_facts=100)
    assert "a knife is used for cutting" in facts and "a knife can be found in a kitchen" in facts
    assert len(sg.verbalize(max_facts=2)) == 2
    paths = sg.paths("house")
    assert paths and str(paths[0]) == "knife --AtLocation--> kitchen --PartOf--> house"
    assert paths[0].text == "a knife can be found in a kitchen; a kitchen is part of a house"
    assert [str(p) for p in sg.paths("knife")] == ["knife"]
    with pytest.raises(KeyError, match="not a node"):
        sg.paths("island")


def test_reverse_edge_path_and_max_len(retriever):
    sg = retriever.retrieve(["slice"], budget=20, method="khop", ground_question=False)
    p = sg.paths("knife")[0]
    assert str(p) == "slice <--RelatedTo-- cut <--UsedFor-- knife"
    assert sg.paths("knife", max_len=1) == []


def test_empty_results_are_explicit(retriever):
    for ents, kwargs, reason in [
        ([], {"question": ""}, "question is empty"),
        ([], {"question": "what is it?"}, "no concept"),
        (["zebra", "unicorn"], {}, "zebra, unicorn"),
        (["apple"], {"budget": 0}, "budget is 0"),
    ]:
        sg = retriever.retrieve(ents, **kwargs, method="khop")
        assert sg.num_nodes == 0 and sg.is_empty and reason in sg.reason
        assert sg.edge_index.shape == (2, 0) and sg.verbalize() == []
        assert "empty" in repr(sg)


def test_bad_arguments(retriever):
    with pytest.raises(ValueError, match="budget"):
        retriever.retrieve(["apple"], budget=-1)
    with pytest.raises(ValueError, match="method"):
        retriever.retrieve(["apple"], method="magic")
    with pytest.raises(ValueError, match="needs a question"):
        retriever.retrieve(["apple"], method="relevance")
    with pytest.raises(TypeError, match="Entity or str"):
        retriever.retrieve([3])
    with pytest.raises(ValueError, match="empty reason|expected a reason"):
        Subgraph.empty("")


def test_budget_below_seed_count_keeps_best_seeds(retriever):
    sg = retriever.retrieve([Entity("apple", 0.2, "image"), Entity("knife", 0.9, "image")], budget=1, method="khop")
    assert sg.node_names == ["knife"]


def test_cache_returns_equal_copies(kg):
    enc = BagOfWords()
    r = SubgraphRetriever(kg, RetrievalConfig(cache_size=4), embeddings=NodeEmbeddings(kg, enc), encoder=enc)
    a = r.retrieve(["apple"], "sweet fruit?", ground_question=False)
    calls = enc.calls
    b = r.retrieve(["apple"], "sweet fruit?", ground_question=False)
    assert enc.calls == calls  # no new question embedding: served from the cache
    assert a.node_names == b.node_names and torch.equal(a.edge_index, b.edge_index)
    b.node_relevance[0] = -1
    assert r.retrieve(["apple"], "sweet fruit?", ground_question=False).node_relevance[0] == 1


def test_degree_caps_take_heaviest_edges():
    triples = [("hub", "RelatedTo", f"n{i:02d}", float(i)) for i in range(20)]
    kg = make_kg(triples)
    r = SubgraphRetriever(kg, RetrievalConfig(seed_max_degree=3, method="khop"))
    sg = r.retrieve(["hub"])
    assert set(sg.node_names) == {"hub", "n19", "n18", "n17"}


def test_batching_keeps_names(retriever):
    a = retriever.retrieve(["apple"], method="khop", budget=5)
    b = retriever.retrieve(["knife"], method="khop", budget=4)
    batch = GraphBatch.from_data_list([a, b])
    assert batch.num_nodes == 9 and batch.num_graphs == 2 and batch.node_names[1] == b.node_names
    assert torch.equal(batch.edge_index[:, a.num_edges:], b.edge_index + a.num_nodes)
    # the PyG route: to_pyg() gives real Data objects, which PyG's Batch collates the same way
    pyg = Batch.from_data_list([a.to_pyg(), b.to_pyg()])
    assert pyg.num_nodes == 9 and pyg.node_names[1] == b.node_names
    assert torch.equal(pyg.edge_index, batch.edge_index) and torch.equal(pyg.batch, batch.batch)


def test_to_pyg_is_a_data_with_every_field(retriever):
    sg = retriever.retrieve([Entity("apple", 0.9, "image")], method="khop", budget=6, question="Why?")
    data = sg.to_pyg()
    assert isinstance(data, Data) and not isinstance(sg, Data)
    assert data.num_nodes == sg.num_nodes and data.num_edges == sg.num_edges
    for key in ("edge_index", "edge_type", "edge_weight", "node_id", "node_relevance", "seed_mask", "origin"):
        assert torch.equal(data[key], getattr(sg, key)), key
    assert data.node_names == sg.node_names and data.question == "Why?"
    empty = Subgraph.empty("no seeds").to_pyg()
    assert empty.num_nodes == 0 and empty.reason == "no seeds"


def test_retrieval_config_validation():
    with pytest.raises(ValueError, match="method"):
        RetrievalConfig(method="bfs")
    with pytest.raises(ValueError, match="budget"):
        RetrievalConfig(budget=-3)
    with pytest.raises(ValueError, match="direction"):
        RetrievalConfig(direction="up")
    c = RetrievalConfig(k=1, budget=50)
    assert RetrievalConfig.from_dict(c.to_dict()) == c
    with pytest.raises(ValueError, match="unknown fields"):
        RetrievalConfig.from_dict({"kk": 1})


def test_cli_ground_and_retrieve(tmp_path, kg, capsys):
    import json

    from ravlm_graph.cli.main import main

    kg.save(tmp_path / "kg")
    assert main(["ground", "Is the apple on the tree?", "--kg", str(tmp_path / "kg"), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert [e["concept"] for e in out["entities"]] == ["apple", "tree"]
    assert main(["retrieve", "--entities", "apple,knife", "--kg", str(tmp_path / "kg"), "--budget", "6",
                 "--method", "khop", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["num_nodes"] == 6 and out["nodes"][0]["name"] == "apple" and out["facts"]
    assert main(["retrieve", "--entities", "zebra", "--kg", str(tmp_path / "kg"), "--method", "khop"]) == 1
    assert "zebra" in capsys.readouterr().out
    # no --method and no --question: personalised PageRank (hybrid needs a question to rank by)
    assert main(["retrieve", "--entities", "apple", "--kg", str(tmp_path / "kg"), "--budget", "4", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["num_nodes"] == 4 and out["nodes"][0]["name"] == "apple"
    # a plural is mapped to the concept the graph has, as `ravlm answer --entities` maps it
    assert main(["retrieve", "--entities", "apples", "--kg", str(tmp_path / "kg"), "--budget", "4", "--json"]) == 0
    cap = capsys.readouterr()
    assert json.loads(cap.out)["nodes"][0]["name"] == "apple" and "used concept `apple`" in cap.err
    # bad values are refused with one line
    for argv, match in ((["--entities", "apple", "--facts", "-1"], "--facts: expected an integer >= 0"),
                        (["--entities", ",,,"], "--entities: expected concept names"),
                        (["--question", "  ", "--entities", "apple"], "--question is empty")):
        assert main(["retrieve", *argv, "--kg", str(tmp_path / "kg")]) == 2
        assert match in capsys.readouterr().err


# --------------------------------------------------------------------------- asked relation

def test_relation_prior_and_match():
    from ravlm_graph.retrieval.scoring import relation_match, relation_prior

    rv = np.eye(3, dtype=np.float32)
    q = np.array([0.8, 0.6, 0.0])
    p = relation_prior(q, rv, temperature=0.1)
    assert p[0] == 1.0 and 0 < p[2] < p[1] < 1
    assert np.isclose(p[1], np.exp(-2.0)) and np.isclose(p[2], np.exp(-8.0))
    with pytest.raises(ValueError, match="expected a temperature > 0, found 0"):
        relation_prior(q, rv, temperature=0)
    # candidates: store ids 10, 11 (seeds, weights 1 and 0.5), then 20, 21, 22, 23
    cand = np.array([10, 11, 20, 21, 22, 23])
    src = np.array([10, 21, 11, 20, 99])
    dst = np.array([20, 10, 22, 23, 23])
    rel = np.array([1, 0, 0, 0, 0])
    m = relation_match(cand, np.array([1.0, 0.5]), src, dst, rel, p)
    assert np.allclose(m, [0.0, 0.0, p[1], 1.0, 0.5, 0.0])  # 23: linked only to a non-seed


def test_relation_weight_puts_the_asked_relation_first():
    kg = make_kg([("knife", "AtLocation", f"drawer{i}", 3.0) for i in range(6)]
                 + [("knife", "UsedFor", "cut", 1.0), ("knife", "IsA", "tool", 2.0)])
    enc = BagOfWords()
    ne = NodeEmbeddings(kg, enc)
    q = "What is the knife used for?"
    seeds = [Entity("knife", 1.0, "image")]
    plain = SubgraphRetriever(kg, RetrievalConfig(method="ppr"), embeddings=ne, encoder=enc)
    asked = SubgraphRetriever(kg, RetrievalConfig(method="ppr", relation_weight=2.0), embeddings=ne, encoder=enc)
    assert "cut" not in plain.retrieve(seeds, q, budget=3, ground_question=False).node_names
    sg = asked.retrieve(seeds, q, budget=2, ground_question=False)
    assert sg.node_names == ["knife", "cut"]
    assert next(iter(sg.info["relation_prior"])) == "UsedFor"
    assert float(sg.node_relevance.max()) <= 1.0
    # Another question asks another relation.
    where = asked.retrieve(seeds, "Where can the knife be found at?", budget=2, ground_question=False)
    assert where.node_names[1].startswith("drawer")
    assert next(iter(where.info["relation_prior"])) == "AtLocation"
    with pytest.raises(ValueError, match="relation_weight"):
        RetrievalConfig(relation_weight=-1.0)


def test_surface_text_reaches_the_evidence():
    kg = KnowledgeGraph.from_arrays(["cut", "knife", "tool"], ["IsA", "UsedFor"], [1, 1], [0, 2], [1, 0],
                                    [1.0, 1.0], surface=["[[A knife]] is used for [[cutting things]]", None])
    enc = BagOfWords()
    r = SubgraphRetriever(kg, RetrievalConfig(method="khop"), embeddings=NodeEmbeddings(kg, enc), encoder=enc)
    sg = r.retrieve(["knife"], budget=3, ground_question=False)
    assert sorted(sg.verbalize()) == ["A knife is used for cutting things", "a knife is a tool"]


def test_position_scratch_is_reset_and_per_thread(kg):
    """Retrieval looks positions up in a store-sized map kept per thread: every entry is back
    to -1 after each call (also when the block fails), and retrievals in two threads at once
    give the subgraphs of one thread alone."""
    import threading

    r = SubgraphRetriever(kg, RetrievalConfig(k=2, budget=6, method="ppr"), embeddings=NodeEmbeddings(kg, BagOfWords()))
    queries = [(["apple"], "what is an apple used for?"), (["knife", "kitchen"], "where is the knife?"),
               (["tree"], "what does a tree have?"), (["door", "house"], "what is the door for?")]
    alone = [r.retrieve(s, q, use_cache=False) for s, q in queries]
    pos = r._scratch.pos
    assert pos.shape == (kg.num_nodes,) and (pos == -1).all()
    with pytest.raises(RuntimeError):
        with r._positions(np.array([0, 2])) as p:
            assert p[2] == 1
            raise RuntimeError("stop")
    assert (pos == -1).all()
    out: dict[int, list] = {}

    def work(i):
        out[i] = [r.retrieve(s, q, use_cache=False) for _ in range(30) for s, q in queries]

    threads = [threading.Thread(target=work, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for res in out.values():
        for got, want in zip(res, alone * 30):
            assert got.node_names == want.node_names
            assert torch.equal(got.edge_index, want.edge_index) and torch.equal(got.edge_type, want.edge_type)
