"""The engine's candidate ranking and answer distribution give what the plain Python forms give."""

from __future__ import annotations

import random

import pytest

torch = pytest.importorskip("torch")

from ravlm_graph.engine import _top  # noqa: E402
from ravlm_graph.models.knowledge_vqa.modeling import KnowledgeVQAOutput, answer_distribution  # noqa: E402


@pytest.mark.parametrize("seed", range(5))
def test_top_is_the_stable_sort_prefix(seed):
    rng = random.Random(seed)
    # many ties (a few distinct values), as after float rounding of tiny probabilities
    d = {f"a{i}": rng.choice([0.0, 1e-9, 0.25, 0.5, rng.random()]) for i in range(300)}
    want = sorted(d.items(), key=lambda kv: -kv[1])
    for k in (0, 1, 5, 299, 300, 1000):
        assert _top(d, k) == want[: max(k, 1)]


def test_answer_distribution_merges_names():
    g = torch.Generator().manual_seed(0)
    B, V, M = 2, 6, 4
    out = KnowledgeVQAOutput(loss=None, vocab_logits=torch.randn(B, V, generator=g), pointer_logits=torch.randn(B, M, generator=g),
                             copy_prob=torch.tensor([0.3, 0.9]), node_mask=None)
    names = [["a1", "zz", "a1", "a5"], ["a2"]]
    for vocab in ([f"a{i}" for i in range(V)], ["a0", "a1", "a1", "a3", "a4", "a5"]):  # unique, and one repeated
        got = answer_distribution(out, vocab, names)
        for b in range(B):
            c = float(out.copy_prob[b])
            want: dict[str, float] = {}
            for a, p in zip(vocab, ((1 - c) * torch.softmax(out.vocab_logits, -1)[b]).tolist()):
                want[a] = want.get(a, 0.0) + p
            for n, p in zip(names[b], (c * torch.softmax(out.pointer_logits[b, : len(names[b])], -1)).tolist()):
                want[n] = want.get(n, 0.0) + p
            assert list(got[b].items()) == list(want.items())
