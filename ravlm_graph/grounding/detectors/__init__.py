"""Image detectors: one file each, all behind :class:`ImageEntityDetector` and listed in
:data:`DETECTORS` (adding a detector is one file and one line here)."""

from ravlm_graph.grounding.detectors.base import ImageEntityDetector
from ravlm_graph.utils.registry import Registry

__all__ = ["DETECTORS", "ImageEntityDetector"]

#: Detector kinds by name; entries resolve on first use (some need transformers).
DETECTORS = Registry("detector")
DETECTORS.register("given", "ravlm_graph.grounding.detectors.given:GivenEntities")
DETECTORS.register("layout_cells", "ravlm_graph.grounding.detectors.layout:LayoutCellDetector")
DETECTORS.register("tagger", "ravlm_graph.grounding.detectors.tagger:TrainableTagger")
DETECTORS.register("owl", "ravlm_graph.grounding.detectors.owl:OwlDetector")
DETECTORS.register("clip", "ravlm_graph.grounding.detectors.clip:ClipTagger")
DETECTORS.register("photo", "ravlm_graph.grounding.detectors.photo:PhotoDetector")
