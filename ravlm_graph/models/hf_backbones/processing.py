"""From (image, question, entities) to :class:`~.modeling.GenBatch`: retrieval, node features,
prompt and answer tokens, and the frozen image encoder's states computed once.

Answers are written as text: a concept ``animal_skin`` is the answer ``"animal skin"``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import torch

from ravlm_graph.utils.graph import GraphBatch, GraphData
from ravlm_graph.types import Entity
from ravlm_graph.models.knowledge_vqa.processing import box_features
from ravlm_graph.models.hf_backbones.modeling import IGNORE_INDEX, GenBatch, KnowledgeGenerator, _left_pad, _pad_id

__all__ = ["GenExample", "GenerativeFeatureBuilder", "answer_text", "collate_generative"]

log = logging.getLogger(__name__)


def answer_text(concept: str) -> str:
    """A KG concept as answer text (``animal_skin`` -> ``animal skin``)."""
    return " ".join(str(concept).replace("_", " ").split())


@dataclass
class GenExample:
    """One question, ready to batch.

    Fields:
        prompt_ids: the prompt's token ids; answer_ids: the target answer's ids + EOS (empty at
        inference); pixel_values (3, H, W) or image_states (P, E) float16 (frozen encoder);
        node_x (N, D) float16; edge_index (2, E); edge_type (E,); origin (N,); relevance (N,);
        box (N, 5); name_ids (N, K) (-1 padded); node_names; answers (all valid, as given);
        target (the answer text trained on); subgraph and entities (evidence).
    """

    prompt_ids: list[int]
    answer_ids: list[int]
    pixel_values: torch.Tensor | None
    image_states: torch.Tensor | None
    node_x: np.ndarray
    edge_index: np.ndarray
    edge_type: np.ndarray
    origin: np.ndarray
    relevance: np.ndarray
    box: np.ndarray
    name_ids: np.ndarray
    node_names: list[str]
    answers: tuple[str, ...] = ()
    target: str = ""
    subgraph: Any = None
    entities: list[Entity] = field(default_factory=list)
    meta: dict = field(default_factory=dict)


class GenerativeFeatureBuilder:
    """Builds :class:`GenExample` s for one :class:`KnowledgeGenerator`.

    Args:
        model: the generator (its backbone tokenises and encodes images).
        retriever: a :class:`~ravlm_graph.retrieval.retriever.SubgraphRetriever` (None when the
            model does not read the graph).
        budget (int): node budget of the retrieved subgraphs (default 96).
        cache_images (bool): store the frozen image encoder's states instead of pixels
            (encoder-decoder backbones only; default True).
    """

    def __init__(self, model: KnowledgeGenerator, retriever=None, budget: int = 96, cache_images: bool = True):
        self.model = model
        self.config = model.config
        self.retriever = retriever
        self.budget = budget
        bb = model.backbone
        frozen_encoder = not model.is_llava and not any(p.requires_grad for p in bb.model.encoder.parameters())
        self.cache_images = cache_images and frozen_encoder
        if self.config.use_graph and retriever is None:
            raise ValueError("a generator that reads the graph (use_graph=True) needs a retriever (a knowledge graph)")
        self._names: dict[str, list[int]] = {}
        self._vectors: dict[str, np.ndarray] = {}

    def encode_images(self, images) -> list[torch.Tensor] | None:
        """The frozen encoder's states of several images in one pass (None when not cached)."""
        if not self.cache_images:
            return None
        bb = self.model.backbone
        with torch.no_grad():
            states = bb.encode_pixels(bb.pixel_values(list(images))).to(torch.float16).cpu()
        return list(states)

    def _name_ids(self, name: str) -> list[int]:
        ids = self._names.get(name)
        if ids is None:
            tok = self.model.backbone.tokenizer
            ids = list(tok(" " + answer_text(name), add_special_tokens=False)["input_ids"])[: self.config.name_pieces]
            self._names[name] = ids
        return ids

    def _node_features(self, sg, names: list[str]) -> np.ndarray:
        if self.config.node_features == "retriever":
            return self.retriever.embeddings.get(sg.node_id.numpy(), dtype=np.float16)
        table = self.model.backbone.word_embeddings.weight
        rows = []
        with torch.no_grad():
            for n in names:
                v = self._vectors.get(n)
                if v is None:
                    ids = self._name_ids(n)
                    v = (table[torch.tensor(ids, dtype=torch.long, device=table.device)].float().mean(0) if ids
                         else table.new_zeros(table.shape[1], dtype=torch.float32)).cpu().numpy().astype(np.float16)
                    self._vectors[n] = v
                rows.append(v)
        return np.stack(rows)

    def _prompt(self, question: str) -> list[int]:
        bb = self.model.backbone
        if self.model.is_llava:
            return bb.prompt_ids(question, self.config.prompt)
        return bb.prompt_ids(question)

    def build(self, image, question: str, entities: Sequence[Entity], answers: Sequence[str] = (),
              meta: dict | None = None, image_states: torch.Tensor | None = None) -> GenExample:
        """One example; ``answers`` (KG concepts or text) empty at inference; ``image_states``
        from :meth:`encode_images` when already computed."""
        if not isinstance(question, str) or not question.strip():
            raise ValueError("expected a non-empty question")
        cfg = self.config
        bb = self.model.backbone
        states = pv = None
        if self.cache_images:
            states = image_states if image_states is not None else self.encode_images([image])[0]
        else:
            pv = bb.pixel_values([image])[0]
        sg = None
        names: list[str] = []
        k = cfg.name_pieces
        x = np.zeros((0, cfg.node_dim), dtype=np.float16)
        box = np.zeros((0, 5), dtype=np.float32)
        rel = np.zeros(0, dtype=np.float32)
        ei, et = np.zeros((2, 0), dtype=np.int64), np.zeros(0, dtype=np.int64)
        origin = np.zeros(0, dtype=np.int64)
        if cfg.use_graph:
            sg = self.retriever.retrieve(list(entities), question, budget=self.budget)
            if not sg.is_empty:
                names = list(sg.node_names)
                x = self._node_features(sg, names)
                box = np.zeros((len(names), 5), dtype=np.float32)
                w, h = image.size
                for e in entities:
                    if e.box is not None and e.origin == "image":
                        try:
                            box[sg.index_of(e.concept)] = box_features(e.box, w, h)
                        except KeyError:
                            continue
                rel = sg.node_relevance.numpy().astype(np.float32)
                ei, et = sg.edge_index.numpy(), sg.edge_type.numpy()
                origin = sg.origin.numpy()
            else:
                log.warning("empty subgraph for %r (entities %s)", question[:60], [e.concept for e in entities])
        name_ids = np.full((len(names), k), -1, dtype=np.int64)
        if cfg.copies:
            for i, n in enumerate(names):
                ids = self._name_ids(n)
                name_ids[i, : len(ids)] = ids
        ans = tuple(dict.fromkeys(answers))
        target = ""
        answer_ids: list[int] = []
        if ans:
            in_graph = [a for a in ans if a in set(names)]
            target = answer_text(in_graph[0] if in_graph else ans[0])
            answer_ids = bb.answer_ids(target, cfg.max_answer_tokens)
        return GenExample(prompt_ids=self._prompt(question), answer_ids=answer_ids, pixel_values=pv,
                          image_states=states, node_x=x, edge_index=ei, edge_type=et, origin=origin, relevance=rel,
                          box=box, name_ids=name_ids, node_names=names, answers=ans, target=target, subgraph=sg,
                          entities=list(entities), meta=dict(meta or {}))


