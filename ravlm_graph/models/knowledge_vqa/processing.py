"""From records to model inputs: entities -> subgraph -> tensors, and batch collation.

An :class:`Example` holds everything the model needs for one question, computed
once (retrieval, node-name embeddings, tokenisation) so that training epochs only
collate tensors.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import torch

from ravlm_graph.utils.graph import GraphBatch
from ravlm_graph.types import Entity
from ravlm_graph.models.knowledge_vqa.configuration import IMG_TOKEN, KG_TOKEN, KnowledgeVQAConfig
from ravlm_graph.models.knowledge_vqa.modeling import VQABatch

log = logging.getLogger(__name__)


@dataclass
class Example:
    """One question, ready to batch.

    Fields:
        pixels (3, S, S) uint8; input_ids list[int]; node_x (N, D) float16; edge_index (2, E);
        edge_type (E,); origin (N,); relevance (N,); box (N, 5);
        node_names; vocab_ids (valid answers in the vocabulary); node_targets (nodes that are
        valid answers); answers (all valid answers); subgraph (the retrieved Subgraph, kept
        for evidence) and entities; support (visual end, other end, relation id, answer side) of
        the supporting fact when known (-1 for an unknown part; see ``FeatureBuilder.build``);
        question_sim (N,) float32: cosine of each node name with the question (``fact_features``).
    """

    pixels: torch.Tensor
    input_ids: list[int]
    node_x: np.ndarray
    edge_index: np.ndarray
    edge_type: np.ndarray
    origin: np.ndarray
    relevance: np.ndarray
    box: np.ndarray
    node_names: list[str]
    vocab_ids: list[int] = field(default_factory=list)
    node_targets: list[int] = field(default_factory=list)
    answers: tuple[str, ...] = ()
    subgraph: Any = None
    entities: list[Entity] = field(default_factory=list)
    meta: dict = field(default_factory=dict)
    support: tuple[int, int, int, int] = (-1, -1, -1, -1)
    question_sim: np.ndarray | None = None


def image_tensor(image, size: int) -> torch.Tensor:
    """RGB PIL image -> (3, size, size) uint8."""
    from PIL import Image

    im = image.convert("RGB")
    if im.size != (size, size):
        im = im.resize((size, size), Image.BILINEAR)
    arr = np.asarray(im, dtype=np.uint8)
    return torch.from_numpy(arr.copy()).permute(2, 0, 1).contiguous()


def box_features(box, width: int, height: int) -> list[float]:
    """(x0, y0, x1, y1) pixels -> (cx, cy, w, h, 1) in [0, 1]."""
    x0, y0, x1, y1 = box
    return [(x0 + x1) / 2 / width, (y0 + y1) / 2 / height, (x1 - x0) / width, (y1 - y0) / height, 1.0]


def position_words(box, width: int, height: int) -> str:
    """Where a box sits in the image, in words: "top left", "right", "middle", ..."""
    x0, y0, x1, y1 = box
    cx, cy = (x0 + x1) / 2 / max(1, width), (y0 + y1) / 2 / max(1, height)
    col = "left" if cx < 1 / 3 else "right" if cx > 2 / 3 else ""
    row = "top" if cy < 1 / 3 else "bottom" if cy > 2 / 3 else ""
    return " ".join(w for w in (row, col) if w) or "middle"


def entity_phrase(entities: Sequence[Entity], width: int, height: int) -> str:
    """The image's entities as text, with where each one is: "left : mouse ; right : ticket ;"."""
    parts = []
    for e in entities:
        if e.origin != "image":
            continue
        where = position_words(e.box, width, height) + " : " if e.box is not None else ""
        parts.append(f"{where}{e.concept.replace('_', ' ')} ;")
    return " ".join(parts)


