"""Text grounding: find the ConceptNet concepts a question mentions.

Steps: tokenise (with character offsets), normalise (lower case, possessive ``'s``
dropped), expand each word into its surface and lemma forms (lemminflect, which ships
its data), then match word n-grams against the store's vocabulary, longest first.
Each n-gram is tried as written (``fire trucks``), with lemmas (``fire_truck``), and
with articles/possessives removed (``watching the film`` -> ``watch_film``). A match may
not start or end with a stop-word, single stop-words are never concepts, and
over-general concepts (``person``, ``thing``) are down-weighted or dropped.

Words that point into the image ("left", "top right", "this thing", "the object in the
picture"; the sets are :class:`~ravlm_graph.grounding.config.GroundingConfig` fields) are
never linked: "left" is a position, not ``leave``. The references they form are returned
in ``GroundingResult.references`` (:mod:`ravlm_graph.grounding.spatial` selects the image
entity they point at).

>>> g = TextGrounder(kg)
>>> [(e.concept, e.span) for e in g.ground("Where do you keep ice cream?")]
[('keep', (12, 16)), ('ice_cream', (17, 26)), ...]
"""

from __future__ import annotations

import functools
import itertools
import logging
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterator, Sequence

from ravlm_graph.grounding.config import GroundingConfig
from ravlm_graph.grounding.spatial import SpatialReference, parse_references, spatial_token_mask
from ravlm_graph.grounding.tokens import Token, tokenize
from ravlm_graph.types import Entity
from ravlm_graph.utils.lemma_tables import use_indexed_tables

if TYPE_CHECKING:  # pragma: no cover
    from kg_ingest import KnowledgeGraph

logger = logging.getLogger(__name__)

__all__ = ["TextGrounder", "GroundingResult", "Token", "tokenize", "word_forms", "concept_variants",
           "STOP_WORDS"]

STOP_WORDS: frozenset[str] = frozenset("""
a an the this that these those there here it its it's itself they them their theirs themselves
he him his himself she her hers herself i me my mine myself we us our ours ourselves you your yours
yourself yourselves one ones who whom whose which what whatever when where why how whether
is am are was were be been being do does did doing done have has had having will would shall
should can could may might must ought to of in on at by for with from into onto about above below
over under up down out off through during before after again further then once and or but nor so
yet if than too very just also not no only own same such both each few more most other some any
all as s t d ll m re ve y don't doesn't didn't isn't aren't wasn't weren't won't wouldn't can't
cannot couldn't shouldn't hasn't haven't hadn't let's get gets got likely often usually typically
probably really while because though although like well would've could've should've let
""".split())

# Removed inside an n-gram to form a variant: "wait their turn" -> wait_turn.
_DETERMINERS = frozenset("a an the his her their my your our its this that these those some".split())

_ARTICLES = frozenset(("a", "an", "the"))
# A multi-word concept neither starts nor ends with these ("you_get", "buy_some",
# "play_with_it" are dropped); verbs ("have_fun") and particles at the end ("talk_to",
# "sit_down") are fine. Prepositions may end a match but not start one ("in_city").
_FUNCTION = frozenset("""
a an the this that these those some any each every no all both either neither
i me my you your he him his she her it its we us our they them their one ones
what which who whom whose when where why how whether and or but nor so if than as
""".split())
_PREPOSITIONS = frozenset("""
to of in on at by for with from into onto about above below over under up down out off
through during before after
""".split())

def word_forms(word: str, lemmatize: bool = True, limit: int = 3) -> tuple[str, ...]:
    """The word and its lemmas (lemminflect, all parts of speech), surface form first.

    ``"trucks"`` -> ``("trucks", "truck")``; ``"reading"`` -> ``("reading", "read")``.
    """
    forms = [word]
    if lemmatize and word.isalpha():
        for lemma in _lemmas(word):
            if lemma not in forms:
                forms.append(lemma)
    return tuple(forms[:limit])


@functools.lru_cache(maxsize=65536)
def _lemmas(word: str) -> tuple[str, ...]:
    try:
        use_indexed_tables()  # a per-word look-up in the cache, not lemminflect's whole table
        import lemminflect
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError("text grounding with lemmatize=True needs lemminflect: "
                          "pip install 'ravlm-graph[model]'") from e
    found = dict(lemminflect.getAllLemmas(word))
    if not found:  # out of the dictionary: rule-based noun and verb lemmas
        found = {**lemminflect.getAllLemmasOOV(word, "NOUN"), **lemminflect.getAllLemmasOOV(word, "VERB")}
    out: list[str] = []
    # Nouns first (magazines -> magazine), then verbs (reading -> read), then the rest.
    for pos in ("NOUN", "VERB", "ADJ", "ADV", "PROPN", "AUX"):
        for lemma in found.get(pos, ()):
            lemma = lemma.lower()
            if lemma not in out:
                out.append(lemma)
    return tuple(out)


