"""Stand-ins shared by tests."""

import hashlib

import numpy as np

from kg_ingest import KnowledgeGraph


class HashEncoder:
    """Deterministic unit vectors from a hash of the text (a stand-in for the MiniLM encoder)."""

    dim = 16
    name = "hash-16"

    def encode(self, texts, progress=False):
        if isinstance(texts, str):
            texts = [texts]
        out = []
        for t in texts:
            seed = int(hashlib.sha256(t.encode()).hexdigest()[:8], 16)
            v = np.random.default_rng(seed).standard_normal(self.dim).astype(np.float32)
            out.append(v / np.linalg.norm(v))
        return np.stack(out) if out else np.zeros((0, self.dim), np.float32)


def make_kg(triples):
    """A KnowledgeGraph from ``(head, relation, tail)`` triples, weight 1.0 each."""
    names = sorted({h for h, _, _ in triples} | {t for _, _, t in triples})
    rels = sorted({r for _, r, _ in triples})
    idx = {n: i for i, n in enumerate(names)}
    rows = sorted((idx[h], rels.index(r), idx[t]) for h, r, t in triples)
    return KnowledgeGraph.from_arrays(names, rels, [s for s, _, _ in rows], [d for _, _, d in rows],
                                      [r for _, r, _ in rows], [1.0] * len(rows))