class FeatureBuilder:
    """Turns (image, question, entities) into :class:`Example` s for one model config.

    Args:
        config: the model configuration (fusion, limits, answer vocabulary).
        tokenizer: the trunk's tokenizer.
        retriever: a :class:`~ravlm_graph.retrieval.SubgraphRetriever` (None when the fusion
            kind uses no graph); its config's ``budget`` is the node budget of the subgraphs.

    What goes into the text (verbalised facts, a ``<kg>`` placeholder, an ``<img>``
    placeholder) is asked of the fusion kind (``config.fusion_class``).
    """

    def __init__(self, config: KnowledgeVQAConfig, tokenizer, retriever=None):
        self.config = config
        self.fusion = config.fusion_class
        self.tok = tokenizer
        self.retriever = retriever
        self.vocab_index = {a: i for i, a in enumerate(config.answer_vocab)}
        self.kg_id = tokenizer.convert_tokens_to_ids(KG_TOKEN)
        self.img_id = tokenizer.convert_tokens_to_ids(IMG_TOKEN)
        if self.fusion.uses_graph and retriever is None:
            raise ValueError(f"fusion={config.fusion!r} needs a retriever (a knowledge graph)")

    def _text_ids(self, question: str, facts: Sequence[str], entity_text: str = "") -> list[int]:
        cfg = self.config
        q = self.tok(question, add_special_tokens=False)["input_ids"]
        if len(q) > cfg.max_question_tokens:
            raise ValueError(f"question is {len(q)} tokens long; the model takes at most {cfg.max_question_tokens}: "
                             f"{question[:80]!r}")
        cls_, sep = self.tok.cls_token_id, self.tok.sep_token_id
        ids = [cls_] + q + [sep]
        if entity_text:
            ids += self.tok(entity_text, add_special_tokens=False)["input_ids"][: cfg.max_question_tokens] + [sep]
        if facts:
            room = cfg.max_text_tokens - len(ids) - 4
            f_ids: list[int] = []
            for f in facts:
                t = self.tok(f, add_special_tokens=False)["input_ids"] + [self.tok.convert_tokens_to_ids(";")]
                if len(f_ids) + len(t) > room:
                    break
                f_ids += t
            ids += f_ids + [sep]
        if self.fusion.graph_placeholder:
            ids += [self.kg_id, sep]
        if self.fusion.image_in_trunk:
            ids += [self.img_id, sep]
        return ids

    def build(self, image, question: str, entities: Sequence[Entity], answers: Sequence[str] = (),
              meta: dict | None = None, fact: tuple[str, str, str] | None = None,
              question_embedding: np.ndarray | None = None, pixels: torch.Tensor | None = None) -> Example:
        """One example; ``answers`` empty at inference.

        ``question_embedding``: the question's unit vector, already computed (an engine embeds
        a batch's questions at once); None: retrieval embeds it. ``pixels``: the image as
        :func:`image_tensor` gives it, already computed (None: computed here).

        ``fact``: the supporting fact when the dataset gives one (FVQA), as ``(visual end,
        relation, other end)``; it becomes the example's ``support`` (node indices of its ends,
        relation id, whether the answer is the other end), the targets of the fact scorer.
        """
        if not isinstance(question, str) or not question.strip():
            raise ValueError("expected a non-empty question")
        cfg = self.config
        qsim = None
        if pixels is None:
            pixels = image_tensor(image, cfg.image_size)
        w, h = image.size
        sg = None
        facts: list[str] = []
        if self.fusion.uses_graph:
            sg = self.retriever.retrieve(list(entities), question, question_embedding=question_embedding)
            if self.fusion.verbalizes_facts and not sg.is_empty:
                facts = sg.verbalize(max_facts=cfg.max_facts)
        ids = self._text_ids(question, facts, entity_phrase(entities, w, h) if cfg.entity_text else "")
        if sg is not None and not sg.is_empty:
            names = list(sg.node_names)
            node_ids = sg.node_id.numpy()
            x = self.retriever.embeddings.get(node_ids, dtype=np.float16)
            box = np.zeros((len(names), 5), dtype=np.float32)
            for e in entities:
                if e.box is not None and e.origin == "image":
                    try:
                        i = sg.index_of(e.concept)
                    except KeyError:
                        continue
                    box[i] = box_features(e.box, w, h)
            rel = sg.node_relevance.numpy().astype(np.float32)
            ei, et = sg.edge_index.numpy(), sg.edge_type.numpy()
            origin = sg.origin.numpy()
            if cfg.fact_features:
                qv = np.asarray(question_embedding if question_embedding is not None
                                else self.retriever.embed_question(question), dtype=np.float32)
                qsim = (x.astype(np.float32) @ qv).astype(np.float32)  # (N,) both unit vectors
        else:
            names, x = [], np.zeros((0, cfg.node_dim), dtype=np.float16)
            box = np.zeros((0, 5), dtype=np.float32)
            rel = np.zeros(0, dtype=np.float32)
            ei, et = np.zeros((2, 0), dtype=np.int64), np.zeros(0, dtype=np.int64)
            origin = np.zeros(0, dtype=np.int64)
        ans = tuple(dict.fromkeys(a for a in answers))
        vocab_ids = [self.vocab_index[a] for a in ans if a in self.vocab_index]
        aset = set(ans)
        node_targets = [i for i, n in enumerate(names) if n in aset] if self.fusion.uses_graph else []
        support = self._support(fact, names, aset) if fact is not None else (-1, -1, -1, -1)
        return Example(pixels=pixels, input_ids=ids, node_x=x, edge_index=ei, edge_type=et, origin=origin,
                       relevance=rel, box=box, node_names=names, vocab_ids=vocab_ids,
                       node_targets=node_targets, answers=ans, subgraph=sg, entities=list(entities),
                       meta=dict(meta or {}), support=support, question_sim=qsim)

    def _support(self, fact: tuple[str, str, str], names: Sequence[str], answers: set) -> tuple[int, int, int, int]:
        """(visual end index, other end index, relation id, answer side) with -1 where unknown."""
        visual, relation, other = fact
        index = {n: i for i, n in enumerate(names)}
        rel = -1
        kg = getattr(self.retriever, "kg", None)
        if kg is not None:
            try:
                rel = int(kg.relation_id(relation))
            except KeyError:  # a relation the KG lacks (FVQA's WebChild comparatives): no relation target
                rel = -1
            if rel >= self.config.num_relations:
                rel = -1
        side = 0 if visual in answers else 1 if other in answers else -1
        return index.get(visual, -1), index.get(other, -1), rel, side