def concept_variants(name: str, lemmatize: bool = True) -> set[str]:
    """Every lemma combination of a concept name (``reading_newspaper`` ->
    ``{reading_newspaper, read_newspaper}``), for lenient comparison of concepts."""
    words = [w for w in name.lower().replace(" ", "_").split("_") if w]
    if not words:
        return set()
    opts = [word_forms(w, lemmatize) for w in words]
    return {"_".join(c) for c in itertools.product(*opts)}


@dataclass(frozen=True)
class GroundingResult:
    """The concepts of a question.

    Args:
        text: the question.
        entities: concepts found (``origin="question"``), by span start then score.
        tokens: the tokenised question.
        reason: None, or why nothing was found (``"empty question"``, ``"no concept ..."``).
        references: the question's spatial references ("the thing on the left"), whose
            words were not linked as concepts.
    """

    text: str
    entities: tuple[Entity, ...]
    tokens: tuple[Token, ...] = ()
    reason: str | None = None
    references: tuple[SpatialReference, ...] = ()

    def __iter__(self) -> Iterator[Entity]:
        return iter(self.entities)

    def __len__(self) -> int:
        return len(self.entities)

    def __getitem__(self, i: int) -> Entity:
        return self.entities[i]

    @property
    def concepts(self) -> list[str]:
        return [e.concept for e in self.entities]


@dataclass
class _Match:
    i: int            # first token
    j: int            # one past the last token
    concept: str
    quality: float