def collate_generative(examples: Sequence[GenExample], model_or_config, with_answers: bool = True) -> GenBatch:
    """Stack examples: left-padded prompt (+ answer) ids, labels on the answer, images, a PyG batch."""
    config = getattr(model_or_config, "config", model_or_config)
    tokenizer = getattr(model_or_config, "tokenizer", None)
    pad = _pad_id(tokenizer) if tokenizer is not None else 0
    rows, label_rows = [], []
    for e in examples:
        ids = list(e.prompt_ids)
        labels = [IGNORE_INDEX] * len(ids)
        if with_answers:
            if not e.answer_ids:
                raise ValueError(f"collate_generative: example {e.meta.get('qid', '?')} has no answer to train on")
            ids += e.answer_ids
            labels += e.answer_ids
        rows.append(ids)
        label_rows.append(labels)
    input_ids, mask = _left_pad(rows, pad)
    labels = _left_pad(label_rows, IGNORE_INDEX)[0] if with_answers else None
    pixel_values = image_states = None
    if examples[0].image_states is not None:
        image_states = torch.stack([e.image_states for e in examples]).float()
    else:
        pixel_values = torch.stack([e.pixel_values for e in examples])
    graph = name_ids = None
    if config.use_graph:
        datas = []
        for e in examples:
            n = len(e.node_names)
            datas.append(GraphData(x=torch.from_numpy(e.node_x.astype(np.float32)).reshape(n, config.node_dim),
                              edge_index=torch.from_numpy(np.asarray(e.edge_index, dtype=np.int64)).reshape(2, -1),
                              edge_type=torch.from_numpy(np.asarray(e.edge_type, dtype=np.int64)),
                              origin=torch.from_numpy(np.asarray(e.origin, dtype=np.int64)),
                              node_relevance=torch.from_numpy(np.asarray(e.relevance, dtype=np.float32)),
                              box=torch.from_numpy(np.asarray(e.box, dtype=np.float32)).reshape(n, 5), num_nodes=n))
        graph = GraphBatch.from_data_list(datas)
        name_ids = torch.from_numpy(np.concatenate([e.name_ids for e in examples]) if examples else
                                    np.zeros((0, config.name_pieces), dtype=np.int64)).reshape(-1, config.name_pieces)
    return GenBatch(input_ids=input_ids, attention_mask=mask, labels=labels, pixel_values=pixel_values,
                    image_states=image_states, graph=graph, name_ids=name_ids,
                    node_names=[e.node_names for e in examples])
