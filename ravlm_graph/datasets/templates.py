"""Question templates of the built-in benchmark, and which KG answers are nameable.

Three question types, each over one ConceptNet relation:

* ``fact``   -- ask a fact about one object, named by its place in the scene:
  "What is the thing on the left used for?"  Answers: every nameable tail concept.
* ``select`` -- pick the object that has a property: "Which of these can fly?"
  Answer: the object's concept (the other objects lack the fact in the KG).
* ``yesno``  -- check one fact about one object: "Can you eat the object on the right?"
  Answer: ``"yes"`` or ``"no"``.

Placeholders: ``{obj}`` the object's reference phrase ("the thing on the left"),
``{Obj}`` the same, capitalised; ``{ans}`` the concept with spaces; ``{a_ans}`` the
concept with its indefinite article ("an apple"). All templates are written for this
project.
"""

from __future__ import annotations

import re
from typing import Mapping, Sequence

__all__ = [
    "QUESTION_RELATIONS",
    "QUESTION_TYPES",
    "SLOT_PHRASES",
    "TEMPLATES",
    "is_nameable",
    "render_question",
]

QUESTION_TYPES: tuple[str, ...] = ("fact", "select", "yesno")

# Relations asked about; the value is the longest answer (in words) that counts as nameable.
QUESTION_RELATIONS: Mapping[str, int] = {
    "UsedFor": 3,
    "AtLocation": 2,
    "CapableOf": 3,
    "IsA": 2,
    "HasA": 2,
    "PartOf": 2,
    "MadeOf": 2,
    "HasProperty": 2,
    "Desires": 3,
    "ReceivesAction": 2,
}

_WORD_RE = re.compile(r"^[a-z]{2,}(?:_[a-z]{2,})*$")
# Tokens that make a tail a clause or a fragment rather than a nameable thing.
_BAD_TOKENS = frozenset({
    "a", "an", "the", "and", "or", "not", "no", "in", "on", "at", "of", "to", "by", "with", "from",
    "for", "your", "their", "his", "her", "its", "my", "our", "it", "them", "they", "you", "he", "she",
    "this", "that", "these", "those", "some", "many", "very", "often", "usually", "also", "be", "is",
    "are", "thing", "something", "someone", "somewhere", "lot", "alot", "nothing", "anything",
    "everything", "anyone", "everyone", "nobody", "somebody", "stuff",
})
_MAX_CHARS = 24


def is_nameable(concept: str, relation: str, *, head: str | None = None) -> bool:
    """Whether a tail concept is short and plain enough to be an answer.

    Rule: letters and underscores only, every word two or more letters, at most
    ``QUESTION_RELATIONS[relation]`` words and 24 characters, no function word or
    vague word (``in_kitchen``, ``red_and_white``, ``something``), and not the head itself.

    Args:
        concept: ConceptNet-style tail, e.g. ``"make_pie"``.
        relation: the relation it is a tail of.
        head: the head concept (a tail equal to it is rejected).
    """
    max_words = QUESTION_RELATIONS.get(relation)
    if max_words is None or not _WORD_RE.match(concept) or len(concept) > _MAX_CHARS:
        return False
    words = concept.split("_")
    if len(words) > max_words or any(w in _BAD_TOKENS for w in words):
        return False
    return concept != head


# Reference phrases by scene slot (see scenes.LAYOUTS).
SLOT_PHRASES: Mapping[str, tuple[str, ...]] = {
    "only": ("the object", "this thing", "the object in the picture", "the item shown", "the pictured thing"),
    "left": ("the object on the left", "the thing on the left", "the leftmost item", "the item on the left side"),
    "right": ("the object on the right", "the thing on the right", "the rightmost item",
              "the item on the right side"),
    "middle": ("the object in the middle", "the thing in the middle", "the middle item", "the central object"),
    "top": ("the object at the top", "the thing on top", "the upper item", "the topmost object"),
    "bottom": ("the object at the bottom", "the thing at the bottom", "the lower item", "the bottom object"),
    "top_left": ("the object in the top left", "the thing at the upper left", "the top-left item"),
    "top_right": ("the object in the top right", "the thing at the upper right", "the top-right item"),
    "bottom_left": ("the object in the bottom left", "the thing at the lower left", "the bottom-left item"),
    "bottom_right": ("the object in the bottom right", "the thing at the lower right", "the bottom-right item"),
}

