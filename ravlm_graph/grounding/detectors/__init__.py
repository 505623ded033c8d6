"""Image detectors: one file each, all behind :class:`ImageEntityDetector` and listed in
:data:`DETECTORS` (adding a detector is one file and one line here).

An engine names its detector by kind (a :data:`DETECTORS` name) with a saved folder and/or
settings; :func:`build_detector` turns that into a detector through the registry.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ravlm_graph.grounding.detectors.base import ImageEntityDetector
from ravlm_graph.utils.registry import Registry

__all__ = ["DETECTORS", "ImageEntityDetector", "build_detector", "detector_kind"]

#: Detector kinds by name; entries resolve on first use (some need transformers).
DETECTORS = Registry("detector")
DETECTORS.register("given", "ravlm_graph.grounding.detectors.given:GivenEntities")
DETECTORS.register("layout_cells", "ravlm_graph.grounding.detectors.layout:LayoutCellDetector")
DETECTORS.register("tagger", "ravlm_graph.grounding.detectors.tagger:TrainableTagger")
DETECTORS.register("owl", "ravlm_graph.grounding.detectors.owl:OwlDetector")
DETECTORS.register("clip", "ravlm_graph.grounding.detectors.clip:ClipTagger")
DETECTORS.register("photo", "ravlm_graph.grounding.detectors.photo:PhotoDetector")


def build_detector(kind: str, path: str | Path | None = None, settings: dict | None = None,
                   kg: Any = None) -> ImageEntityDetector:
    """The detector of kind ``kind`` (a :data:`DETECTORS` name), read from its saved folder
    ``path`` or built from ``settings`` (see :meth:`ImageEntityDetector.from_engine`).

    Raises:
        ValueError: an unknown kind (the message lists the known ones), or a folder / settings
            that do not suit that kind.
    """
    cls = DETECTORS.get(kind)
    return cls.from_engine(path=path, settings=settings, kg=kg)


def detector_kind(detector: Any) -> str:
    """The registry name of a detector's class.

    Raises:
        ValueError: the class is not registered.
    """
    name = DETECTORS.name_of(detector)
    if name is None:
        raise ValueError(f"expected a detector of a registered kind {DETECTORS.names()}, "
                         f"found {type(detector).__name__}")
    return name
