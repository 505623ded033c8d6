"""The engine's public face: ``KnowledgeVQA.from_pretrained(path).answer(image, question)``.

An engine folder holds everything needed to answer::

    config.json, model.safetensors   the model (see :mod:`ravlm_graph.modeling`)
    engine.json                      which KG, retrieval settings, node budget
    detector/                        the image entity detector (optional)

The KG is named in ``engine.json``: ``"bundled:cn100k"``, ``"bundled:cn100k+fvqa"`` or a
store folder; ``from_pretrained(path, kg=...)`` can point it elsewhere.
"""

from __future__ import annotations

import os
from pathlib import Path
from kg_ingest import KnowledgeGraph, load_default



def open_kg(spec: str, cache_root: str | os.PathLike | None = None):
    """A KG from an engine spec: ``bundled:cn100k[+fvqa]`` or a store folder."""

    if spec.startswith("bundled:"):
        name = spec.split(":", 1)[1]
        if name not in ("cn100k", "cn100k+fvqa"):
            raise ValueError(f"unknown bundled KG {name!r}; expected cn100k or cn100k+fvqa")
        out = Path(cache_root) / name.replace("+", "_") if cache_root is not None else None
        return load_default(with_fvqa=name.endswith("+fvqa"), out=out)
    return KnowledgeGraph.load(spec)
