"""Spatial references: which of the image's objects a question points at.

Questions about an image rarely name the object they ask about; they point at it:
"the thing on the left", "the object at the top right", "the middle one", "the
bottom-left item", "this thing". Those words are not ConceptNet concepts ("left" is not
``leave``): :func:`parse_references` finds them (the word sets are
:class:`~ravlm_graph.grounding.config.GroundingConfig` fields), :func:`select_entities`
picks the image entities whose boxes sit where the reference says, and
:func:`refer_entities` returns the entity list with the chosen ones marked
(``Entity.referred``) and the others' scores lowered, so that retrieval starts from the
object the question is about and the evidence shows which one it was.

Positions are compared in image coordinates scaled to [0, 1]: "left" is x = 0, "right"
x = 1, "top" y = 0, "bottom" y = 1, "middle" 0.5 on each axis no other word sets. The
entity whose box centre is nearest to that point (on the named axes only) is chosen,
with every other one within ``ambiguity_margin`` of it (the two left objects of a 2 x 2
grid for "the thing on the left"); on each named side it must be the furthest that way
or lie in that half of the image, and "middle" means the central third, else nothing is
chosen. Extremes ("leftmost")
read like their base words.

>>> refs = parse_references("What is the thing on the left used for?")
>>> refs[0].x, refs[0].y, refs[0].text
(0.0, None, 'the thing on the left')
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field, replace
from typing import Sequence

from ravlm_graph.grounding.config import GroundingConfig
from ravlm_graph.grounding.tokens import Token, tokenize
from ravlm_graph.types import Entity

logger = logging.getLogger(__name__)

__all__ = ["SpatialReference", "SpatialSelection", "parse_references", "spatial_token_mask", "select_entities",
           "refer_entities", "position_box", "parse_position"]

_DETERMINERS = frozenset(("the", "this", "that", "these", "those", "which", "what", "each", "every"))
# Determiners that make a referent noun point at one object ("the object", "this thing");
# "which one" and "what thing" ask for one instead.
_REF_DETERMINERS = frozenset(("the", "this", "that", "these", "those"))
_LINKS = frozenset(("on", "at", "in", "to", "toward", "towards", "of", "near", "by", "from", "along", "nearest",
                    "closest", "the", "far", "very"))


@dataclass(frozen=True)
class SpatialReference:
    """A phrase of the question that points at a place in the image.

    Fields:
        text: the phrase as written (``"the thing on the left"``).
        span: its character span ``[start, end)`` in the question.
        x: horizontal target in [0, 1] (0 left, 0.5 middle, 1 right), or None.
        y: vertical target in [0, 1] (0 top, 0.5 middle, 1 bottom), or None.
        words: the position words read (``("top", "right")``).

    A reference without position (``"this thing"``, ``"the object in the picture"``) has
    ``x = y = None``: it points at the image's one object, when there is one.
    """

    text: str
    span: tuple[int, int]
    x: float | None = None
    y: float | None = None
    words: tuple[str, ...] = ()

    @property
    def has_position(self) -> bool:
        return self.x is not None or self.y is not None

    def describe(self) -> str:
        """The position in words (``"top right"``, ``"left"``, ``"middle"``, ``"(no position)"``)."""
        row = {0.0: "top", 0.5: "middle", 1.0: "bottom"}.get(self.y, "") if self.y is not None else ""
        col = {0.0: "left", 0.5: "middle", 1.0: "right"}.get(self.x, "") if self.x is not None else ""
        if row == col == "middle":
            return "middle"
        return " ".join(w for w in (row, col) if w) or "(no position)"


@dataclass(frozen=True)
class SpatialSelection:
    """The outcome of :func:`refer_entities`.

    Fields:
        entities: the entities, in input order, scores unchanged; the selected image
            entities have ``referred=True`` (the evidence).
        focus: what retrieval and the model read: the selected image entities, the other
            image entities with their score times ``unreferred_factor`` (left out when it
            is 0), and the question entities; ``entities`` when nothing was selected.
        references: the references found in the question.
        selected: indices (into ``entities``) of the selected image entities.
        reason: None when something was selected, else why not (no reference, no box, ...).
    """

    entities: list[Entity]
    focus: list[Entity]
    references: tuple[SpatialReference, ...] = ()
    selected: tuple[int, ...] = ()
    reason: str | None = None
    notes: tuple[str, ...] = field(default=())


def _word_roles(cfg: GroundingConfig) -> dict[str, tuple[str, float]]:
    roles: dict[str, tuple[str, float]] = {}
    for words, axis, value in ((cfg.left_words, "x", 0.0), (cfg.right_words, "x", 1.0),
                               (cfg.top_words, "y", 0.0), (cfg.bottom_words, "y", 1.0),
                               (cfg.middle_words, "m", 0.5)):
        for w in words:
            roles[w] = (axis, value)
    return roles


def _classify(toks: Sequence[Token], cfg: GroundingConfig) -> list[str]:
    """One role per token: P(osition) C(orner) R(eferent) D(eictic) F(rame) or ''."""
    pos, corner = cfg.position_words, frozenset(cfg.corner_words)
    ref, deic, frame = frozenset(cfg.referent_words), frozenset(cfg.deictic_words), frozenset(cfg.frame_words)
    out = []
    for t in toks:
        w = t.norm
        out.append("P" if w in pos else "C" if w in corner else "R" if w in ref else "D" if w in deic
                   else "F" if w in frame else "")
    return out


def _runs(roles: list[str], toks: Sequence[Token]) -> list[tuple[int, int]]:
    """Maximal runs of position words and trailing corner words: ``top right``,
    ``lower left corner``, ``left hand side``."""
    runs = []
    i, n = 0, len(roles)
    while i < n:
        if roles[i] != "P":
            i += 1
            continue
        j = i + 1
        while j < n and toks[j].clause == toks[i].clause and (
                roles[j] in ("P", "C") or (toks[j].norm == "hand" and j + 1 < n and roles[j + 1] == "C")):
            j += 1
        runs.append((i, j))
        i = j
    return runs


def parse_references(question: str, config: GroundingConfig | None = None,
                     tokens: Sequence[Token] | None = None) -> list[SpatialReference]:
    """The spatial references of a question, in reading order.

    Recognised shapes (each inside one clause): a position before a referent noun ("the
    top right item", "the middle one", "the leftmost object"), a referent noun and a
    position after a preposition ("the thing on the left", "the object at the top
    right", "the item in the upper left corner"), a position alone after a preposition or
    a determiner ("what is on the left", "the left"), and a referent without position
    ("this thing", "the object in the picture", "the pictured item").

    Args:
        question: the question text.
        config: the word sets (default :class:`GroundingConfig`).
        tokens: the question's tokens when already computed (:func:`tokenize`).
    """
    cfg = config or GroundingConfig()
    if not cfg.spatial:
        return []
    toks = list(tokens) if tokens is not None else tokenize(question)
    roles = _classify(toks, cfg)
    table = _word_roles(cfg)
    refs: list[SpatialReference] = []
    used = [False] * len(toks)
    for i, j in _runs(roles, toks):
        x = y = None
        middle = False
        words = []
        for k in range(i, j):
            if roles[k] != "P":
                continue
            axis, value = table[toks[k].norm]
            words.append(toks[k].norm)
            if axis == "x":
                x = value
            elif axis == "y":
                y = value
            else:
                middle = True
        if middle:
            # "middle" fills the axes no other word names ("middle left": y = 0.5).
            x = 0.5 if x is None else x
            y = 0.5 if y is None else y
        start, end = i, j
        # Extend left over "the thing on the", "the", "this"; right over a referent noun.
        k = start - 1
        while k >= 0 and toks[k].clause == toks[i].clause and (toks[k].norm in _LINKS or roles[k] in ("R", "D")
                                                               or toks[k].norm in _DETERMINERS):
            k -= 1
        start = k + 1
        # A phrase starts at its last determiner or its noun, not at a preposition or a
        # relative "that" ("something that the thing at the lower left has").
        while start < i and (toks[start].norm in _LINKS or toks[start].norm in _DETERMINERS) and (
                toks[start].norm not in _REF_DETERMINERS or toks[start + 1].norm in _DETERMINERS
                or toks[start + 1].norm in _LINKS and start + 1 < i and roles[start + 1] != "R"):
            start += 1
        if end < len(toks) and toks[end].clause == toks[i].clause and roles[end] == "R":
            end += 1
        if start == i and end == j:
            continue  # a bare position word ("you have left your keys") points at nothing
        for k in range(start, end):
            used[k] = True
        refs.append(SpatialReference(question[toks[start].start:toks[end - 1].end],
                                     (toks[start].start, toks[end - 1].end), x, y, tuple(words)))
    # Referents without a position: "this thing", "the object", "the pictured item".
    for k, t in enumerate(toks):
        if used[k] or roles[k] != "R":
            continue
        prev = toks[k - 1].norm if k > 0 and toks[k - 1].clause == t.clause else ""
        if prev in _REF_DETERMINERS or (k > 0 and roles[k - 1] == "D" and toks[k - 1].clause == t.clause):
            s = k - 1
            if s > 0 and roles[s] == "D" and toks[s - 1].norm in _REF_DETERMINERS:
                s -= 1
            refs.append(SpatialReference(question[toks[s].start:t.end], (toks[s].start, t.end)))
            used[s:k + 1] = [True] * (k + 1 - s)
    refs.sort(key=lambda r: r.span)
    return refs


def spatial_token_mask(tokens: Sequence[Token], config: GroundingConfig | None = None) -> list[bool]:
    """True for each token the concept linker must not link.

    Position words always; corner words after a position word ("the left side"); referent
    nouns after a determiner, a deictic word or a position word, or before one ("the
    object", "this thing", "the item shown"); deictic words next to a referent or frame
    noun or after a determiner ("the pictured item"); frame nouns after a determiner or
    deictic word ("in the picture", "this photo"). "a picture" and "an object" stay
    concepts.
    """
    cfg = config or GroundingConfig()
    toks = list(tokens)
    n = len(toks)
    if not cfg.spatial:
        return [False] * n
    roles = _classify(toks, cfg)
    mask = [False] * n

    def prev(k: int) -> tuple[str, str]:
        if k > 0 and toks[k - 1].clause == toks[k].clause:
            return toks[k - 1].norm, roles[k - 1]
        return "", ""

    def nxt(k: int) -> tuple[str, str]:
        if k + 1 < n and toks[k + 1].clause == toks[k].clause:
            return toks[k + 1].norm, roles[k + 1]
        return "", ""

    for k in range(n):
        r = roles[k]
        pw, pr = prev(k)
        nw, nr = nxt(k)
        if r == "P":
            mask[k] = True
        elif r == "C":
            mask[k] = pr in ("P", "C") or pw == "hand"
        elif r == "R":
            mask[k] = pw in _DETERMINERS or pr in ("P", "D") or nr in ("D", "P")
        elif r == "D":
            mask[k] = pr in ("R", "F") or nr in ("R", "F") or pw in _DETERMINERS
        elif r == "F":
            mask[k] = pw in _DETERMINERS or pr == "D"
    for k in range(n):  # "hand" inside "left hand side"
        if toks[k].norm == "hand" and 0 < k < n - 1 and roles[k - 1] == "P" and roles[k + 1] == "C":
            mask[k] = True
    return mask


def _centre(box, width: float, height: float) -> tuple[float, float]:
    x0, y0, x1, y1 = box
    return ((x0 + x1) / 2 / width, (y0 + y1) / 2 / height)


def select_entities(reference: SpatialReference, entities: Sequence[Entity],
                    image_size: tuple[int, int] | None = None, margin: float = 0.08) -> tuple[list[int], str | None]:
    """Indices of the image entities a reference points at.

    Args:
        reference: a parsed reference.
        entities: the candidates; only ``origin="image"`` ones can be chosen.
        image_size: (width, height) the boxes are measured in; None: the boxes' extent.
        margin: entities this close (in image widths) to the best one are chosen too.

    Returns:
        (indices, reason): reason is None when something was chosen, else why not.
    """
    cand = [i for i, e in enumerate(entities) if e.origin == "image"]
    if not cand:
        return [], "no image entity to choose from"
    if not reference.has_position:
        if len(cand) == 1:
            return cand, None
        return [], f"{len(cand)} image entities and no position in {reference.text!r}"
    boxed = [i for i in cand if entities[i].box is not None]
    if not boxed:
        if len(cand) == 1:
            return cand, None
        return [], "no image entity has a box (give positions or boxes with the entities)"
    if image_size is not None:
        w, h = float(image_size[0]), float(image_size[1])
    else:
        w = max(entities[i].box[2] for i in boxed)
        h = max(entities[i].box[3] for i in boxed)
    w, h = max(w, 1e-6), max(h, 1e-6)
    axes = [(k, t) for k, t in ((0, reference.x), (1, reference.y)) if t is not None]
    off = {i: [abs(_centre(entities[i].box, w, h)[k] - t) for k, t in axes] for i in boxed}
    # On each named side an entity must be (nearly) the furthest that way, or lie in that
    # half of the image: with a top-left and a bottom-right object only, nothing is "at
    # the top right". "Middle" means the central third (give or take the margin): with a
    # left and a right object only, nothing is "the middle one".
    axis_best = [min(off[i][a] for i in boxed) for a in range(len(axes))]

    def fits_axis(o: float, best: float, target: float) -> bool:
        if target == 0.5:
            return o <= 1 / 6 + margin
        return o <= best + margin or o < 0.5

    fits = [i for i in boxed if all(fits_axis(o, b, t) for o, b, (_, t) in zip(off[i], axis_best, axes))]
    if not fits:
        seen = ", ".join(entities[i].concept for i in boxed)
        return [], f"no image entity at the {reference.describe()} (found {seen})"
    dist = {i: math.sqrt(sum(o * o for o in off[i])) for i in fits}
    best = min(dist.values())
    return [i for i in fits if dist[i] <= best + margin], None


def refer_entities(question: str, entities: Sequence[Entity], image_size: tuple[int, int] | None = None,
                   config: GroundingConfig | None = None,
                   references: Sequence[SpatialReference] | None = None) -> SpatialSelection:
    """Mark the image entities the question points at.

    The chosen entities get ``referred=True``; in ``focus`` the other image entities'
    scores are multiplied by ``config.unreferred_factor`` (and they are left out when
    it is 0). Question entities are returned unchanged. Nothing changes when the question has no reference, or when
    it cannot be resolved (the reason is returned).

    Args:
        question: the question.
        entities: image (and question) entities, e.g. a detector's output.
        image_size: (width, height) of the image the boxes are in.
        config: word sets and factors (default :class:`GroundingConfig`).
        references: already parsed references (default: parsed here).
    """
    cfg = config or GroundingConfig()
    ents = list(entities)
    refs = tuple(references) if references is not None else tuple(parse_references(question, cfg))
    if not refs:
        return SpatialSelection(ents, list(ents), (), (), "no spatial reference in the question")
    chosen: list[int] = []
    reasons: list[str] = []
    positioned = [r for r in refs if r.has_position] or list(refs)
    for r in positioned:
        idx, why = select_entities(r, ents, image_size, cfg.ambiguity_margin)
        if why:
            reasons.append(why)
        chosen += [i for i in idx if i not in chosen]
    if not chosen:
        return SpatialSelection(ents, list(ents), refs, (), "; ".join(dict.fromkeys(reasons)) or "nothing selected")
    out, focus = [], []
    for i, e in enumerate(ents):
        if e.origin != "image":
            out.append(e)
            focus.append(e)
        elif i in chosen:
            e = replace(e, referred=True)
            out.append(e)
            focus.append(e)
        else:
            out.append(e)
            if cfg.unreferred_factor > 0:
                focus.append(replace(e, score=float(e.score) * cfg.unreferred_factor))
    sel = tuple(sorted(chosen))
    logger.debug("spatial references %s select %s", [r.text for r in refs], [ents[i].concept for i in sel])
    return SpatialSelection(out, focus, refs, sel, None, tuple(reasons))


def parse_position(text: str, config: GroundingConfig | None = None) -> tuple[float | None, float | None]:
    """A position in words (``"left"``, ``"top right"``, ``"bottom-left"``, ``"middle"``,
    ``"center"``) as (x, y) targets in [0, 1] (None where the words say nothing).

    Raises:
        ValueError: a word that is not a position word, or no position word at all.
    """
    cfg = config or GroundingConfig()
    table = _word_roles(cfg)
    words = [t.norm for t in tokenize(text.replace("_", " ").replace("-", " "))]
    corner = set(cfg.corner_words)
    if not words:
        raise ValueError(f"expected a position such as 'left', 'top right' or 'middle', found {text!r}")
    x = y = None
    middle = False
    for w in words:
        if w in corner or w in ("the", "and", "hand", "on", "at", "in"):
            continue
        if w not in table:
            known = sorted(set(cfg.left_words[:1] + cfg.right_words[:1] + cfg.top_words[:1] + cfg.bottom_words[:1]
                               + cfg.middle_words[:2]))
            raise ValueError(f"expected a position made of {', '.join(known)} (e.g. 'top right'), "
                             f"found {text!r} ({w!r} is not a position word)")
        axis, value = table[w]
        if axis == "x":
            x = value
        elif axis == "y":
            y = value
        else:
            middle = True
    if middle:
        x = 0.5 if x is None else x
        y = 0.5 if y is None else y
    if x is None and y is None:
        raise ValueError(f"expected a position such as 'left', 'top right' or 'middle', found {text!r}")
    return x, y


def position_box(x: float | None, y: float | None, width: int, height: int) -> tuple[float, float, float, float]:
    """The cell of a 3 x 3 grid over the image at a position (None: the middle on that axis);
    the box an entity given as ``knife@left`` gets."""
    cx = 0.5 if x is None else x
    cy = 0.5 if y is None else y
    col = min(2, int(cx * 3)) if cx < 1 else 2
    row = min(2, int(cy * 3)) if cy < 1 else 2
    return (col * width / 3, row * height / 3, (col + 1) * width / 3, (row + 1) * height / 3)
