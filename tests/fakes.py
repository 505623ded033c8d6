"""Stand-ins shared by tests."""

import hashlib

import numpy as np


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
