"""Grounding: find the knowledge-graph concepts in a question (text) and an image.

Text grounding lives in :mod:`.text`; spatial references ("the thing on the left") in
:mod:`.spatial`; image detectors in :mod:`.detectors` (imported on demand, as they need
torch/transformers/PIL).
"""

from ravlm_graph.grounding.spatial import SpatialReference, SpatialSelection, parse_references, refer_entities
from ravlm_graph.grounding.text import STOP_WORDS, GroundingResult, TextGrounder, concept_variants, word_forms
from ravlm_graph.grounding.tokens import Token, tokenize
from ravlm_graph.types import ORIGINS, Entity

__all__ = ["Entity", "ORIGINS", "TextGrounder", "GroundingResult", "Token", "tokenize", "word_forms",
           "concept_variants", "STOP_WORDS", "SpatialReference", "SpatialSelection", "parse_references",
           "refer_entities"]
