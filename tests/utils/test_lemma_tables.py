"""lemminflect's tables read per word from the cache give what its own loader gives."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("lemminflect")

ROOT = Path(__file__).resolve().parents[2]

# In a fresh process: whether the indexed tables are used, some look-ups, and sentences
# the realiser makes with them (nouns with articles, verb forms, plurals).
_PROBE = r"""
import json, sys
import lemminflect
from ravlm_graph.utils.lemma_tables import use_indexed_tables, IndexedTable
from ravlm_graph.utils.english import realise
from ravlm_graph.grounding.text import word_forms
used = use_indexed_tables()
L, I = lemminflect.Lemmatizer(), lemminflect.Inflections()
words = ["trucks", "reading", "water", "be", "can", "mice", "zzqx", "Knives", "went", "happiest"]
out = {
    "indexed": used and isinstance(L.lemma_dict, IndexedTable) and isinstance(I.infl_dict, IndexedTable),
    "lemmas": [lemminflect.getAllLemmas(w) for w in words],
    "inflections": [lemminflect.getAllInflections(w) for w in words],
    "forms": [word_forms(w) for w in words],
    "facts": [realise(h, r, t) for h, r, t in [("knife", "UsedFor", "cut_bread"), ("water", "IsA", "liquid"),
              ("dog", "CapableOf", "bark"), ("scissors", "AtLocation", "drawer"), ("mouse", "Desires", "cheese")]],
}
print(json.dumps(out))
"""


def _probe(cache: str) -> dict:
    env = {**os.environ, "RAVLM_CACHE": cache, "PYTHONPATH": str(ROOT)}
    r = subprocess.run([sys.executable, "-c", _PROBE], env=env, cwd=ROOT, capture_output=True, text=True, check=True)
    return json.loads(r.stdout)


def test_indexed_tables_answer_as_lemminflect_does(tmp_path):
    own = _probe("off")  # cache off: lemminflect loads its own tables
    assert own["indexed"] is False
    cold = _probe(str(tmp_path))  # writes the indexed copies
    assert cold["indexed"] is True
    assert sorted(p.name.split("-")[0] for p in (tmp_path / "lemminflect").glob("*.sqlite")) == ["inflection", "lemma"]
    warm = _probe(str(tmp_path))  # reads them
    assert warm["indexed"] is True
    for got in (cold, warm):
        for key in ("lemmas", "inflections", "forms", "facts"):
            assert got[key] == own[key], key


def test_every_row_matches(tmp_path, monkeypatch):
    from lemminflect import Lemmatizer
    from lemminflect.codecs.LemmaLUCodec import LemmaLUCodec

    from ravlm_graph.utils import lemma_tables

    monkeypatch.setenv("RAVLM_CACHE", str(tmp_path))
    table = lemma_tables._table("lemma", Lemmatizer().lemma_lu_fn, LemmaLUCodec.load)
    rows = LemmaLUCodec.load(Lemmatizer().lemma_lu_fn)
    assert all(table.get(k) == v for k, v in rows.items())
    assert table.get("no-such-word") is None and table.get("no-such-word", {}) == {}
    assert "knife" in table and "no-such-word" not in table
