"""What a new user trips over: incoming edges, relation files, the lemma a person types."""

import json
import re
from pathlib import Path

import pytest

from kg_ingest import GraphBuilder, KnowledgeGraph, RelationConfig, ingest_triples
from kg_ingest.cli import main

README = Path(__file__).resolve().parents[2] / "README.md"


@pytest.fixture
def store(tmp_path):
    p = tmp_path / "t.txt"
    p.write_text("UsedFor\tumbrella\tkeep_dry\nAtLocation\tumbrella\tcloset\nUsedFor\traincoat\tkeep_dry\t2\n"
                 "RelatedTo\train\tumbrella\t0.5\nUsedFor\tscissor\tcut_paper\nAtLocation\tscissor\tdrawer\n"
                 "IsA\tscissor\ttool\nRelatedTo\tscissors\tcut\n")
    assert main(["triples", str(p), "--out", str(tmp_path / "s"), "--quiet", "--no-progress"]) == 0
    return tmp_path / "s"


def test_incoming_edges_are_printed_whole_with_their_direction(store, capsys):
    assert main(["neighbors", str(store), "keep_dry", "--direction", "in"]) == 0
    assert capsys.readouterr().out.splitlines() == ["raincoat --UsedFor--> keep_dry\t2",
                                                    "umbrella --UsedFor--> keep_dry\t1"]
    assert main(["neighbors", str(store), "umbrella", "--direction", "both"]) == 0
    assert sorted(capsys.readouterr().out.splitlines()) == ["rain --RelatedTo--> umbrella\t0.5",
                                                            "umbrella --AtLocation--> closet\t1",
                                                            "umbrella --UsedFor--> keep_dry\t1"]
    assert main(["neighbors", str(store), "umbrella"]) == 0  # outgoing: the short form
    assert sorted(capsys.readouterr().out.splitlines()) == ["AtLocation\tcloset\t1", "UsedFor\tkeep_dry\t1"]


def test_the_lemma_a_person_types_is_found_and_named(store, capsys):
    assert main(["neighbors", str(store), "scissors"]) == 0
    cap = capsys.readouterr()
    assert cap.err.strip() == "kg-ingest: using concept 'scissor' (3 edges) for 'scissors'; 'scissors' has 1 edge"
    assert sorted(cap.out.splitlines()) == ["AtLocation\tdrawer\t1", "IsA\ttool\t1", "UsedFor\tcut_paper\t1"]
    assert main(["neighbors", str(store), "Umbrellas"]) == 0
    assert "using concept 'umbrella' (3 edges) for 'Umbrellas'" in capsys.readouterr().err
    assert main(["neighbors", str(store), "umbrella"]) == 0
    assert capsys.readouterr().err == ""  # nothing to say when the typed concept is used


def test_resolve_prefers_the_concept_with_more_edges():
    b = GraphBuilder(RelationConfig())
    for r, h, t in [("IsA", "scissor", "tool"), ("UsedFor", "scissor", "cut"), ("RelatedTo", "scissors", "x"),
                    ("IsA", "knife", "tool"), ("IsA", "berry", "fruit"), ("IsA", "mouse", "rodent"),
                    ("IsA", "ice_cream", "dessert"), ("IsA", "glasses", "eyewear"), ("IsA", "news", "media"),
                    ("RelatedTo", "news", "paper"), ("IsA", "new", "adjective")]:
        b.add(r, h, t)
    kg = b.build()
    r = kg.resolve("scissors")
    assert (r.concept, r.how, r.degree) == ("scissor", "lemma", 2)
    assert kg.concept_name(kg.lookup("scissors")) == "scissors"  # plain lookup stays exact
    assert kg.concept_name(kg.lookup("scissors", lemma=True)) == "scissor"
    for typed, want in [("Knives", "knife"), ("berries", "berry"), ("mice", "mouse"), ("Ice Creams", "ice_cream"),
                        ("glasses", "glasses"), ("news", "news")]:
        assert kg.resolve(typed).concept == want, typed
    assert kg.resolve("dragons") is None


def _readme_relation_file() -> dict:
    text = README.read_text(encoding="utf-8")
    m = re.search(r"A relation file[^\n]*\n\n```json\n(.*?)```", text, re.S)
    assert m, "the README's relation-file example was not found"
    return json.loads(m.group(1))


def test_the_readme_relation_file_keeps_unnamed_relations(tmp_path, capsys):
    from kg_ingest import cn100k_files

    cfg = _readme_relation_file()
    (tmp_path / "rel.json").write_text(json.dumps(cfg))
    files = [str(f) for f in cn100k_files()]
    plain, _ = ingest_triples(cn100k_files())
    assert main(["triples", *files, "--out", str(tmp_path / "s"), "--relations", str(tmp_path / "rel.json"),
                 "--no-progress"]) == 0
    merged = KnowledgeGraph.load(tmp_path / "s")
    out = capsys.readouterr().out
    assert merged.num_edges >= 0.98 * plain.num_edges  # merging, not a silent cut
    assert "relations dropped" not in out
    assert "HasA" not in merged.relations and "PartOf" in merged.relations and "UsedFor" in merged.relations
    # Asking for the map to define the relation set drops the rest, and the summary says so.
    (tmp_path / "rel.json").write_text(json.dumps({**cfg, "others": "drop"}))
    assert main(["triples", *files, "--out", str(tmp_path / "s2"), "--relations", str(tmp_path / "rel.json"),
                 "--no-progress"]) == 0
    out = capsys.readouterr().out
    dropped = re.search(r"relations dropped ([\d,]+) records of (\d+) relations not kept by the relation config: "
                        r"(\w+) \(([\d,]+)\)", out)
    assert dropped and int(dropped.group(2)) > 20
    kept = KnowledgeGraph.load(tmp_path / "s2")
    assert kept.num_edges < plain.num_edges / 2 and set(kept.relations) == {"PartOf", "AtLocation"}
