"""Copying answers from the graph (pointer-generator, See et al. 2017,
https://arxiv.org/abs/1704.04368): :class:`PointerHead` scores nodes against a query,
:class:`CopyGate` mixes the vocabulary and pointer distributions. Every kind that uses
the graph shares this answer head.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn
from ravlm_graph.nn.fusion.base import _shape



class PointerHead(nn.Module):
    r"""Scores graph tokens / nodes against a query: ``(W_q q) · (W_k k_t) / sqrt(h)``.

    The resulting distribution over nodes lets the model answer with a concept it never
    saw as a training answer, by copying it from the graph (See et al. 2017,
    https://arxiv.org/abs/1704.04368).

    Args:
        query_dim (int): query width.
        key_dim (int): node/token width.
        hidden_dim (int | None): width of the scoring space (default None: ``query_dim``).

    Shapes:
        input: query (B, query_dim), keys (B, T, key_dim), mask (B, T) bool.
        output: logits (B, T), ``-inf`` on padding.
    """

    def __init__(self, query_dim: int, key_dim: int, hidden_dim: int | None = None) -> None:
        super().__init__()
        self.query_dim, self.key_dim, self.hidden_dim = query_dim, key_dim, hidden_dim or query_dim
        self.q = nn.Linear(query_dim, self.hidden_dim)
        self.k = nn.Linear(key_dim, self.hidden_dim)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        self.q.reset_parameters()
        self.k.reset_parameters()

    def forward(self, query: torch.Tensor, keys: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        if query.dim() != 2 or query.shape[1] != self.query_dim:
            raise ValueError(f"PointerHead: expected query of shape (B, {self.query_dim}), found {_shape(query)}")
        if keys.dim() != 3 or keys.shape[0] != query.shape[0] or keys.shape[2] != self.key_dim:
            raise ValueError(f"PointerHead: expected keys of shape ({query.shape[0]}, T, {self.key_dim}), "
                             f"found {_shape(keys)}")
        logits = (self.k(keys) @ self.q(query).unsqueeze(-1)).squeeze(-1) / math.sqrt(self.hidden_dim)  # (B, T)
        if mask is not None:
            if tuple(mask.shape) != tuple(logits.shape):
                raise ValueError(f"PointerHead: expected mask of shape {tuple(logits.shape)}, found {_shape(mask)}")
            logits = logits.masked_fill(~mask.bool(), float("-inf"))
        return logits

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.query_dim}, {self.key_dim}, hidden_dim={self.hidden_dim})"


@dataclass
class CopyGateOutput:
    """Output of :meth:`CopyGate.forward`.

    Fields:
        probs (B, V + T) float: the mixed distribution over the vocabulary followed by the
            pointer slots; each row sums to 1. With ``pointer_vocab_index``, a slot whose node
            is in the vocabulary gives its mass to that entry and keeps 0.
        copy_prob (B,) float: probability of copying (``1 - p_gen`` of See et al.); 0 for a
            row without any real pointer slot.
        vocab_probs (B, V) float: softmax of the vocabulary logits.
        pointer_probs (B, T) float: softmax of the pointer logits (zeros on padding and on
            rows without real slots).
    """

    probs: torch.Tensor
    copy_prob: torch.Tensor
    vocab_probs: torch.Tensor
    pointer_probs: torch.Tensor


class CopyGate(nn.Module):
    r"""Pointer-generator mixing: ``P = (1 - c) P_vocab + c P_pointer`` with
    ``c = sigmoid(w · q + b)`` (See et al. 2017, https://arxiv.org/abs/1704.04368).

    Args:
        query_dim (int): width of the query (the decoder state the gate reads).

    Shapes:
        input: query (B, query_dim), vocab_logits (B, V), pointer_logits (B, T) (``-inf``
        on padding), pointer_vocab_index (B, T) long or None (-1: not in the vocabulary).
        output: :class:`CopyGateOutput`.
    """

    def __init__(self, query_dim: int) -> None:
        super().__init__()
        self.query_dim = query_dim
        self.gate = nn.Linear(query_dim, 1)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        self.gate.reset_parameters()

    def forward(self, query: torch.Tensor, vocab_logits: torch.Tensor, pointer_logits: torch.Tensor,
                pointer_vocab_index: torch.Tensor | None = None) -> CopyGateOutput:
        b = query.shape[0]
        if query.dim() != 2 or query.shape[1] != self.query_dim:
            raise ValueError(f"CopyGate: expected query of shape (B, {self.query_dim}), found {_shape(query)}")
        if vocab_logits.dim() != 2 or vocab_logits.shape[0] != b:
            raise ValueError(f"CopyGate: expected vocab_logits of shape ({b}, V), found {_shape(vocab_logits)}")
        if pointer_logits.dim() != 2 or pointer_logits.shape[0] != b:
            raise ValueError(f"CopyGate: expected pointer_logits of shape ({b}, T), found {_shape(pointer_logits)}")
        real = torch.isfinite(pointer_logits)  # (B, T)
        has_slots = real.any(dim=1)  # (B,)
        copy = torch.sigmoid(self.gate(query)).squeeze(-1) * has_slots  # (B,)
        vocab = torch.softmax(vocab_logits, dim=-1)  # (B, V)
        safe = pointer_logits.masked_fill(~real, torch.finfo(pointer_logits.dtype).min)
        pointer = torch.softmax(safe, dim=-1) * real  # (B, T); all-padding rows -> zeros
        vocab_part = (1 - copy).unsqueeze(-1) * vocab  # (B, V)
        pointer_part = copy.unsqueeze(-1) * pointer  # (B, T)
        if pointer_vocab_index is not None:
            if tuple(pointer_vocab_index.shape) != tuple(pointer_logits.shape):
                raise ValueError(f"CopyGate: expected pointer_vocab_index of shape {tuple(pointer_logits.shape)}, "
                                 f"found {_shape(pointer_vocab_index)}")
            v = vocab_logits.shape[1]
            idx = pointer_vocab_index.long()
            if bool((idx >= v).any()):
                raise ValueError(f"CopyGate: expected pointer_vocab_index values < V={v} (or -1), found {int(idx.max())}")
            in_vocab = idx >= 0  # (B, T)
            vocab_part = vocab_part.scatter_add(1, idx.clamp(min=0), pointer_part * in_vocab)
            pointer_part = pointer_part * ~in_vocab
        probs = torch.cat([vocab_part, pointer_part], dim=-1)  # (B, V + T)
        return CopyGateOutput(probs=probs, copy_prob=copy, vocab_probs=vocab, pointer_probs=pointer)

    def copy_probability(self, query: torch.Tensor, pointer_logits: torch.Tensor) -> torch.Tensor:
        """(B,) the ``copy_prob`` of :meth:`forward` alone (the same values), without the mixed
        distribution a caller that only needs the gate would throw away."""
        if query.dim() != 2 or query.shape[1] != self.query_dim:
            raise ValueError(f"CopyGate: expected query of shape (B, {self.query_dim}), found {_shape(query)}")
        if pointer_logits.dim() != 2 or pointer_logits.shape[0] != query.shape[0]:
            raise ValueError(f"CopyGate: expected pointer_logits of shape ({query.shape[0]}, T), "
                             f"found {_shape(pointer_logits)}")
        return torch.sigmoid(self.gate(query)).squeeze(-1) * torch.isfinite(pointer_logits).any(dim=1)  # (B,)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.query_dim})"


@dataclass
class FactScores:
    """Output of :meth:`FactScorer.forward`.

    Fields:
        edge_logits (F,) float: score of each fact, a subgraph edge at a seed, seen from the seed.
        fact_seed (F,) long, fact_other (F,) long: the fact's seed end and other end (flat node index).
        fact_relation (F,) long: its relation id, walked backwards (other -> seed) as ``id + R``.
        fact_graph (F,) long: the example of each fact.
        node_logits (N,) float: per node, the best ``edge logit + side logit`` over the facts it is
            an end of (the seed end takes the "answer is the seed" side, the other end the other);
            ``no_fact`` for a node that is an end of none.
        side_logits (B, 2) float: is the answer the fact's seed end (0) or its other end (1).
        relation_logits (B, R) float: the relation the question asks about.
    """

    edge_logits: torch.Tensor
    fact_seed: torch.Tensor
    fact_other: torch.Tensor
    fact_relation: torch.Tensor
    fact_graph: torch.Tensor
    node_logits: torch.Tensor
    side_logits: torch.Tensor
    relation_logits: torch.Tensor


class FactScorer(nn.Module):
    r"""Scores the facts at the image's entities against the question, FVQA-style.

    A fact is an edge of the subgraph with a seed (an entity of the image) at one end. Its
    score is ``(W_q q) · tanh(W_s k_seed + E[r] + W_o k_other) / sqrt(h)`` plus the question's
    log-probability of the relation ``r`` (a relation classifier over ``q``); each node then
    gets the best score of the facts it is an end of, plus the logit that the answer is on
    its side of the fact (the seed, i.e. the visual concept, or the other, knowledge-base end).
    Fact-retrieval answering as in FVQA (Wang et al. 2018, https://arxiv.org/abs/1606.05433),
    Out of the Box (Narasimhan et al. 2018, https://arxiv.org/abs/1811.00538) and Mucko
    (Zhu et al. 2020, https://arxiv.org/abs/2006.09073), here trained jointly with the pointer.

    Args:
        dim (int): width of the query and of the node keys.
        num_relations (int): relation types R (facts walked backwards use ``R..2R-1``).
        hidden_dim (int | None): width of the scoring space (default None: ``dim``).
        feature_dim (int): per-node scalar features F read with each end of a fact (say, the
            node name's similarity to the question), inside the tanh and as a direct linear
            term of the score; 0: none. Default 0.

    Shapes:
        input: query (B, dim), keys (N, dim) flat node keys of the batch, edge_index (2, E) flat,
        edge_type (E,) in ``[0, R)``, seed (N,) bool, batch (N,) long sorted, node_features
        (N, F) or None.
        output: :class:`FactScores`.
    """

    def __init__(self, dim: int, num_relations: int, hidden_dim: int | None = None, feature_dim: int = 0) -> None:
        super().__init__()
        self.dim, self.num_relations, self.hidden_dim = dim, num_relations, hidden_dim or dim
        self.feature_dim = feature_dim
        h = self.hidden_dim
        self.q = nn.Linear(dim, h)
        self.seed_key = nn.Linear(dim, h)
        self.other_key = nn.Linear(dim, h, bias=False)
        self.rel = nn.Embedding(2 * num_relations, h)
        self.side = nn.Linear(dim, 2)
        self.relation = nn.Linear(dim, num_relations)
        self.no_fact = nn.Parameter(torch.zeros(1))
        if feature_dim:
            self.feat = nn.Linear(2 * feature_dim, h, bias=False)
            self.feat_direct = nn.Linear(2 * feature_dim, 1, bias=False)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for m in (self.q, self.seed_key, self.other_key, self.side, self.relation):
            m.reset_parameters()
        if self.feature_dim:
            self.feat.reset_parameters()
            nn.init.zeros_(self.feat_direct.weight)
        nn.init.normal_(self.rel.weight, std=0.02)
        nn.init.zeros_(self.no_fact)

    def forward(self, query: torch.Tensor, keys: torch.Tensor, edge_index: torch.Tensor, edge_type: torch.Tensor,
                seed: torch.Tensor, batch: torch.Tensor, node_features: torch.Tensor | None = None) -> FactScores:
        B, N, R = query.shape[0], keys.shape[0], self.num_relations
        if query.dim() != 2 or query.shape[1] != self.dim:
            raise ValueError(f"FactScorer: expected query of shape (B, {self.dim}), found {_shape(query)}")
        if keys.dim() != 2 or keys.shape[1] != self.dim:
            raise ValueError(f"FactScorer: expected keys of shape (N, {self.dim}), found {_shape(keys)}")
        if seed.shape != (N,) or batch.shape != (N,):
            raise ValueError(f"FactScorer: expected seed and batch of shape ({N},), found {_shape(seed)}, "
                             f"{_shape(batch)}")
        if (node_features is None) != (not self.feature_dim) or (
                node_features is not None and tuple(node_features.shape) != (N, self.feature_dim)):
            raise ValueError(f"FactScorer: expected node_features of shape ({N}, {self.feature_dim})"
                             f"{'' if self.feature_dim else ' or None'}, found "
                             f"{None if node_features is None else _shape(node_features)}")
        if edge_type.numel() and (int(edge_type.min()) < 0 or int(edge_type.max()) >= R):
            raise ValueError(f"FactScorer: expected edge types in [0, {R}), found {int(edge_type.max())}")
        src, dst = edge_index  # (E,), (E,)
        loop = src == dst
        fwd = seed[src] & ~loop  # seed -> other, as stored
        bwd = seed[dst] & ~loop  # other -> seed: the relation walked backwards
        f_seed = torch.cat([src[fwd], dst[bwd]])  # (F,)
        f_other = torch.cat([dst[fwd], src[bwd]])  # (F,)
        f_rel = torch.cat([edge_type[fwd], edge_type[bwd] + R])  # (F,)
        f_graph = batch[f_seed]  # (F,)
        rel_logits = self.relation(query)  # (B, R)
        side = self.side(query)  # (B, 2)
        q = self.q(query)  # (B, h)
        # Project the N nodes once and gather per fact (a fact's ends repeat across facts).
        pre = (self.seed_key(keys).index_select(0, f_seed) + self.rel(f_rel)
               + self.other_key(keys).index_select(0, f_other))  # (F, h)
        pair = None
        if node_features is not None:
            pair = torch.cat([node_features[f_seed], node_features[f_other]], dim=-1)  # (F, 2 F_n)
            pre = pre + self.feat(pair)
        edge = (torch.tanh(pre) * q[f_graph]).sum(-1) / math.sqrt(self.hidden_dim)  # (F,)
        if pair is not None:
            edge = edge + self.feat_direct(pair).squeeze(-1)
        edge = edge + torch.log_softmax(rel_logits, -1)[f_graph, f_rel % R]  # the asked relation's prior
        # Each fact proposes both its ends; a node keeps its best proposal.
        cand_node = torch.cat([f_seed, f_other])  # (2F,)
        cand = torch.cat([edge + side[f_graph, 0], edge + side[f_graph, 1]])  # (2F,)
        node = torch.full((N,), float("-inf"), dtype=keys.dtype, device=keys.device)
        node = node.scatter_reduce(0, cand_node, cand, reduce="amax", include_self=True)  # (N,)
        node = torch.where(torch.isfinite(node), node, self.no_fact.to(keys.dtype).expand(N))
        return FactScores(edge_logits=edge, fact_seed=f_seed, fact_other=f_other, fact_relation=f_rel,
                          fact_graph=f_graph, node_logits=node, side_logits=side, relation_logits=rel_logits)

    def __repr__(self) -> str:
        return (f"{type(self).__name__}({self.dim}, num_relations={self.num_relations}, hidden_dim={self.hidden_dim}"
                + (f", feature_dim={self.feature_dim})" if self.feature_dim else ")"))
