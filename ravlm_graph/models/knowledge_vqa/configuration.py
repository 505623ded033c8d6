"""Configuration of the built-in knowledge-VQA model (:class:`KnowledgeVQAConfig`, saved as
``config.json`` next to the weights), and the names of its checkpoint format and placeholders."""

from __future__ import annotations

from dataclasses import dataclass, field

from ravlm_graph.nn.fusion import FUSIONS, Fusion
from ravlm_graph.nn.gnn import GNNS, MAX_LAYERS, MAX_RELATIONS, MAX_WIDTH
from ravlm_graph.utils.config import Config, check_bool, check_choice, check_fraction, check_int, check_range

FORMAT = "ravlm-knowledge-vqa"
#: 2: fusion weights under ``fusion.`` (1: ``projector.``, ``xattn.``, ``classic.``); version 1 still loads.
FORMAT_VERSION = 2
KG_TOKEN = "[unused0]"
IMG_TOKEN = "[unused1]"
NUM_ORIGINS = 4
#: What may read the image for the model (``KnowledgeVQAConfig.vision_encoder``).
VISION_ENCODERS = ("scratch", "efficientnet_lite0")


@dataclass
class KnowledgeVQAConfig(Config):
    """Configuration of :class:`KnowledgeVQAModel` (saved as ``config.json``).

    Args:
        answer_vocab (list[str]): fixed answers of the generator head (concepts, yes, no).
        fusion (str): a name registered in :data:`~ravlm_graph.nn.fusion.FUSIONS`. Default ``"graph_tokens"``.
        gnn_kind (str): a name registered in :data:`~ravlm_graph.nn.gnn.GNNS`. Default ``"gatv2"``.
        gnn_layers (int): GNN layers (0: no message passing; node states are the projected
            node features, origin and relevance). Default 2.
        gnn_hidden (int): GNN width. Default 256.
        num_relations (int): relation types of the KG. Default 64.
        num_graph_tokens (int): graph tokens given to the trunk (top-N nodes). Default 32.
        inference_graph_tokens (int | None): graph tokens at inference (eval mode), when fewer
            than were trained with are enough (the projector has no per-token weights, so the
            count can change after training; fewer tokens make the trunk cheaper). Default
            None: ``num_graph_tokens``.
        max_facts (int): verbalised facts in the text for ``verbalized``/``both``. Default 24.
        image_size (int): input side in pixels. Default 128.
        vision_channels (list[int]): CNN stage widths (each halves the resolution).
        vision_grid (int): image tokens per side (G = grid²). Default 4.
        vision_encoder (str): what reads the image: ``"scratch"`` (a small CNN of
            ``vision_channels``, trained with the model) or ``"efficientnet_lite0"`` (the
            packaged ImageNet EfficientNet-lite0, frozen; its last feature map is pooled to the
            grid and projected; needs the ``photo`` extra; its weights are not saved with the
            model, they are read from the package). Default ``"scratch"``.
        text_backbone (str): ``"minilm"`` (the packaged all-MiniLM-L6-v2) or a local path.
        trunk_layers (int | None): keep only the first N layers of the trunk (speed); None keeps all.
        train_text_layers (int): top trunk layers fine-tuned; the rest stay frozen. Default 2.
        max_question_tokens (int): question length limit in tokens. Default 48.
        max_text_tokens (int): limit for question + facts. Default 256.
        dropout (float): dropout in the heads. Default 0.1.
        seed_relation_keys (bool): add to each node's pointer key what links it to the
            entities: the relation (and direction) of each edge to a seed, with the seed's
            origin and box. Default False.
        verify_head (bool): raise the "yes" logit by the best pointer score among the
            question's own concepts (is what the question names linked to the entity it
            asks about?). Default False.
        seed_link_mlp (bool): with ``seed_relation_keys``, encode each edge to a seed by a
            small MLP over (relation, seed position, seed origin) instead of a sum, so that a
            key can say "linked by UsedFor to the object at the bottom left" (a conjunction
            a sum of linear terms cannot express). Default False.
        entity_text (bool): also write the image's entities into the trunk's text, each
            with its position in words ("left : mouse ; right : ticket ;"), so that the trunk
            can resolve "the thing on the left" by attention. Default False.
        trunk_init (str): ``"pretrained"`` (the backbone's weights) or ``"scratch"``
            (same architecture and tokenizer, weights re-initialised and all trained;
            for measuring what the pretrained weights bring). Default ``"pretrained"``.
        fact_scorer (bool): score the subgraph's facts at the image's entities against the
            question (:class:`~ravlm_graph.nn.fusion.pointer.FactScorer`: edge, relation and
            answer-side scores) and add each node's best fact score to its pointer logit.
            Default False.
        fact_loss_weight (float): with ``fact_scorer``, weight of its auxiliary losses when the
            examples carry their supporting fact (FVQA): the fact among the scored edges, the
            question's relation, the answer's side of the fact. Default 0.5.
        fact_features (bool): with ``fact_scorer``, the scorer also reads two scalars of each
            end of a fact: the cosine of its name's embedding with the question's (the
            retriever's text encoder) and whether the question names it. Default False.
    """

    answer_vocab: list[str] = field(default_factory=lambda: ["yes", "no"])
    fusion: str = "graph_tokens"
    gnn_kind: str = "gatv2"
    gnn_layers: int = 2
    gnn_hidden: int = 256
    num_relations: int = 64
    num_graph_tokens: int = 32
    inference_graph_tokens: int | None = None
    max_facts: int = 24
    image_size: int = 128
    vision_channels: list[int] = field(default_factory=lambda: [32, 64, 128, 192])
    vision_grid: int = 4
    vision_encoder: str = "scratch"
    text_backbone: str = "minilm"
    trunk_layers: int | None = None
    train_text_layers: int = 2
    max_question_tokens: int = 48
    max_text_tokens: int = 256
    dropout: float = 0.1
    node_dim: int = 384
    seed_relation_keys: bool = False
    verify_head: bool = False
    seed_link_mlp: bool = False
    entity_text: bool = False
    trunk_init: str = "pretrained"
    fact_scorer: bool = False
    fact_loss_weight: float = 0.5
    fact_features: bool = False

    def validate(self) -> None:
        o = "KnowledgeVQAConfig"
        if self.trunk_init not in ("pretrained", "scratch"):
            raise ValueError(f"{o}.trunk_init: expected 'pretrained' or 'scratch', found {self.trunk_init!r}")
        check_choice(o, "fusion", self.fusion, FUSIONS)
        check_choice(o, "vision_encoder", self.vision_encoder, VISION_ENCODERS)
        check_choice(o, "gnn_kind", self.gnn_kind, GNNS)
        if not isinstance(self.answer_vocab, (list, tuple)) or not self.answer_vocab \
                or len(set(self.answer_vocab)) != len(self.answer_vocab) \
                or not all(isinstance(a, str) for a in self.answer_vocab):
            raise ValueError(f"{o}.answer_vocab: expected a non-empty list of distinct answers")
        limits = {"gnn_layers": MAX_LAYERS, "gnn_hidden": MAX_WIDTH, "num_relations": MAX_RELATIONS,
                  "num_graph_tokens": 4096, "max_facts": 4096, "image_size": 4096, "vision_grid": 64,
                  "max_question_tokens": 4096, "max_text_tokens": 8192, "node_dim": MAX_WIDTH}
        for name, hi in limits.items():
            check_int(o, name, getattr(self, name), 0 if name == "gnn_layers" else 1, hi)
        check_int(o, "train_text_layers", self.train_text_layers, 0, 1024)
        if self.inference_graph_tokens is not None:
            check_int(o, "inference_graph_tokens", self.inference_graph_tokens, 1, 4096)
        if self.trunk_layers is not None:
            check_int(o, "trunk_layers", self.trunk_layers, 1, 1024)
        if not isinstance(self.vision_channels, (list, tuple)) or not self.vision_channels:
            raise ValueError(f"{o}.vision_channels: expected a non-empty list of widths, found {self.vision_channels!r}")
        for c in self.vision_channels:
            check_int(o, "vision_channels", c, 1, 4096)
        check_fraction(o, "dropout", self.dropout)
        check_range(o, "fact_loss_weight", self.fact_loss_weight, 0.0, 100.0)
        if self.fact_features and not self.fact_scorer:
            raise ValueError(f"{o}.fact_features: the fact scorer's node features need fact_scorer=True")
        for name in ("seed_relation_keys", "verify_head", "seed_link_mlp", "entity_text", "fact_scorer",
                     "fact_features"):
            check_bool(o, name, getattr(self, name))
        if not isinstance(self.text_backbone, str) or not self.text_backbone:
            raise ValueError(f"{o}.text_backbone: expected 'minilm' or a local folder, found {self.text_backbone!r}")
        if self.vision_encoder == "efficientnet_lite0" and self.image_size < 32:
            raise ValueError(f"{o}.image_size {self.image_size} is too small for EfficientNet-lite0 (at least 32)")
        if self.vision_encoder == "scratch" and self.image_size < 2 ** len(self.vision_channels):
            raise ValueError(f"{o}.image_size {self.image_size} is too small for "
                             f"{len(self.vision_channels)} CNN stages")

    @property
    def fusion_class(self) -> type[Fusion]:
        """The registered :class:`~ravlm_graph.nn.fusion.Fusion` subclass of ``fusion``."""
        return FUSIONS.get(self.fusion)

    @property
    def uses_graph(self) -> bool:
        """Whether the model reads a retrieved subgraph (asked of the fusion kind)."""
        return self.fusion_class.uses_graph
