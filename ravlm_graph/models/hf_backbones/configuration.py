"""Configurations of the generative models: which backbone, and what is trained around it.

A recipe names a backbone with ``model.backbone = {"kind": ..., "path": ..., ...}``:

* ``"builtin"`` — the CPU pointer model of :mod:`ravlm_graph.models.knowledge_vqa` (answers
  are graph concepts; no generation);
* ``"vision_encoder_decoder"`` — a ``VisionEncoderDecoderModel`` folder (``path``), or the same
  architecture composed from a packaged image encoder (``encoder="efficientnet_lite0"``) and a
  BERT/GPT-2 folder loaded as a decoder with cross-attention (``decoder=FOLDER``); graph
  tokens are appended to the encoder memory;
* ``"llava"`` — a LLaVA-style folder; graph tokens replace a ``<kg>`` placeholder in the prompt.

:data:`BACKBONES` maps each kind to its implementation (resolved on first use).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Mapping

from ravlm_graph.utils.config import Config
from ravlm_graph.utils.registry import Registry
from ravlm_graph.retrieval.embeddings import minilm_path

__all__ = ["BACKBONES", "BACKBONE_KINDS", "BackboneConfig", "GenerativeVQAConfig", "backbone_fingerprint",
           "backbone_kind"]

#: Hugging Face backbone kinds (``"builtin"`` is the pointer model, configured elsewhere).
BACKBONE_KINDS: tuple[str, ...] = ("llava", "vision_encoder_decoder")
DTYPES = ("float32", "bfloat16", "float16", "auto")
IMAGE_ENCODERS = ("efficientnet_lite0",)
#: ``decoder`` values naming a model shipped by a package instead of a folder.
PACKAGED_DECODERS = {"packaged:all-MiniLM-L6-v2": minilm_path}

#: kind -> implementation. HF kinds have ``from_config(BackboneConfig)``.
BACKBONES = Registry("backbone")
BACKBONES.register("builtin", "ravlm_graph.models.knowledge_vqa.modeling:KnowledgeVQAModel")
BACKBONES.register("vision_encoder_decoder", "ravlm_graph.models.hf_backbones.modeling:VisionEncoderDecoderKGBackbone")
BACKBONES.register("llava", "ravlm_graph.models.hf_backbones.modeling:LlavaKGBackbone")


def backbone_kind(model_section: Mapping[str, Any] | None) -> str:
    """The backbone kind a recipe's ``model`` section names (``"builtin"`` when none)."""
    spec = (model_section or {}).get("backbone") if isinstance(model_section, Mapping) else None
    if spec is None:
        return "builtin"
    if not isinstance(spec, Mapping) or "kind" not in spec:
        raise ValueError(f"model.backbone: expected an object with a 'kind' (one of {BACKBONES.names()}), "
                         f"found {spec!r}")
    kind = spec["kind"]
    if kind not in BACKBONES:
        raise ValueError(f"model.backbone.kind: expected one of {list(BACKBONES.names())}, found {kind!r}")
    return kind


