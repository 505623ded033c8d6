"""Configuration of the CommonsenseQA cross-encoder (:class:`~ravlm_graph.models.csqa.modeling.CSQAModel`)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Mapping

from ravlm_graph.nn.gnn import GNN_KINDS
from ravlm_graph.retrieval.config import RETRIEVAL_METHODS
from ravlm_graph.utils.config import Config, _check_range

FORMAT = "ravlm-csqa"
FORMAT_VERSION = 2

#: Model variants: the fine-tuned trunk alone, and the trunk joined with the graph module.
VARIANTS: tuple[str, ...] = ("no_kg", "kg")
POOLINGS: tuple[str, ...] = ("mean", "cls")

# Node origins seen by the graph encoder: 0-3 are the retriever's codes, with its second
# origin slot ("image") carrying the answer-choice concepts; 4 marks the context node.
ORIGIN_OTHER, ORIGIN_QUESTION, ORIGIN_CHOICE, ORIGIN_BOTH, ORIGIN_CONTEXT = 0, 1, 2, 3, 4
NUM_ORIGINS = 5


@dataclass(frozen=True)
class CSQAConfig(Config):
    """Settings of the CommonsenseQA scorer (saved as ``config.json`` with the weights).

    Training settings (epochs, learning rates, seed) belong to
    :class:`~ravlm_graph.training.TrainConfig`, not here.

    Args:
        use_kg (bool): add the graph module (the ``kg`` variant). Default False.
        text_backbone (str): ``"minilm"`` (the packaged all-MiniLM-L6-v2) or a local model
            folder with its tokenizer. Default ``"minilm"``.
        trunk_layers (int): keep the trunk's first N transformer layers (0: all). Default 0.
        train_layers (int): fine-tune only the top N of the kept layers; the lower ones stay
            as pretrained, so backpropagation stops at them (0: fine-tune all). Default 2.
        freeze_embeddings (bool): keep the trunk's token embeddings fixed (fewer parameters
            to update; the vocabulary is mostly unseen in a small training set). Default True.
        pooling (str): pair representation: ``"mean"`` (mean of the token states, the
            pooling the packaged MiniLM was trained with) or ``"cls"`` (the [CLS] state).
            Default ``"mean"``.
        max_length (int): tokens per (question, choice) pair; longer pairs are truncated.
            Default 64.
        hidden (int): width of the scoring MLP. Default 256.
        dropout (float): dropout of the MLP and the GNN. Default 0.1.
        node_dim (int): width of the node-name embeddings (set from the encoder). Default 384.
        num_relations (int): relation types of the store (set from the store). Default 0.
        gnn_kind (str): graph convolution. Default ``"gatv2"``.
        gnn_hidden (int): node-state width. Default 64.
        gnn_layers (int): message-passing layers. Default 2.
        gnn_heads (int): attention heads; must divide ``gnn_hidden``. Default 4.
        budget (int): nodes per retrieved subgraph, seeds included. Default 32.
        method (str): retrieval pruning. Default ``"ppr"``.
        max_facts (int): facts per choice written to the predictions. Default 3.
        link_features (bool): the ``kg`` variant also reads, per pair, how its subgraph links
            the question's concepts to the choice's (edge counts per relation and
            direction, two-step paths; see
            :func:`~ravlm_graph.models.csqa.processing.link_features`) through a small
            layer into the scoring MLP. Default False.
        text_facts (int): the ``kg`` variant also reads up to N facts of the pair's subgraph
            as text after the choice (``[CLS] question [SEP] choice ; fact ; fact [SEP]``;
            facts linking a question concept to a choice concept first, then the choice's
            own facts, most relevant first; the facts are cut, never the question, to
            ``max_length``). 0: none. Default 0.
    """

    use_kg: bool = False
    text_backbone: str = "minilm"
    trunk_layers: int = 0
    train_layers: int = 2
    freeze_embeddings: bool = True
    pooling: str = "mean"
    max_length: int = 64
    hidden: int = 256
    dropout: float = 0.1
    node_dim: int = 384
    num_relations: int = 0
    gnn_kind: str = "gatv2"
    gnn_hidden: int = 64
    gnn_layers: int = 2
    gnn_heads: int = 4
    budget: int = 32
    method: str = "ppr"
    max_facts: int = 3
    link_features: bool = False
    text_facts: int = 0

    def __post_init__(self) -> None:
        o = "CSQAConfig"
        for name in ("max_length", "hidden", "node_dim", "gnn_hidden", "gnn_heads", "budget"):
            _check_range(o, name, getattr(self, name), lo=1, kind=int)
        for name in ("trunk_layers", "train_layers", "num_relations", "gnn_layers", "max_facts", "text_facts"):
            _check_range(o, name, getattr(self, name), lo=0, kind=int)
        _check_range(o, "dropout", self.dropout, lo=0.0, hi=0.99)
        if self.pooling not in POOLINGS:
            raise ValueError(f"{o}.pooling: expected one of {POOLINGS}, found {self.pooling!r}")
        if self.method not in RETRIEVAL_METHODS:
            raise ValueError(f"{o}.method: expected one of {RETRIEVAL_METHODS}, found {self.method!r}")
        if self.gnn_kind not in GNN_KINDS:
            raise ValueError(f"{o}.gnn_kind: expected one of {GNN_KINDS}, found {self.gnn_kind!r}")
        if self.gnn_hidden % self.gnn_heads:
            raise ValueError(f"{o}.gnn_heads: expected a divisor of gnn_hidden={self.gnn_hidden}, "
                             f"found {self.gnn_heads}")
        if not isinstance(self.text_backbone, str) or not self.text_backbone:
            raise ValueError(f"{o}.text_backbone: expected 'minilm' or a model folder, found {self.text_backbone!r}")

    @property
    def variant(self) -> str:
        return "kg" if self.use_kg else "no_kg"

