"""ravlm_graph: knowledge-graph-grounded reasoning for vision-language models.

>>> from ravlm_graph import KnowledgeVQA
>>> engine = KnowledgeVQA.from_pretrained("ravlm_graph/data/engine_builtin")
>>> engine.answer("scene.png", "What is the thing on the left used for?").answer

Public names are imported on first use, so ``import ravlm_graph`` stays cheap
(torch and transformers load only when a model is needed).
"""

from importlib import import_module

__version__ = "0.1.0"

_LAZY = {
    "KnowledgeVQA": "engine", "Answer": "engine", "EngineConfig": "engine",
    "KnowledgeVQAModel": "models.knowledge_vqa", "KnowledgeVQAConfig": "models.knowledge_vqa",
    "SubgraphRetriever": "retrieval", "Subgraph": "retrieval", "ReasoningPath": "retrieval",
    "RetrievalConfig": "retrieval", "TextGrounder": "grounding", "GroundingConfig": "grounding",
    "Entity": "types", "Fact": "types", "VQARecord": "types",
    "GNNConfig": "nn", "GraphEncoder": "nn", "FusionConfig": "nn",
    "BackboneConfig": "models.hf_backbones", "TrainConfig": "training", "train": "training",
    "Recipe": "recipes", "load_builtin": "datasets", "load_fvqa": "datasets", "load_csqa": "datasets",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str):
    mod = _LAZY.get(name)
    if mod is None:
        raise AttributeError(f"module 'ravlm_graph' has no attribute {name!r}")
    value = getattr(import_module(f".{mod}", __name__), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(list(globals()) + __all__)