def collate(examples: Sequence[Example], config: KnowledgeVQAConfig, pad_id: int = 0,
            with_targets: bool = True) -> VQABatch:
    """Stack examples into a :class:`VQABatch` (right-padded text, a :class:`GraphBatch` of subgraphs)."""
    B = len(examples)
    lengths = [len(e.input_ids) for e in examples]
    L = max(lengths)
    ids_np = np.full((B, L), pad_id, dtype=np.int64)
    for i, e in enumerate(examples):
        ids_np[i, : lengths[i]] = e.input_ids
    ids = torch.from_numpy(ids_np)
    mask = torch.arange(L).unsqueeze(0) < torch.tensor(lengths).unsqueeze(1)  # (B, L) bool
    pixels = torch.stack([e.pixels for e in examples]).float() / 255.0
    graph = node_target = None
    M = max((len(e.node_names) for e in examples), default=0)
    if config.uses_graph:
        # GraphBatch.from_data_list's batch, built from numpy arrays concatenated once per field
        counts = [len(e.node_names) for e in examples]
        offsets = np.cumsum([0] + counts[:-1]).tolist()
        x = np.concatenate([np.asarray(e.node_x).reshape(n, config.node_dim) for e, n in zip(examples, counts)])
        graph = GraphBatch.from_concatenated(
            counts,
            x=torch.from_numpy(x).float(),  # float16 -> float32, exact (as astype)
            edge_index=torch.from_numpy(np.concatenate(
                [np.asarray(e.edge_index, dtype=np.int64).reshape(2, -1) + o for e, o in zip(examples, offsets)],
                axis=1)),
            edge_type=torch.from_numpy(np.concatenate([np.asarray(e.edge_type, dtype=np.int64).reshape(-1)
                                                       for e in examples])),
            origin=torch.from_numpy(np.concatenate([np.asarray(e.origin, dtype=np.int64).reshape(-1)
                                                    for e in examples])),
            node_relevance=torch.from_numpy(np.concatenate([np.asarray(e.relevance, dtype=np.float32).reshape(-1)
                                                            for e in examples])),
            box=torch.from_numpy(np.concatenate([np.asarray(e.box).reshape(n, 5) for e, n in zip(examples, counts)])))
        if with_targets:
            node_target = torch.zeros(B, M)
            for i, e in enumerate(examples):
                if e.node_targets:
                    node_target[i, e.node_targets] = 1.0
    vocab_target = None
    if with_targets:
        vocab_target = torch.zeros(B, len(config.answer_vocab))
        for i, e in enumerate(examples):
            if e.vocab_ids:
                vocab_target[i, e.vocab_ids] = 1.0
    support = None
    if with_targets and config.uses_graph and config.fact_scorer:
        support = torch.tensor([list(getattr(e, "support", (-1, -1, -1, -1))) for e in examples], dtype=torch.long)
    qsim = None
    if config.uses_graph and config.fact_features:
        qsim = torch.cat([torch.from_numpy(e.question_sim) if getattr(e, "question_sim", None) is not None
                          else torch.zeros(len(e.node_names)) for e in examples]).float()
    return VQABatch(pixel_values=pixels, input_ids=ids, attention_mask=mask, graph=graph,
                    vocab_target=vocab_target,
                    node_target_dense=node_target if with_targets else None,
                    node_names=[e.node_names for e in examples], support_target=support,
                    node_question_sim=qsim)
