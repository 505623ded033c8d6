"""Knowledge-graph facts as English sentences.

ConceptNet stores its concepts lemmatised ("live room", "be use", "eat"), so a plain
``"{head} {relation words} {tail}"`` reads badly ("knife is used for cut", "X can be
eat"). This realiser puts each end of a fact into the grammatical slot its relation
needs, with inflections from lemminflect:

* event slots take a gerund ("used for *cutting*", "*making* bread"), an adjective in an
  effect slot becomes "being <adj>";
* verb slots take the base form ("can *cut*"), infinitive slots add "to" ("wants *to eat*");
* participle slots take the past participle ("can be *eaten*"), and a lemmatised passive
  anywhere is repaired ("not be use" -> "not used" after a copula, "be used" elsewhere);
* noun slots get "a"/"an" before a singular noun that is only countable (lemminflect's
  plural table lists the bare word among the plurals of nouns also used uncountably, as
  "water" or "dog"; those stay bare), and lemmatised compounds get their
  ``-ing`` back: a modifier that can only be a verb ("live room" -> "living room"), or one
  that is also a noun when the concept is used for that very verb (a ``purposes`` lookup,
  e.g. from the KG: "park lot" is used for "park car" -> "parking lot");
* comparatives (FVQA's WebChild facts, ``MoreBig``) inflect the adjective ("bigger",
  "more expensive").

ConceptNet's own ``surfaceText`` ("[[a knife]] is used for [[cutting]]"), when a store
kept it, is preferred to any template.

>>> realise("knife", "UsedFor", "cut")
'a knife is used for cutting'
>>> realise("apple", "ReceivesAction", "eat")
'an apple can be eaten'
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Callable, Iterable

from ravlm_graph.utils.lemma_tables import use_indexed_tables

__all__ = ["Realiser", "realise", "display_name", "surface_sentence", "kg_purposes", "RELATION_TEMPLATES"]

# Slots: np (noun phrase, "a"/"an" when surely countable), npa (predicate noun: "a"/"an"
# unless only a mass noun: "is a fruit", "is furniture"), bare (noun phrase as written), ger (gerund /
# event), state (as ger, an adjective as "being <adj>"), vp (base verb phrase), inf (to + verb, or a noun phrase), pp (past participle),
# adj (predicate after "is").
RELATION_TEMPLATES: dict[str, str] = {
    "RelatedTo": "{h:bare} is related to {t:bare}",
    "FormOf": "{h:bare} is a form of {t:bare}",
    "IsA": "{h:np} is {t:npa}",
    "PartOf": "{h:np} is part of {t:npa}",
    "HasA": "{h:np} has {t:npa}",
    "UsedFor": "{h:np} is used for {t:ger}",
    "CapableOf": "{h:np} can {t:vp}",
    "AtLocation": "{h:np} can be found in {t:np}",
    "Causes": "the effect of {h:ger} is {t:state}",
    "HasSubevent": "{h:ger} involves {t:ger}",
    "HasFirstSubevent": "{h:ger} starts with {t:ger}",
    "HasLastSubevent": "{h:ger} ends with {t:ger}",
    "HasPrerequisite": "{h:ger} requires {t:ger}",
    "HasProperty": "{h:np} is {t:adj}",
    "MotivatedByGoal": "you would {h:vp} because you want {t:inf}",
    "ObstructedBy": "{h:ger} can be prevented by {t:ger}",
    "Desires": "{h:np} wants {t:inf}",
    "CreatedBy": "{h:np} is created by {t:ger}",
    "Synonym": "{h:bare} means the same as {t:bare}",
    "Antonym": "{h:bare} is the opposite of {t:bare}",
    "DistinctFrom": "{h:bare} is not {t:bare}",
    "DerivedFrom": "{h:bare} is derived from {t:bare}",
    "SymbolOf": "{h:np} is a symbol of {t:bare}",
    "DefinedAs": "{h:np} is defined as {t:np}",
    "MannerOf": "{h:ger} is a way of {t:ger}",
    "LocatedNear": "{h:np} is located near {t:np}",
    "HasContext": "{h:bare} is used in the context of {t:bare}",
    "SimilarTo": "{h:bare} is similar to {t:bare}",
    "EtymologicallyRelatedTo": "{h:bare} is etymologically related to {t:bare}",
    "EtymologicallyDerivedFrom": "{h:bare} is etymologically derived from {t:bare}",
    "CausesDesire": "{h:np} makes you want {t:inf}",
    "MadeOf": "{h:np} is made of {t:bare}",
    "ReceivesAction": "{h:np} can be {t:pp}",
    "InstanceOf": "{h:np} is an instance of {t:bare}",
    "Entails": "{h:ger} entails {t:ger}",
    "NotDesires": "{h:np} does not want {t:inf}",
    "NotUsedFor": "{h:np} is not used for {t:ger}",
    "NotCapableOf": "{h:np} cannot {t:vp}",
    "NotHasProperty": "{h:np} is not {t:adj}",
    "NotIsA": "{h:np} is not {t:npa}",
    "NotHasA": "{h:np} does not have {t:npa}",
    "NotMadeOf": "{h:np} is not made of {t:bare}",
    "NotPartOf": "{h:np} is not part of {t:npa}",
}

_SLOT = re.compile(r"\{([ht]):([a-z]+)\}")
_COMPARATIVE = re.compile(r"^(More|Less)([A-Z][A-Za-z]*)$")
_CAMEL_WORDS = re.compile(r"[A-Z]+(?=[A-Z][a-z]|$)|[A-Z]?[a-z]+|[0-9]+")
_SURFACE_SPAN = re.compile(r"\[\[(.*?)\]\]")
# Function words: no article before them, never inflected as verbs or nouns.
_DETERMINERS = frozenset("a an the this that these those my your his her its our their some any no every each "
                         "many much few several all both one two three four five six seven eight nine ten "
                         "someone something somebody anyone anything everyone everything nothing you it "
                         "i we they he she me him us them".split())
_AUXILIARIES = frozenset("be have do can could will would shall should may might must not".split())
_VOWEL_SOUND_EXCEPTIONS = re.compile(r"^(uni|use|usu|uti|eu|ewe|one|once)")  # vowel letter, consonant sound
_SILENT_H = re.compile(r"^(hour|honest|honou?r|heir)")


# --------------------------------------------------------------------------- words

@lru_cache(maxsize=65536)
def _readings(word: str) -> frozenset[str]:
    """Universal POS tags lemminflect knows the word as a base form of."""
    use_indexed_tables()
    from lemminflect import getAllLemmas

    return frozenset(pos for pos, lemmas in getAllLemmas(word).items() if word in lemmas)


@lru_cache(maxsize=65536)
def _inflect(word: str, tag: str) -> str:
    use_indexed_tables()
    from lemminflect import getInflection

    forms = getInflection(word, tag)
    return forms[0] if forms else word


@lru_cache(maxsize=65536)
def _countable(word: str) -> bool:
    # lemminflect lists the bare word among the plurals of nouns also used uncountably
    # ("water", "dog" as meat); only nouns with a distinct plural alone count as countable.
    use_indexed_tables()
    from lemminflect import getInflection

    return word not in getInflection(word, "NNS")


def _is_verb(word: str) -> bool:
    return word not in _DETERMINERS and "VERB" in _readings(word)


@lru_cache(maxsize=65536)
def _mass_only(word: str) -> bool:
    use_indexed_tables()
    from lemminflect import getInflection

    forms = getInflection(word, "NNS")
    return bool(forms) and forms[0] == word


def _verb_only(word: str) -> bool:
    """Only a verb ("eat", "dine"), no noun or adjective reading."""
    return word not in _AUXILIARIES and word not in _DETERMINERS and _readings(word) == {"VERB"}


def _lost_ing(word: str) -> bool:
    """A compound's modifier that lemmatisation stripped of its "-ing": a verb with no
    noun reading that is only a verb, or whose gerund is an adjective of its own ("dine" ->
    "dining", "live" -> "living"; not "hot" -> "hotting", nor "even" -> "evening": a gerund
    that is only a noun names something else)."""
    r = _readings(word)
    if word in _AUXILIARIES or word in _DETERMINERS or "VERB" not in r or "NOUN" in r:
        return False
    return r == {"VERB"} or "ADJ" in _readings(_gerund(word))


def _gerund(word: str) -> str:
    return "being" if word == "be" else _inflect(word, "VBG")


def _participle(word: str) -> str:
    if "VERB" not in _readings(word):  # already a participle ("broken") or not a verb
        return word
    return _inflect(word, "VBN")


def _syllables(word: str) -> int:
    return max(1, len(re.findall(r"[aeiouy]+", word.rstrip("e"))))


def comparative(adjective: str, more: bool = True) -> str:
    """``"big"`` -> ``"bigger"``, ``"expensive"`` -> ``"more expensive"``; ``more=False``:
    ``"less <adjective>"``."""
    words = adjective.split()
    if not more:
        return "less " + adjective
    if len(words) == 1:
        w = words[0]
        irregular = _inflect(w, "JJR")
        if irregular != w and not irregular.startswith(w[: max(1, len(w) - 2)]):
            return irregular  # good -> better
        if _syllables(w) == 1 or (_syllables(w) == 2 and w.endswith("y")):
            return irregular if irregular != w else w + "er"
    return "more " + adjective


def article(phrase: str) -> str:
    """``"a"`` or ``"an"`` by the sound of the phrase's first word."""
    w = phrase.lower()
    if _SILENT_H.match(w):
        return "an"
    if w[:1] in "aeiou" and not _VOWEL_SOUND_EXCEPTIONS.match(w):
        return "an"
    return "a"


