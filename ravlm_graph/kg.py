"""Opening the knowledge graph an engine names: a store folder, or ``"bundled:cn100k"`` /
``"bundled:cn100k+fvqa"`` for the CN-100K store shipped with kg_ingest."""

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