# TEMPLATES[question_type][relation] -> templates.
TEMPLATES: Mapping[str, Mapping[str, tuple[str, ...]]] = {
    "fact": {
        "UsedFor": ("What is {obj} used for?", "What can you use {obj} for?", "What would someone use {obj} for?",
                    "{Obj} is typically used for what?", "What purpose does {obj} serve?"),
        "AtLocation": ("Where would you find {obj}?", "Where is {obj} usually found?",
                       "Where might you see {obj}?", "In what place can {obj} be found?",
                       "Name a place where {obj} is typically located."),
        "CapableOf": ("What can {obj} do?", "Name something {obj} is able to do.",
                      "What is {obj} capable of?", "What does {obj} do?"),
        "IsA": ("What kind of thing is {obj}?", "{Obj} is a type of what?", "What category does {obj} belong to?",
                "What is {obj} an example of?"),
        "HasA": ("What does {obj} have?", "Name something that {obj} has.", "What part or feature does {obj} have?",
                 "{Obj} comes with what?"),
        "PartOf": ("What is {obj} a part of?", "{Obj} belongs to what larger thing?",
                   "Of what whole is {obj} a part?", "What is {obj} a component of?"),
        "MadeOf": ("What is {obj} made of?", "What material is {obj} made from?", "{Obj} is made out of what?",
                   "What is {obj} usually made of?"),
        "HasProperty": ("What is a property of {obj}?", "How would you describe {obj}?",
                        "What quality does {obj} have?", "Name a typical property of {obj}."),
        "Desires": ("What does {obj} want?", "What does {obj} like to do?", "What would {obj} desire?",
                    "Name something {obj} wants."),
        "ReceivesAction": ("What can be done to {obj}?", "What do people do with {obj}?",
                           "Name something you can do to {obj}.", "What happens to {obj}, typically?"),
    },
    "select": {
        "UsedFor": ("Which of these is used for {ans}?", "Which object could you use for {ans}?",
                    "Which item here would help with {ans}?", "Which one of these is meant for {ans}?"),
        "AtLocation": ("Which of these would you find at {a_ans}?", "Which object is usually found at {a_ans}?",
                       "Which of these things belongs at {a_ans}?", "Which item might you see at {a_ans}?"),
        "CapableOf": ("Which of these can {ans}?", "Which object is able to {ans}?",
                      "Which one of these things can {ans}?", "Which item here is capable of doing this: {ans}?"),
        "IsA": ("Which of these is {a_ans}?", "Which object is a kind of {ans}?", "Which one of these is {a_ans}?",
                "Which item here counts as {a_ans}?"),
        "HasA": ("Which of these has {a_ans}?", "Which object comes with {a_ans}?",
                 "Which one of these things has {a_ans}?", "Which item here has {a_ans}?"),
        "PartOf": ("Which of these is part of {a_ans}?", "Which object is a part of {a_ans}?",
                   "Which one of these belongs to {a_ans}?", "Which item here is a component of {a_ans}?"),
        "MadeOf": ("Which of these is made of {ans}?", "Which object is made from {ans}?",
                   "Which one of these is made out of {ans}?", "Which item here consists of {ans}?"),
        "HasProperty": ("Which of these is {ans}?", "Which object can be described as {ans}?",
                        "Which one of these things is {ans}?", "Which item here is typically {ans}?"),
        "Desires": ("Which of these wants to {ans}?", "Which one of these would want {ans}?",
                    "Which object here desires {ans}?", "Which of these likes {ans}?"),
        "ReceivesAction": ("Which of these is something you can {ans}?", "Which object do people {ans}?",
                           "Which one of these can you {ans}?", "Which item here is something people {ans}?"),
    },
    "yesno": {
        "UsedFor": ("Is {obj} used for {ans}?", "Can you use {obj} for {ans}?", "Would {obj} help with {ans}?",
                    "Is {obj} meant for {ans}?"),
        "AtLocation": ("Would you find {obj} at {a_ans}?", "Is {obj} usually found at {a_ans}?",
                       "Does {obj} belong at {a_ans}?", "Might you see {obj} at {a_ans}?"),
        "CapableOf": ("Can {obj} {ans}?", "Is {obj} able to {ans}?", "Is {obj} capable of this: {ans}?",
                      "Could {obj} {ans}?"),
        "IsA": ("Is {obj} {a_ans}?", "Is {obj} a kind of {ans}?", "Does {obj} count as {a_ans}?",
                "Would you call {obj} {a_ans}?"),
        "HasA": ("Does {obj} have {a_ans}?", "Does {obj} come with {a_ans}?", "Is there {a_ans} on {obj}?",
                 "Has {obj} got {a_ans}?"),
        "PartOf": ("Is {obj} part of {a_ans}?", "Is {obj} a component of {a_ans}?",
                   "Does {obj} belong to {a_ans}?", "Would {obj} be found as part of {a_ans}?"),
        "MadeOf": ("Is {obj} made of {ans}?", "Is {obj} made from {ans}?", "Is {obj} made out of {ans}?",
                   "Does {obj} consist of {ans}?"),
        "HasProperty": ("Is {obj} {ans}?", "Would you describe {obj} as {ans}?", "Is {obj} typically {ans}?",
                        "Can {obj} be described as {ans}?"),
        "Desires": ("Does {obj} want to {ans}?", "Would {obj} want {ans}?", "Does {obj} desire {ans}?",
                    "Does {obj} like {ans}?"),
        "ReceivesAction": ("Can you {ans} {obj}?", "Is {obj} something people {ans}?",
                           "Do people {ans} {obj}?", "Is {obj} something you can {ans}?"),
    },
}


def _article(words: str) -> str:
    return ("an " if words[:1] in "aeiou" else "a ") + words


def render_question(template: str, *, obj: str | None = None, answer: str | None = None) -> str:
    """Fill one template.

    Args:
        template: a string of :data:`TEMPLATES`.
        obj: the object's reference phrase (``"the thing on the left"``).
        answer: the concept asked about, ConceptNet-style (``"make_pie"``).
    """
    ans = answer.replace("_", " ") if answer else ""
    o = obj or ""
    text = template.format(obj=o, Obj=o[:1].upper() + o[1:], ans=ans, a_ans=_article(ans) if ans else "")
    return text[:1].upper() + text[1:]


def check_templates(templates: Mapping[str, Mapping[str, Sequence[str]]] = TEMPLATES) -> None:
    """Internal check: every question type covers every relation with the right placeholders."""
    for qtype, by_rel in templates.items():
        missing = set(QUESTION_RELATIONS) - set(by_rel)
        if missing:
            raise ValueError(f"templates[{qtype!r}]: expected every question relation, missing {sorted(missing)}")
        for rel, ts in by_rel.items():
            for t in ts:
                has_obj = "{obj}" in t or "{Obj}" in t
                has_ans = "{ans}" in t or "{a_ans}" in t
                want_obj, want_ans = qtype != "select", qtype != "fact"
                if has_obj != want_obj or has_ans != want_ans:
                    raise ValueError(f"templates[{qtype!r}][{rel!r}]: bad placeholders in {t!r}")