# --------------------------------------------------------------------------- phrases

def _repair_passive(words: list[str], after_copula: bool) -> list[str]:
    """Lemmatised passives: "be use" -> "be used"; after a copula the "be" goes:
    "not be use" -> "not used"."""
    out: list[str] = []
    i = 0
    while i < len(words):
        w = words[i]
        if w == "be" and i + 1 < len(words) and _is_verb(words[i + 1]) and words[i + 1] not in _AUXILIARIES:
            if not (after_copula and (i == 0 or (i == 1 and words[0] == "not"))):
                out.append("be")
            out.append(_participle(words[i + 1]))
            i += 2
            continue
        out.append(w)
        i += 1
    return out


def display_name(concept: str, purposes: Iterable[str] = ()) -> str:
    """A concept name as a person would write it.

    Underscores become spaces; a lemmatised compound gets its ``-ing`` back on a word
    that is followed by a noun and either can only be a verb (``live_room`` -> ``living
    room``) or is the first word of one of the concept's ``purposes`` (what it is used
    for: ``park_lot`` used for ``park car`` -> ``parking lot``).

    Args:
        concept: the ConceptNet-style name.
        purposes: phrases the concept is used for (e.g. its ``UsedFor`` tails in the KG).
    """
    words = [w for w in concept.replace("_", " ").split() if w]
    if len(words) < 2:
        return " ".join(words)
    verbs = {p.replace("_", " ").split()[0] for p in purposes if p and p.strip()}
    out = list(words)
    for i, w in enumerate(words[:-1]):
        nxt = words[i + 1]
        if nxt in _DETERMINERS or w in _AUXILIARIES:
            continue
        noun_next = i + 2 == len(words) or "NOUN" in _readings(nxt) or "VERB" not in _readings(nxt)
        if noun_next and (_lost_ing(w) or (w in verbs and _is_verb(w))):
            out[i] = _gerund(w)
    return " ".join(out)


