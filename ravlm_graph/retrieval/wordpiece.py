"""BERT's configuration and WordPiece tokenizer, without torch: what both the torch encoder
(:mod:`ravlm_graph.retrieval.text_model`) and the numpy one (:mod:`ravlm_graph.retrieval.bert_numpy`)
read from a model folder."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

__all__ = ["BertConfig", "WordPieceTokenizer", "bert_state_key"]


@dataclass
class BertConfig:
    """The fields of a BERT ``config.json`` the encoder reads (others are ignored)."""

    vocab_size: int = 30522
    hidden_size: int = 384
    num_hidden_layers: int = 6
    num_attention_heads: int = 12
    intermediate_size: int = 1536
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    layer_norm_eps: float = 1e-12
    hidden_dropout_prob: float = 0.1
    attention_probs_dropout_prob: float = 0.1
    pad_token_id: int = 0
    initializer_range: float = 0.02
    hidden_act: str = "gelu"
    position_embedding_type: str = "absolute"
    model_type: str = "bert"

    @classmethod
    def from_file(cls, path: str | Path) -> "BertConfig":
        raw = json.loads(Path(path).read_text(encoding="utf-8"))
        known = {k: raw[k] for k in cls.__dataclass_fields__ if k in raw}
        config = cls(**known)
        if config.model_type != "bert" or config.hidden_act != "gelu" or config.position_embedding_type != "absolute":
            raise ValueError(f"{path}: expected a BERT model (model_type 'bert', gelu, absolute positions), found "
                             f"{config.model_type!r}, {config.hidden_act!r}, {config.position_embedding_type!r}")
        return config


class _Encoding(dict):
    """The tokenizer's output: a dict of tensors (or lists) with ``.to(device)``."""

    def to(self, device: Any) -> "_Encoding":
        return _Encoding({k: v.to(device) if hasattr(v, "to") else v for k, v in self.items()})


class WordPieceTokenizer:
    """A folder's ``tokenizer.json`` through the ``tokenizers`` library, with the calls of a
    ``transformers`` tokenizer the project uses: ``tok(text_or_texts, add_special_tokens=,
    padding=, truncation=, max_length=, return_tensors="pt" | "np")``, ``convert_tokens_to_ids``,
    and the ``*_token_id`` attributes.
    """

    def __init__(self, path: str | Path) -> None:
        from tokenizers import Tokenizer

        self.path = Path(path)
        self._tok = Tokenizer.from_file(str(self.path / "tokenizer.json"))
        self._tok.no_padding()
        self._tok.no_truncation()
        special = {}
        cfg = self.path / "special_tokens_map.json"
        if cfg.is_file():
            special = {k: (v["content"] if isinstance(v, dict) else v)
                       for k, v in json.loads(cfg.read_text(encoding="utf-8")).items()}
        for name, default in (("unk", "[UNK]"), ("sep", "[SEP]"), ("pad", "[PAD]"), ("cls", "[CLS]"),
                              ("mask", "[MASK]")):
            token = special.get(f"{name}_token", default)
            setattr(self, f"{name}_token", token)
            setattr(self, f"{name}_token_id", self._tok.token_to_id(token))

    def convert_tokens_to_ids(self, token: str) -> int:
        i = self._tok.token_to_id(token)
        return self.unk_token_id if i is None else i

    def __len__(self) -> int:
        return self._tok.get_vocab_size()

    def __call__(self, text: str | Sequence[str], add_special_tokens: bool = True, padding: bool = False,
                 truncation: bool = False, max_length: int | None = None, return_tensors: str | None = None):
        single = isinstance(text, str)
        texts = [text] if single else list(text)
        encs = self._tok.encode_batch(texts, add_special_tokens=add_special_tokens)
        ids = [e.ids for e in encs]
        if truncation and max_length is not None:
            # keep [SEP] last, as transformers' truncation does for one sequence
            ids = [x if len(x) <= max_length else
                   (x[: max_length - 1] + [x[-1]] if add_special_tokens and x and x[-1] == self.sep_token_id
                    else x[:max_length]) for x in ids]
        masks = [[1] * len(x) for x in ids]
        if padding:
            L = max((len(x) for x in ids), default=0)
            ids = [x + [self.pad_token_id] * (L - len(x)) for x in ids]
            masks = [m + [0] * (L - len(m)) for m in masks]
        types = [[0] * len(x) for x in ids]
        if return_tensors == "np":
            return _Encoding(input_ids=np.asarray(ids, dtype=np.int64), token_type_ids=np.asarray(types, dtype=np.int64),
                             attention_mask=np.asarray(masks, dtype=np.int64))
        if return_tensors == "pt":
            import torch

            return _Encoding(input_ids=torch.tensor(ids, dtype=torch.long),
                             token_type_ids=torch.tensor(types, dtype=torch.long),
                             attention_mask=torch.tensor(masks, dtype=torch.long))
        if return_tensors is not None:
            raise ValueError(f"WordPieceTokenizer: expected return_tensors None, 'pt' or 'np', found {return_tensors!r}")
        if single:
            return _Encoding(input_ids=ids[0], token_type_ids=types[0], attention_mask=masks[0])
        return _Encoding(input_ids=ids, token_type_ids=types, attention_mask=masks)

    def __repr__(self) -> str:
        return f"WordPieceTokenizer({self.path.name!r}, vocab={len(self)})"


def bert_state_key(key: str, num_layers: int) -> str | None:
    """The encoder's name for a weight of a BERT ``model.safetensors``, or None when the
    encoder does not use it: older checkpoints name their keys ``"bert.embeddings..."``; the
    pooler, a masked-LM head, the position-id buffer and layers past ``num_layers`` are skipped."""
    k = key[5:] if key.startswith("bert.") else key
    if k.startswith(("pooler.", "cls.")) or k == "embeddings.position_ids":
        return None
    if k.startswith("encoder.layer."):
        i = k.split(".")[2]
        if i.isdigit() and int(i) >= num_layers:
            return None
    return k
