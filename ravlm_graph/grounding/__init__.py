"""Grounding: find the knowledge-graph concepts in a question (text) and an image.

Text grounding lives in :mod:`.text`; image detectors in :mod:`.image` (imported on
demand, as they need torch/transformers/PIL).
"""

from ravlm_graph.grounding.text import STOP_WORDS, GroundingResult, TextGrounder, Token, concept_variants, tokenize, word_forms
from ravlm_graph.types import ORIGINS, Entity

__all__ = ["Entity", "ORIGINS", "TextGrounder", "GroundingResult", "Token", "tokenize", "word_forms",
           "concept_variants", "STOP_WORDS"]