def surface_sentence(surface: str) -> str:
    """ConceptNet's surfaceText without its ``[[ ]]`` marks and final period."""
    return _SURFACE_SPAN.sub(lambda m: m.group(1), surface).strip().rstrip(".").strip()


def kg_purposes(kg, relation: str = "UsedFor", limit: int = 64) -> Callable[[str], list[str]]:
    """A ``purposes`` lookup from a knowledge graph: the names of a concept's
    ``relation`` tails (a :class:`kg_ingest.KnowledgeGraph` or anything with
    ``__contains__`` and ``neighbors(concept, relation=...)``)."""

    @lru_cache(maxsize=4096)
    def purposes(concept: str) -> list[str]:
        if concept not in kg:
            return []
        try:
            rows = kg.neighbors(concept, relation=relation)
        except (KeyError, ValueError):  # the store has no such relation
            return []
        return [r.concept for r in rows[:limit]]

    return purposes


class Realiser:
    """Facts -> sentences.

    Args:
        purposes: ``concept -> phrases it is used for``, for un-lemmatising compound
            names (:func:`kg_purposes`); None: only the verb-only rule applies.
        use_surface: prefer ConceptNet's surface text when a fact carries one (default True).
    """

    def __init__(self, purposes: Callable[[str], Iterable[str]] | None = None, use_surface: bool = True) -> None:
        self.purposes = purposes
        self.use_surface = use_surface

    def __repr__(self) -> str:
        return f"Realiser(purposes={'yes' if self.purposes else 'no'}, use_surface={self.use_surface})"

    def name(self, concept: str) -> str:
        """The display name of a concept (:func:`display_name`)."""
        return display_name(concept, self.purposes(concept) if self.purposes else ())

    # ------------------------------------------------------------- slots
    def _noun(self, concept: str, with_article: bool, unless_mass_only: bool = False) -> str:
        words = self.name(concept).split()
        if not words:
            return ""
        words = _repair_passive(words, after_copula=False)
        first, last = words[0], words[-1]
        if _verb_only(first):
            words[0] = _gerund(first)  # an event in a noun slot: "eat" -> "eating"
            return " ".join(words)
        text = " ".join(words)
        if (with_article and first not in _DETERMINERS and not first.isdigit()
                and "NOUN" in _readings(last) and not words[0].endswith("ing")
                and (_countable(last) or (unless_mass_only and not _mass_only(last)))):
            return f"{article(text)} {text}"
        return text

    def _event(self, concept: str, state: bool = False) -> str:
        words = concept.replace("_", " ").split()
        if not words:
            return ""
        first = words[0]
        if state and len(words) == 1 and "ADJ" in _readings(first):
            return "being " + first  # an effect or state: "the effect of eating is being full"
        if _is_verb(first) and first not in ("not",):
            words = _repair_passive(words, after_copula=False)
            return " ".join([_gerund(words[0]), *words[1:]])
        if len(words) == 1 and _readings(first) and _readings(first) <= {"ADJ", "ADV"}:
            return "being " + first
        return self._noun(concept, with_article=False)

    def _verb(self, concept: str) -> str:
        words = _repair_passive(concept.replace("_", " ").split(), after_copula=False)
        return " ".join(words)

    def _infinitive(self, concept: str) -> str:
        words = concept.replace("_", " ").split()
        # A word that is also a noun reads as a verb alone ("love") or before an object
        # ("drink water"), as a noun before a modifier ("time alone").
        verb = bool(words) and _is_verb(words[0]) and (
            "NOUN" not in _readings(words[0]) or len(words) == 1
            or not (_readings(words[1]) and _readings(words[1]) <= {"ADJ", "ADV"}))
        if verb:
            return "to " + " ".join(_repair_passive(words, after_copula=False))
        return self._noun(concept, with_article=False)

    def _participle_phrase(self, concept: str) -> str:
        words = concept.replace("_", " ").split()
        if words and words[0] == "be":
            words = words[1:]
        if words:
            words[0] = _participle(words[0])
        return " ".join(words)

    def _predicate(self, concept: str) -> str:
        words = _repair_passive(concept.replace("_", " ").split(), after_copula=True)
        return " ".join(words)

    def slot(self, concept: str, kind: str) -> str:
        """One end of a fact in the slot ``kind`` (np, npa, bare, ger, state, vp, inf, pp, adj)."""
        if kind == "np":
            return self._noun(concept, with_article=True)
        if kind == "npa":
            return self._noun(concept, with_article=True, unless_mass_only=True)
        if kind == "bare":
            return self._noun(concept, with_article=False)
        if kind == "ger":
            return self._event(concept)
        if kind == "state":
            return self._event(concept, state=True)
        if kind == "vp":
            return self._verb(concept)
        if kind == "inf":
            return self._infinitive(concept)
        if kind == "pp":
            return self._participle_phrase(concept)
        if kind == "adj":
            return self._predicate(concept)
        raise ValueError(f"Realiser.slot: expected one of np, npa, bare, ger, state, vp, inf, pp, adj, found {kind!r}")

    # ------------------------------------------------------------- facts
    def fact(self, head: str, relation: str, tail: str, surface: str | None = None) -> str:
        """A sentence for ``(head, relation, tail)``; ConceptNet's surface text when given.

        Relations without a template: comparatives (``MoreBig`` -> "a whale is bigger
        than a dolphin"), else the relation's CamelCase words between the two names.
        """
        if surface and self.use_surface and _SURFACE_SPAN.search(surface):
            return surface_sentence(surface)
        rel = relation[3:] if relation.startswith("/r/") else relation
        template = RELATION_TEMPLATES.get(rel)
        if template is not None:
            template, tail = _own_preposition(template, tail)
            return _SLOT.sub(lambda m: self.slot(head if m.group(1) == "h" else tail, m.group(2)), template)
        m = _COMPARATIVE.match(rel)
        if m:
            adj = " ".join(w.lower() for w in _CAMEL_WORDS.findall(m.group(2)))
            return (f"{self.slot(head, 'np')} is {comparative(adj, more=m.group(1) == 'More')} "
                    f"than {self.slot(tail, 'np')}")
        words = " ".join(w.lower() for w in _CAMEL_WORDS.findall(rel)) or rel.lower()
        return f"{self.name(head)} {words.replace('_', ' ')} {self.name(tail)}"


_PREPOSITIONS = frozenset("in on at under near inside by behind above below over beside beneath".split())
_TAIL_PREPOSITION = re.compile(r"\b(in|near) (\{t:np\})$")


def _own_preposition(template: str, tail: str) -> tuple[str, str]:
    """A place written with its own preposition ("in_closet", "on_table") takes the
    template's place: "can be found in a closet", "can be found on a table"."""
    words = tail.split("_")
    m = _TAIL_PREPOSITION.search(template)
    if m is None or len(words) < 2 or words[0] not in _PREPOSITIONS:
        return template, tail
    return f"{template[:m.start()]}{words[0]} {m.group(2)}", "_".join(words[1:])


def realise(head: str, relation: str, tail: str, surface: str | None = None,
            purposes: Callable[[str], Iterable[str]] | None = None) -> str:
    """:meth:`Realiser.fact` with a one-off realiser."""
    return Realiser(purposes).fact(head, relation, tail, surface)