class TextGrounder:
    """Links the words of a question to concepts of a :class:`~kg_ingest.KnowledgeGraph`.

    Args:
        kg: the store whose vocabulary is matched.
        config: a :class:`~ravlm_graph.config.GroundingConfig` (defaults when None).

    The vocabulary is read into a set on first use (about 0.1 s for CN-100K).
    """

    def __init__(self, kg: "KnowledgeGraph", config: GroundingConfig | None = None) -> None:
        self.kg = kg
        self.config = config or GroundingConfig()
        self._vocab: set[str] | None = None
        self._degree = None
        self._degrees: dict[str, int] = {}  # concept name -> degree, for _score
        self._general = frozenset(self.config.general_concepts)

    def __repr__(self) -> str:
        return f"TextGrounder(kg={self.kg!r}, max_ngram={self.config.max_ngram})"

    @property
    def vocab(self) -> set[str]:
        if self._vocab is None:
            blob = bytes(self.kg._blob)
            off = self.kg._off.tolist()
            self._vocab = {blob[off[i]:off[i + 1]].decode("utf-8") for i in range(self.kg.num_nodes)}
            self._degree = self.kg.degree("both")
        return self._vocab

    # ------------------------------------------------------------------ match
    def _ngram_candidates(self, toks: Sequence[Token], forms: Sequence[tuple[str, ...]],
                          i: int, j: int) -> Iterator[tuple[str, float]]:
        """Concept names to try for tokens[i:j], with a match quality."""
        words = [t.norm for t in toks[i:j]]
        yield "_".join(words), 1.0
        if self.config.lemmatize:
            for combo in itertools.product(*forms[i:j]):
                yield "_".join(combo), 0.9
        if self.config.drop_determiners and j - i >= 3:
            keep = [k for k in range(i, j) if k in (i, j - 1) or toks[k].norm not in _DETERMINERS]
            if len(keep) < j - i:
                yield "_".join(toks[k].norm for k in keep), 0.85
                if self.config.lemmatize:
                    for combo in itertools.product(*(forms[k] for k in keep)):
                        yield "_".join(combo), 0.8

    def _find_matches(self, toks: Sequence[Token], blocked: Sequence[bool] = ()) -> list[_Match]:
        vocab = self.vocab
        cfg = self.config
        forms = [word_forms(t.norm, cfg.lemmatize) for t in toks]
        matches: list[_Match] = []
        n = len(toks)
        stop = [t.norm in STOP_WORDS for t in toks]
        blocked = list(blocked) or [False] * n
        position = cfg.position_words if cfg.spatial else frozenset()
        for i in range(n):
            first = toks[i].norm
            for j in range(i + 1, min(n, i + cfg.max_ngram) + 1):
                if toks[j - 1].clause != toks[i].clause:
                    break
                # A pointing word is never a concept on its own, and a longer match may
                # hold a position word only with another content word ("top_hat", not
                # "top_right") and outside the question's spatial references.
                if j - i == 1 and blocked[i]:
                    continue
                if j - i > 1 and (any(blocked[i:j]) and (
                        all(blocked[k] or stop[k] for k in range(i, j))
                        or any(blocked[k] and toks[k].norm not in position for k in range(i, j)))):
                    continue
                if j - i == 1:
                    if stop[i] or len(first) < 2:
                        continue
                else:
                    if first in _FUNCTION or first in _PREPOSITIONS or toks[j - 1].norm in _FUNCTION:
                        continue
                    if all(stop[i:j]):
                        continue  # a concept needs one content word
                seen: dict[str, float] = {}
                for name, q in self._ngram_candidates(toks, forms, i, j):
                    if name in vocab and name not in STOP_WORDS and seen.get(name, -1.0) < q:
                        seen[name] = q
                for name, q in seen.items():
                    matches.append(_Match(i, j, name, q))
        return matches

    def _score(self, m: _Match) -> float:
        deg = self._degrees.get(m.concept)
        if deg is None:  # not looked up yet (a binary search of the store's names)
            deg = int(self._degree[self.kg.find_id(m.concept)])
            if len(self._degrees) >= 65536:
                self._degrees.clear()
            self._degrees[m.concept] = deg
        hub = self.config.hub_degree
        spec = 1.0 if deg <= hub else 1.0 / (1.0 + math.log10(deg / hub))
        s = m.quality * spec
        if m.concept in self._general:
            s *= self.config.general_penalty
        return s

    def ground(self, text: str) -> GroundingResult:
        """Concepts mentioned in ``text``, longest match first.

        Returns:
            A :class:`GroundingResult`; its ``reason`` says why it is empty, if it is.

        Raises:
            TypeError: ``text`` is not a string.
        """
        if not isinstance(text, str):
            raise TypeError(f"ground: expected the question as a str, found {type(text).__name__}")
        if not text.strip():
            return GroundingResult(text, (), (), reason="empty question")
        toks = tokenize(text)
        if not toks:
            return GroundingResult(text, (), (), reason="no words in the question")
        cfg = self.config
        blocked = spatial_token_mask(toks, cfg)
        refs = tuple(parse_references(text, cfg, toks))
        for r in refs:  # a reference's words are never part of a concept
            for k, t in enumerate(toks):
                if r.span[0] <= t.start and t.end <= r.span[1] and t.norm in cfg.position_words:
                    blocked[k] = True
        in_ref = [any(r.span[0] <= t.start and t.end <= r.span[1] for r in refs) for t in toks]
        matches = [m for m in self._find_matches(toks, blocked)
                   if not (m.j - m.i > 1 and any(in_ref[m.i:m.j]) and any(blocked[m.i:m.j]))]
        # Longest span first, then better quality, then earlier position.
        matches.sort(key=lambda m: (-(m.j - m.i), -m.quality, m.i))
        taken = [False] * len(toks)
        primary_spans: set[tuple[int, int]] = set()
        chosen: dict[str, tuple[_Match, bool]] = {}  # concept -> (match, nested)
        for m in matches:
            if cfg.drop_general and m.concept in self._general:
                continue
            # Other names for a span already matched (lemma variants) are primary too.
            nested = any(taken[m.i:m.j]) and (m.i, m.j) not in primary_spans
            if nested and not cfg.keep_nested:
                continue
            if not nested:
                primary_spans.add((m.i, m.j))
            old = chosen.get(m.concept)
            if old is None or (old[1] and not nested) or (old[1] == nested and old[0].quality < m.quality):
                chosen[m.concept] = (m, nested)
            for k in range(m.i, m.j):
                taken[k] = True
        ents = []
        for concept, (m, nested) in chosen.items():
            s = self._score(m) * (cfg.nested_penalty if nested else 1.0)
            if s < cfg.min_score:
                continue
            span = (toks[m.i].start, toks[m.j - 1].end)
            ents.append(Entity(concept, round(float(s), 4), "question", span=span, label=text[span[0]:span[1]]))
        ents.sort(key=lambda e: (e.span[0], -e.score, e.concept))
        reason = None if ents else "no concept of the knowledge graph found in the question"
        return GroundingResult(text, tuple(ents), tuple(toks), reason=reason, references=refs)

    def __call__(self, text: str) -> GroundingResult:
        return self.ground(text)
