"""The BERT encoder in numpy, for encoding a few short texts without importing torch.

``import torch`` takes over a second of a command's start-up; a question of a dozen tokens
through all-MiniLM-L6-v2 takes a few milliseconds in numpy. :class:`NumpyBert` reads the same
``model.safetensors`` as :class:`~ravlm_graph.retrieval.text_model.BertEncoder` (same key
checks) and computes the same ``last_hidden_state`` up to float rounding
(``tests/retrieval/test_bert_numpy.py`` compares both). The torch encoder stays the one for
large batches and for training.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from ravlm_graph.retrieval.wordpiece import BertConfig, bert_state_key

__all__ = ["NumpyBert", "erf"]

# Abramowitz & Stegun 7.1.26: |error| <= 1.5e-7 over the real line.
_P = 0.3275911
_A = (0.254829592, -0.284496736, 1.421413741, -1.453152027, 1.061405429)


def erf(x: np.ndarray) -> np.ndarray:
    """The error function, elementwise, to about 1.5e-7 (numpy has none of its own)."""
    a = np.abs(x)
    t = 1.0 / (1.0 + _P * a)
    poly = t * (_A[0] + t * (_A[1] + t * (_A[2] + t * (_A[3] + t * _A[4]))))
    return np.copysign(1.0 - poly * np.exp(-a * a), x)


def _layer_norm(x: np.ndarray, w: np.ndarray, b: np.ndarray, eps: float) -> np.ndarray:
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * w + b


class NumpyBert:
    """BERT (no pooler) as numpy arrays; ``forward(input_ids, attention_mask)`` ->
    ``last_hidden_state`` (B, L, D) float32.

    Args:
        config (BertConfig): the sizes.
        weights (dict[str, np.ndarray]): the encoder's weights under
            :class:`~ravlm_graph.retrieval.text_model.BertEncoder`'s names.

    Raises:
        ValueError: a weight missing, unexpected or of the wrong shape.
    """

    def __init__(self, config: BertConfig, weights: dict[str, np.ndarray]) -> None:
        self.config = c = config
        d, f = c.hidden_size, c.intermediate_size
        if d % c.num_attention_heads:
            raise ValueError(f"NumpyBert: hidden size {d} is not a multiple of {c.num_attention_heads} heads")
        shapes = {"embeddings.word_embeddings.weight": (c.vocab_size, d),
                  "embeddings.position_embeddings.weight": (c.max_position_embeddings, d),
                  "embeddings.token_type_embeddings.weight": (c.type_vocab_size, d),
                  "embeddings.LayerNorm.weight": (d,), "embeddings.LayerNorm.bias": (d,)}
        per_layer = {"attention.self.query": (d, d), "attention.self.key": (d, d), "attention.self.value": (d, d),
                     "attention.output.dense": (d, d), "intermediate.dense": (f, d), "output.dense": (d, f)}
        for i in range(c.num_hidden_layers):
            for name, shape in per_layer.items():
                shapes[f"encoder.layer.{i}.{name}.weight"] = shape
                shapes[f"encoder.layer.{i}.{name}.bias"] = shape[:1]
            for name in ("attention.output.LayerNorm", "output.LayerNorm"):
                shapes[f"encoder.layer.{i}.{name}.weight"] = (d,)
                shapes[f"encoder.layer.{i}.{name}.bias"] = (d,)
        missing = sorted(set(shapes) - set(weights))
        extra = sorted(set(weights) - set(shapes))
        wrong = sorted(k for k in shapes if k in weights and tuple(weights[k].shape) != shapes[k])
        if missing or extra or wrong:
            raise ValueError(f"NumpyBert: weights do not fit the config: missing {missing[:3]}, unexpected "
                             f"{extra[:3]}, wrong shape {wrong[:3]}")
        w = {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in weights.items()}
        for k in list(w):
            if k.endswith(".weight") and w[k].ndim == 2 and k.startswith("encoder."):
                w[k] = np.ascontiguousarray(w[k].T)  # (in, out): x @ W
        self.w = w

    @classmethod
    def from_folder(cls, path: str | Path, num_layers: int | None = None) -> "NumpyBert":
        """From a BERT folder (``config.json``, ``model.safetensors``), as ``load_bert`` reads it."""
        from safetensors.numpy import load_file

        path = Path(path)
        config = BertConfig.from_file(path / "config.json")
        if num_layers is not None and 1 <= num_layers < config.num_hidden_layers:
            config.num_hidden_layers = num_layers
        weights = {}
        for key, value in load_file(str(path / "model.safetensors")).items():
            k = bert_state_key(key, config.num_hidden_layers)
            if k is not None:
                weights[k] = value
        try:
            return cls(config, weights)
        except ValueError as e:
            raise ValueError(f"{path / 'model.safetensors'}: {e}") from e

    def _linear(self, x: np.ndarray, name: str) -> np.ndarray:
        w = self.w[f"{name}.weight"]  # (in, out)
        # one 2-D product: a stacked (B, L, in) @ (in, out) runs far slower in numpy
        y = x.reshape(-1, x.shape[-1]) @ w
        y += self.w[f"{name}.bias"]
        return y.reshape(x.shape[:-1] + (w.shape[1],))

    def forward(self, input_ids: np.ndarray, attention_mask: np.ndarray | None = None,
                token_type_ids: np.ndarray | None = None) -> np.ndarray:
        """(B, L) token ids (and 0/1 mask, segment ids) -> (B, L, D) float32 hidden states."""
        c, w = self.config, self.w
        ids = np.asarray(input_ids, dtype=np.int64)
        if ids.ndim != 2:
            raise ValueError(f"NumpyBert: expected input_ids of shape (B, L), found {ids.shape}")
        B, L = ids.shape
        if L > c.max_position_embeddings:
            raise ValueError(f"NumpyBert: {L} tokens, more than the {c.max_position_embeddings} positions")
        types = np.zeros_like(ids) if token_type_ids is None else np.asarray(token_type_ids, dtype=np.int64)
        h = (w["embeddings.word_embeddings.weight"][ids] + w["embeddings.token_type_embeddings.weight"][types]
             + w["embeddings.position_embeddings.weight"][:L])
        h = _layer_norm(h, w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"], c.layer_norm_eps)
        heads = c.num_attention_heads
        d = c.hidden_size // heads
        bias = None
        if attention_mask is not None:
            keep = np.asarray(attention_mask).astype(bool)[:, None, None, :]  # (B, 1, 1, L)
            bias = np.where(keep, 0.0, np.finfo(np.float32).min).astype(np.float32)
        scale = np.float32(1.0 / math.sqrt(d))
        for i in range(c.num_hidden_layers):
            p = f"encoder.layer.{i}."

            def split(t):
                return t.reshape(B, L, heads, d).transpose(0, 2, 1, 3)  # (B, h, L, d)

            q = split(self._linear(h, p + "attention.self.query"))
            k = split(self._linear(h, p + "attention.self.key"))
            v = split(self._linear(h, p + "attention.self.value"))
            s = (q @ k.transpose(0, 1, 3, 2)) * scale  # (B, h, L, L)
            if bias is not None:
                s = s + bias
            s = np.exp(s - s.max(-1, keepdims=True))
            a = (s / s.sum(-1, keepdims=True)) @ v  # (B, h, L, d)
            a = a.transpose(0, 2, 1, 3).reshape(B, L, heads * d)
            a = _layer_norm(self._linear(a, p + "attention.output.dense") + h, w[p + "attention.output.LayerNorm.weight"],
                            w[p + "attention.output.LayerNorm.bias"], c.layer_norm_eps)
            m = self._linear(a, p + "intermediate.dense")
            m = 0.5 * m * (1.0 + erf(m * np.float32(1.0 / math.sqrt(2.0))))  # exact GELU
            h = _layer_norm(self._linear(m, p + "output.dense") + a, w[p + "output.LayerNorm.weight"],
                            w[p + "output.LayerNorm.bias"], c.layer_norm_eps)
        return h.astype(np.float32, copy=False)

    __call__ = forward

    def __repr__(self) -> str:
        c = self.config
        return f"NumpyBert(layers={c.num_hidden_layers}, hidden={c.hidden_size}, heads={c.num_attention_heads})"
