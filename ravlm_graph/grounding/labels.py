"""Detector labels to ConceptNet concepts: ``"Traffic lights"`` -> ``traffic_light``
(articles and punctuation dropped, plurals singularised, checked against a KG when one is
given), and the label/concept tables the open-vocabulary detectors query with."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any
import unicodedata


if TYPE_CHECKING:  # pragma: no cover
    pass


# --------------------------------------------------------------------------------------
# Label -> concept
# --------------------------------------------------------------------------------------

_ARTICLE = re.compile(r"^(?:a|an|the)\s+", re.IGNORECASE)
_SEPARATORS = re.compile(r"[\s_\-]+")
_EDGE_PUNCT = " \t\n.,;:!?\"'()[]{}"


def _normalise_label(label: str) -> str:

    t = unicodedata.normalize("NFC", label).strip().strip(_EDGE_PUNCT)
    t = _SEPARATORS.sub(" ", t).strip().lower()
    while True:
        stripped = _ARTICLE.sub("", t)
        if stripped == t or not stripped:
            break
        t = stripped
    return t.replace(" ", "_")


def _singular(concept: str) -> str:
    """Singularise the head (last) word of an underscore concept with lemminflect, if installed."""
    words = concept.split("_")
    last = words[-1]
    if not last.isalpha() or len(last) < 3:
        return concept
    try:
        from lemminflect import getLemma
    except ImportError:
        return concept
    lemmas = getLemma(last, upos="NOUN", lemmatize_oov=False)
    if not lemmas:
        return concept
    # lemminflect may give several lemmas ("glasses" -> glass, glasses): keep the word
    # itself when it is among them, else the first.
    lemma = last if last in lemmas else lemmas[0]
    return "_".join([*words[:-1], lemma])


def map_label_to_concept(label: str, kg: Any = None) -> str:
    """Map a detector label or annotation name to a ConceptNet-style concept.

    Steps: lower case, whitespace / hyphens / underscores as one underscore, leading
    articles ("a", "an", "the") stripped. With a ``kg`` (anything with ``lookup(text)
    -> id | None`` and ``concept_name(id)``), the label and then its singular form are
    looked up and the first hit is returned under the graph's own name. Otherwise (or
    when neither is in the graph) the singular form of the head word is returned
    (lemminflect; the label is kept when lemminflect is not installed).

    Args:
        label: e.g. ``"Traffic Lights"``, ``"a dog"``, ``"ice-cream"``.
        kg: optional :class:`kg_ingest.KnowledgeGraph` (or a look-alike).

    Returns:
        The concept, e.g. ``"traffic_light"``, ``"dog"``, ``"ice_cream"``.

    Raises:
        ValueError: a blank label, or one that is only an article.
        TypeError: a label that is not a string.
    """
    if not isinstance(label, str):
        raise TypeError(f"map_label_to_concept: expected a str label, found {type(label).__name__}")
    norm = _normalise_label(label)
    if not norm:
        raise ValueError(f"map_label_to_concept: expected a non-blank label, found {label!r}")
    singular = _singular(norm)
    if kg is not None:
        for cand in dict.fromkeys((norm, singular)):
            i = kg.lookup(cand)
            if i is not None:
                return kg.concept_name(i)
    return singular


def _concept_table(concepts: Sequence[str] | Mapping[str, str], kg: Any) -> tuple[list[str], list[str]]:
    """Labels (the texts shown to a model) and the concepts they stand for."""
    if isinstance(concepts, Mapping):
        labels = [str(k) for k in concepts]
        mapped = [map_label_to_concept(str(v), kg) for v in concepts.values()]
    else:
        if isinstance(concepts, str):
            raise TypeError("expected a sequence of concept names, found a single str")
        labels = [str(c) for c in concepts]
        mapped = [map_label_to_concept(c, kg) for c in labels]
    if not labels:
        raise ValueError("expected at least one concept in the vocabulary, found none")
    seen: set[str] = set()
    for lab in labels:
        if lab in seen:
            raise ValueError(f"concept vocabulary: label {lab!r} appears more than once")
        seen.add(lab)
    return labels, mapped


def _query_text(label: str) -> str:
    return " ".join(label.replace("_", " ").split())
