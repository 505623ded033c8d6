"""Link an emoji (Unicode name + short names) to a ConceptNet concept.

The mapping rule
----------------
1. **Explicit entries.** :data:`OVERRIDES` maps a handful of Unicode names whose words
   mislead the rule (``"mahjong tile red dragon"`` is a tile, not a dragon) to a concept,
   or to ``None`` to refuse them.
2. **Candidates**, tried in this order (:func:`candidate_concepts`):

   a. the Unicode name as a whole (``"fire engine"`` -> ``fire_engine``);
   b. the *core* of the name: lower case, hyphens as spaces, apostrophes dropped,
      number words and clock words removed, a trailing clause cut (``with ...``,
      ``without ...``, ``and ...``, ``over ...``, ``on ...``, ``at ...``, ``in ...``;
      ``"ballot box with ballot"`` -> ``ballot box``),
      trailing ``face`` / ``symbol`` / ``sign`` dropped (``"lion face"`` -> ``lion``),
      leading style adjectives dropped (``"black bird"`` -> ``bird``);
   c. each short name, digits removed (``"rabbit2"`` -> ``rabbit``);
   d. the head-noun fall-back: the shorter word-suffixes of the core and then of each
      short name (``"red apple"`` -> ``apple``, ``"guide dog"`` -> ``dog``).

   Each candidate is followed by its singular when it ends in ``s``
   (``chopsticks`` -> ``chopstick``, ``leaves`` -> ``leaf``).
3. **Acceptance.** The first candidate that is a KG concept with at least ``min_facts``
   nameable facts over :data:`~ravlm_graph.datasets.templates.QUESTION_RELATIONS`
   is the emoji's concept. No candidate -> the emoji has no concept (a counted skip in
   the builder).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable, Iterable, Mapping, Sequence

from ravlm_graph.datasets.templates import QUESTION_RELATIONS, is_nameable

__all__ = ["OVERRIDES", "ConceptLink", "candidate_concepts", "count_nameable_facts", "link_emoji"]

# Unicode names the word rule gets wrong. None: refuse the emoji.
OVERRIDES: Mapping[str, str | None] = {
    # games and symbols named after things they only depict
    "mahjong tile red dragon": None,
    "playing card black joker": None,
    "flower playing cards": None,
    "black club suit": None,
    "black heart suit": None,
    "black diamond suit": None,
    "confetti ball": None,
    "flying saucer": None,
    "bus stop": None,
    "hot springs": None,
    "chart with upwards trend": None,
    "chart with downwards trend": None,
    "moon viewing ceremony": None,
    "carp streamer": None,
    "performing arts": None,
    "mirror ball": None,
    # the last word is not the thing
    "dove": "bird",
    "poultry leg": "chicken",
    "rice ball": "rice",
    "honey pot": "honey",
    "chocolate bar": "chocolate",
    "pig nose": "pig",
    "oil drum": "barrel",
    "railway car": "train",
    "computer mouse": "computer_mouse",
    "left-pointing magnifying glass": "magnifying_glass",
    "right-pointing magnifying glass": "magnifying_glass",
    "earth globe europe-africa": "earth",
    "earth globe americas": "earth",
    "earth globe asia-australia": "earth",
    "gem stone": "gem",
    "fishing pole and fish": "fishing_rod",
    "bow and arrow": "bow",
    "ear of maize": "corn",
    "ear of rice": "rice",
    "fork and knife": "fork",
    "fork and knife with plate": "plate",
    "sake bottle and cup": "sake",
    "octagonal sign": "stop_sign",
}

_NUMBER_WORDS = frozenset(
    "one two three four five six seven eight nine ten eleven twelve thirty oclock "
    "first second third quarter".split())
_STYLE_WORDS = frozenset(
    "black white red green blue yellow orange purple brown large small big little "
    "heavy light dark".split())
_CLAUSE = re.compile(r"\s+(?:with|without|and|over|on|at|in)\s+.*$")
_TRAILING = ("face", "symbol", "sign", "emoji")


def _clean(text: str) -> str:
    t = text.lower().replace("-", " ").replace("_", " ").replace("'", "").replace("\u2019", "")
    t = re.sub(r"[^a-z ]+", " ", t)
    return " ".join(t.split())


def _core(name: str) -> str:
    t = _clean(name)
    t = _CLAUSE.sub("", t)
    words = [w for w in t.split() if w not in _NUMBER_WORDS]
    while len(words) > 1 and words[-1] in _TRAILING:
        words.pop()
    while len(words) > 1 and words[0] in _STYLE_WORDS:
        words.pop(0)
    return " ".join(words)


def _singular(word_phrase: str) -> str | None:
    w = word_phrase
    if w.endswith("ves") and len(w) > 4:
        return w[:-3] + "f"
    if w.endswith("ies") and len(w) > 4:
        return w[:-3] + "y"
    if re.search(r"(ch|sh|x|ss)es$", w):
        return w[:-2]
    if w.endswith("s") and not w.endswith("ss") and len(w) > 3:
        return w[:-1]
    return None


def _suffixes(phrase: str) -> list[str]:
    words = phrase.split()
    return [" ".join(words[i:]) for i in range(1, len(words))]


def _candidates_with_steps(name: str, short_names: Sequence[str]) -> list[tuple[str, str]]:
    core = _core(name)
    shorts = [_clean(re.sub(r"\d+", " ", s)) for s in short_names]
    phrases = [(_clean(name), "name"), (core, "core"), *((s, "short_name") for s in shorts)]
    phrases += [(p, "head_noun") for p in _suffixes(core)]
    for s in shorts:
        phrases += [(p, "head_noun") for p in _suffixes(s)]
    out: list[tuple[str, str]] = []
    seen: set[str] = set()
    for p, step in phrases:
        if not p:
            continue
        for c in (p, _singular(p)):
            if c:
                c = c.replace(" ", "_")
                if c not in seen:
                    seen.add(c)
                    out.append((c, step))
    return out


def candidate_concepts(name: str, short_names: Sequence[str] = ()) -> list[str]:
    """The ordered, de-duplicated concept candidates of an emoji (rule steps 2a-2d).

    >>> candidate_concepts("red apple", ["apple"])
    ['red_apple', 'apple']
    """
    return [c for c, _ in _candidates_with_steps(name, short_names)]


def count_nameable_facts(kg, concept: str, relations: Iterable[str] = QUESTION_RELATIONS) -> int:
    """Number of out-going facts of ``concept`` over ``relations`` whose tail is nameable."""
    if kg.lookup(concept) is None:
        return 0
    n = 0
    for rel in relations:
        try:
            neigh = kg.neighbors(concept, relation=rel)
        except KeyError:  # relation absent from this graph
            continue
        n += sum(1 for nb in neigh if is_nameable(nb.concept, rel, head=concept))
    return n


@dataclass(frozen=True)
class ConceptLink:
    """Result of :func:`link_emoji`.

    Args:
        concept: the linked concept, or None.
        rule: ``"override"``, ``"name"``, ``"core"``, ``"short_name"`` or ``"head_noun"``
            (which step gave it), or the reason there is none: ``"refused"``,
            ``"no_candidate"``, ``"too_few_facts"``.
        facts: nameable facts of the concept (0 when none).
    """

    concept: str | None
    rule: str
    facts: int = 0


def link_emoji(name: str, short_names: Sequence[str], kg, *, min_facts: int = 5,
               fact_count: Callable[[object, str], int] | None = None) -> ConceptLink:
    """Apply the mapping rule (module docstring) to one emoji.

    Args:
        name: Unicode name, e.g. ``"red apple"``.
        short_names: emoji short names, e.g. ``["apple"]``.
        kg: a :class:`kg_ingest.KnowledgeGraph`.
        min_facts: least number of nameable facts a concept needs (default 5).
        fact_count: ``(kg, concept) -> int``; default :func:`count_nameable_facts`.
    """
    count = fact_count or count_nameable_facts
    overrides = {_clean(k): v for k, v in OVERRIDES.items()}
    key = _clean(name)
    if key in overrides:
        c = overrides[key]
        if c is None:
            return ConceptLink(None, "refused")
        n = count(kg, c)
        return ConceptLink(c, "override", n) if n >= min_facts else ConceptLink(None, "too_few_facts", n)
    best_n, seen_any = 0, False
    for c, step in _candidates_with_steps(name, short_names):
        n = count(kg, c)
        seen_any = seen_any or kg.lookup(c) is not None
        best_n = max(best_n, n)
        if n >= min_facts:
            return ConceptLink(c, step, n)
    return ConceptLink(None, "too_few_facts" if seen_any else "no_candidate", best_n)