@dataclass(frozen=True)
class BackboneConfig(Config):
    """Which Hugging Face backbone to load and how to use it.

    Args:
        kind (str): ``"llava"`` or ``"vision_encoder_decoder"`` (default ``"llava"``).
        path (str): local folder with ``config.json``, weights, tokenizer and image processor
            (never a hub id). Empty for a composed encoder-decoder (``encoder`` + ``decoder``).
        kg_token (str): the placeholder the graph tokens replace (LLaVA; default ``"<kg>"``).
        freeze (bool): every backbone weight frozen except those named by ``train`` (default True).
        max_length (int): longest prompt (+ answer) in text tokens (default 512).
        encoder (str | None): a packaged image encoder for a composed encoder-decoder
            (``"efficientnet_lite0"``); None: the folder's own (default None).
        decoder (str | None): folder of a BERT/GPT-2 model loaded as a decoder with
            cross-attention (``is_decoder=True, add_cross_attention=True``), or
            ``"packaged:all-MiniLM-L6-v2"`` (the MiniLM the project ships) (default None).
        image_size (int): input side of the packaged image encoder (default 128).
        dtype (str): ``"float32"``, ``"bfloat16"``, ``"float16"`` or ``"auto"`` (bf16 on a GPU that
            supports it, else fp16 on a GPU, else float32) (default ``"float32"``).
        train (tuple[str, ...]): substrings of backbone parameter names that train even when
            frozen — weights the checkpoint did not hold (a new decoder's cross-attention, the
            LM head transform) (default ()).
        lora (dict | None): LoRA on the language model's attention through ``peft``:
            ``{"r": 8, "alpha": 16, "dropout": 0.05, "target_modules": [...]}`` (default None).
    """

    kind: str = "llava"
    path: str = ""
    kg_token: str = "<kg>"
    freeze: bool = True
    max_length: int = 512
    encoder: str | None = None
    decoder: str | None = None
    image_size: int = 128
    dtype: str = "float32"
    train: tuple = ()
    lora: dict | None = None

    def __post_init__(self) -> None:
        o = "BackboneConfig"
        if self.kind not in BACKBONE_KINDS:
            raise ValueError(f"{o}.kind: expected one of {list(BACKBONE_KINDS)}, found {self.kind!r}")
        for name in ("path", "decoder"):
            v = getattr(self, name)
            if isinstance(v, os.PathLike):
                object.__setattr__(self, name, os.fspath(v))
        composed = self.encoder is not None or self.decoder is not None
        if composed:
            if self.kind != "vision_encoder_decoder":
                raise ValueError(f"{o}: encoder/decoder compose a vision_encoder_decoder backbone, found kind "
                                 f"{self.kind!r}")
            if self.encoder not in IMAGE_ENCODERS:
                raise ValueError(f"{o}.encoder: expected one of {list(IMAGE_ENCODERS)}, found {self.encoder!r}")
            if not isinstance(self.decoder, str) or not self.decoder.strip():
                raise ValueError(f"{o}.decoder: expected a local BERT/GPT-2 folder, found {self.decoder!r}")
        elif not isinstance(self.path, str) or not self.path.strip():
            raise ValueError(f"{o}.path: expected a local model folder, found {self.path!r}")
        if not isinstance(self.kg_token, str) or not self.kg_token or any(c.isspace() for c in self.kg_token):
            raise ValueError(f"{o}.kg_token: expected a non-empty string without whitespace, found {self.kg_token!r}")
        if not isinstance(self.freeze, bool):
            raise ValueError(f"{o}.freeze: expected a bool, found {self.freeze!r}")
        for name in ("max_length", "image_size"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{o}.{name}: expected an int >= 1, found {v!r}")
        if self.dtype not in DTYPES:
            raise ValueError(f"{o}.dtype: expected one of {list(DTYPES)}, found {self.dtype!r}")
        if isinstance(self.train, str) or not all(isinstance(s, str) and s for s in self.train):
            raise ValueError(f"{o}.train: expected a list of parameter-name substrings, found {self.train!r}")
        object.__setattr__(self, "train", tuple(self.train))
        if self.lora is not None:
            if not isinstance(self.lora, Mapping):
                raise ValueError(f"{o}.lora: expected an object (r, alpha, dropout, target_modules), found "
                                 f"{self.lora!r}")
            unknown = sorted(set(self.lora) - {"r", "alpha", "dropout", "target_modules"})
            if unknown:
                raise ValueError(f"{o}.lora: unknown keys {unknown}; expected some of "
                                 f"['alpha', 'dropout', 'r', 'target_modules']")

    @property
    def composed(self) -> bool:
        return self.encoder is not None

    @property
    def decoder_folder(self) -> str | None:
        """``decoder`` with a packaged name resolved to its folder."""
        if self.decoder in PACKAGED_DECODERS:
            return str(PACKAGED_DECODERS[self.decoder]())
        return self.decoder

    @property
    def config_file(self) -> Path:
        """The ``config.json`` whose hash a checkpoint records."""
        return Path(self.decoder_folder if self.composed else self.path) / "config.json"



def backbone_fingerprint(config: BackboneConfig) -> str:
    """sha256 of the backbone's ``config.json`` (plus the packaged encoder's name when composed)."""
    path = config.config_file
    if not path.is_file():
        raise FileNotFoundError(f"{path.parent}: expected a model folder with config.json, found none")
    h = hashlib.sha256(path.read_bytes())
    if config.composed:
        h.update(f"|encoder={config.encoder}".encode())
    return h.hexdigest()


@dataclass
class GenerativeVQAConfig(Config):
    """A generative knowledge-VQA model: backbone + the parts trained around it.

    Args:
        backbone (BackboneConfig): the VLM (frozen by default).
        use_graph (bool): read the knowledge graph (False: the same model without it) (default True).
        gnn (dict): :class:`~ravlm_graph.nn.gnn.GNNConfig` fields (``in_dim`` and
            ``num_relations`` are set from the KG) (default ``{}``).
        num_graph_tokens (int): graph tokens per question, seeds first then by relevance (default 16).
        copy_nodes (int): nodes whose names the decoder may copy from (their word pieces join the
            memory of an encoder-decoder; 0: no copying) (default 96).
        name_pieces (int): word pieces kept per node name (default 4).
        names_in_memory (bool): the name pieces also join the memory the decoder cross-attends
            to (True), or only the copy head reads them (False: the cross-attention reads the
            image and the graph tokens only — ``copy_nodes * name_pieces`` fewer memory slots,
            the bulk of a CPU training step) (default True).
        seed_links (bool): add to each node's state what links it to the seeds (the entities
            found in the image and the question): the mean over its edges to a seed of an
            embedding of the relation and its direction, the seed's box and origin — so that a
            graph token or a copied name can say "linked by MadeOf to the object at the bottom
            right" (as the pointer model's ``seed_relation_keys``) (default False).
        node_features (str): node inputs of the GNN: ``"word_embeddings"`` (mean of the
            backbone's input embeddings of the name's word pieces: no encoder pass) or
            ``"retriever"`` (the retriever's MiniLM sentence embeddings) (default
            ``"word_embeddings"``).
        node_dim (int): width of the node inputs (set from the backbone for ``word_embeddings``;
            default 384, MiniLM).
        num_relations (int): relation types of the GNN (default 64).
        max_answer_tokens (int): longest training answer in tokens (default 12).
        max_new_tokens (int): longest generated answer (default 8).
        num_beams (int): 1 for greedy decoding, more for beam search (default 1).
        prompt (str): LLaVA prompt template with ``{question}``; must hold ``<image>`` and the
            ``<kg>`` token (default ``"<image>\\n{question} <kg> Answer:"``).
        backbone_hash (str): sha256 of the backbone's config.json, set when the model is built
            and checked when a checkpoint is loaded.
    """

    backbone: BackboneConfig = None  # type: ignore[assignment]
    use_graph: bool = True
    gnn: dict = field(default_factory=dict)
    num_graph_tokens: int = 16
    copy_nodes: int = 96
    name_pieces: int = 4
    names_in_memory: bool = True
    seed_links: bool = False
    node_features: str = "word_embeddings"
    node_dim: int = 384
    num_relations: int = 64
    max_answer_tokens: int = 12
    max_new_tokens: int = 8
    num_beams: int = 1
    prompt: str = "<image>\n{question} <kg> Answer:"
    backbone_hash: str = ""
    model_type: str = "ravlm_generative"

    def __post_init__(self) -> None:
        o = "GenerativeVQAConfig"
        if isinstance(self.backbone, Mapping):
            self.backbone = BackboneConfig.from_dict(self.backbone)
        if not isinstance(self.backbone, BackboneConfig):
            raise ValueError(f"{o}.backbone: expected a BackboneConfig or its dict, found {self.backbone!r}")
        for name in ("use_graph", "names_in_memory", "seed_links"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{o}.{name}: expected a bool, found {getattr(self, name)!r}")
        for name, lo in (("num_graph_tokens", 1), ("copy_nodes", 0), ("name_pieces", 1), ("node_dim", 1),
                         ("num_relations", 1), ("max_answer_tokens", 1), ("max_new_tokens", 1), ("num_beams", 1)):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < lo:
                raise ValueError(f"{o}.{name}: expected an int >= {lo}, found {v!r}")
        if self.node_features not in ("word_embeddings", "retriever"):
            raise ValueError(f"{o}.node_features: expected 'word_embeddings' or 'retriever', found "
                             f"{self.node_features!r}")
        if not isinstance(self.gnn, Mapping):
            raise ValueError(f"{o}.gnn: expected an object of GNNConfig fields, found {self.gnn!r}")
        if self.backbone.kind == "llava":
            if "{question}" not in self.prompt or self.backbone.kg_token not in self.prompt:
                raise ValueError(f"{o}.prompt: expected a template with {{question}} and "
                                 f"{self.backbone.kg_token!r}, found {self.prompt!r}")
        if self.model_type != "ravlm_generative":
            raise ValueError(f"{o}.model_type: expected 'ravlm_generative', found {self.model_type!r}")

    @property
    def uses_graph(self) -> bool:
        return self.use_graph

    @property
    def copies(self) -> bool:
        """Whether answers can copy node names (encoder-decoder backbones with ``copy_nodes > 0``)."""
        return self.use_graph and self.copy_nodes > 0 and self.backbone.kind == "vision_encoder_decoder"

