"""The built-in knowledge-VQA benchmark: emoji scenes + ConceptNet questions.

Objects are emoji (two independent drawing styles, Twemoji and Noto) linked to ConceptNet
concepts by :mod:`.emoji_concepts`; scenes place 1-4 of them on a background
(:mod:`.scenes`); questions over ConceptNet relations need both seeing (which object is
where) and knowing (the KG fact), with wording from :mod:`.templates`.

Splits
------
``train``, ``val``, ``test_iid``
    questions about (object, relation) pairs that are not held out, images in the
    training style (Twemoji by default).
``test_unseen_facts``
    questions about held-out (object, relation) pairs: no record of ``train`` (or ``val``,
    ``test_iid``, ``test_other_style``) asks about that object with that relation, so none
    of the answers for that object+relation is ever a training answer; only the KG has them.
``test_other_style``
    the same kind of questions as ``test_iid``, with images in the other style.

Storage
-------
A built dataset is a folder: ``manifest.json``, ``ATTRIBUTION.md``, and per split
``<split>.jsonl`` (one question a line) and ``<split>.scenes.jsonl`` (one scene spec a line,
see :mod:`.scenes`). Scenes are stored as specifications and drawn on
:meth:`BuiltinRecord.load_image` from the emoji sprites (the packaged ones unless the
manifest or the caller names another root), which keeps the folder small; pass
``images_dir`` to :func:`load_builtin` to also write them as PNG files.
"""

from __future__ import annotations

import json
import logging
import math
import os
import random
import tempfile
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from ravlm_graph.datasets.emoji_concepts import count_nameable_facts, link_emoji
from ravlm_graph.types import Entity, Fact, VQARecord
from ravlm_graph.grounding.images import DEFAULT_MIN_SIDE
from ravlm_graph.grounding.layouts import LAYOUTS
from ravlm_graph.datasets.scenes import STYLE_DIRS, SpriteCache, place_objects, random_background, render_scene
from ravlm_graph.datasets.templates import QUESTION_RELATIONS, SLOT_PHRASES, TEMPLATES, is_nameable, render_question
from kg_ingest import load_default
import shutil

# The largest scene side: what the layout-cell detectors of the built-in engines read (their saved
# max_side); photos may be larger (grounding.images.DEFAULT_MAX_SIDE).
MAX_SCENE_SIDE = 4096

logger = logging.getLogger(__name__)

__all__ = [
    "BUILDER_VERSION",
    "BUILTIN_SPLITS",
    "BuildConfig",
    "BuildSummary",
    "BuiltinRecord",
    "MAX_SCENE_SIDE",
    "build_builtin",
    "default_builtin_root",
    "default_emoji_root",
    "load_builtin",
    "package_emoji_assets",
    "read_emoji_index",
    "read_manifest",
]

BUILDER_VERSION = "1.0"
BUILTIN_SPLITS: tuple[str, ...] = ("train", "val", "test_iid", "test_unseen_facts", "test_other_style")

ATTRIBUTION = """\
# Attribution

The built-in benchmark is made from these works:

- **Twemoji** images, (c) Twitter, Inc. and other contributors (jdecked/twemoji),
  licensed under CC BY 4.0 (https://creativecommons.org/licenses/by/4.0/).
- **Noto Color Emoji** images, (c) Google LLC, licensed under the Apache License 2.0
  (https://www.apache.org/licenses/LICENSE-2.0).
- Emoji metadata (names, short names, categories) from the npm packages
  emoji-datasource-twitter / emoji-datasource-google 16.0.0, (c) Cal Henderson, MIT licence.
- **ConceptNet** facts (CN-100K and the ConceptNet facts of FVQA), from ConceptNet 5,
  (c) the Commonsense Computing Initiative, licensed under CC BY-SA 4.0
  (https://creativecommons.org/licenses/by-sa/4.0/). The questions and answers derived
  from them are shared under the same licence.

The sprites are 64x64 PNG renderings of the emoji, unmodified; scenes are composed from
them (resized, rotated, placed on generated backgrounds) by `ravlm_graph.datasets.scenes`.

Detector training also draws the same emoji in seven more styles (folders `openmoji64/`,
`fluent64/`, `emojione64/`, `fluent3d64/`, `emojione164/`, `fxemoji64/`, `streamline64/`;
never used by the benchmark's splits), rasterised to 64x64 PNG from the SVGs of the npm
packages `@iconify-json/openmoji` 1.2.29, `@iconify-json/fluent-emoji-flat` 1.2.6,
`@iconify-json/emojione` 1.2.3, `@iconify-json/fluent-emoji` 1.2.7,
`@iconify-json/emojione-v1` 1.2.3, `@iconify-json/fxemoji` 1.2.2 and
`@iconify-json/streamline-emojis` 1.2.4 by `scripts/build_extra_emoji_styles.py`
(rasterised only, otherwise unmodified):

- **OpenMoji** (c) OpenMoji contributors (https://openmoji.org), licensed under
  CC BY-SA 4.0 (https://creativecommons.org/licenses/by-sa/4.0/); the PNGs are shared
  under the same licence.
- **Fluent Emoji** (flat, and the colour "3D" set in `fluent3d64/`) (c) Microsoft Corporation, MIT licence: Permission is hereby
  granted, free of charge, to any person obtaining a copy of this software and associated
  documentation files (the "Software"), to deal in the Software without restriction,
  including without limitation the rights to use, copy, modify, merge, publish, distribute,
  sublicense, and/or sell copies of the Software, and to permit persons to whom the Software
  is furnished to do so, subject to the following conditions: The above copyright notice and
  this permission notice shall be included in all copies or substantial portions of the
  Software. THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR
  IMPLIED, INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY, FITNESS FOR A
  PARTICULAR PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE AUTHORS OR COPYRIGHT HOLDERS
  BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT
  OR OTHERWISE, ARISING FROM, OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER
  DEALINGS IN THE SOFTWARE.
- **EmojiOne** 2 (c) Ranks.com (Emoji One), licensed under CC BY 4.0
  (https://creativecommons.org/licenses/by/4.0/).
- **EmojiOne** 1 (`emojione164/`) (c) Ranks.com (Emoji One), licensed under CC BY-SA 4.0
  (https://creativecommons.org/licenses/by-sa/4.0/); the PNGs are shared under the same licence.
- **Firefox OS Emoji** (`fxemoji64/`) (c) Mozilla, licensed under the Apache License 2.0
  (https://www.apache.org/licenses/LICENSE-2.0).
- **Streamline Emojis** (`streamline64/`) (c) Streamline (webalys), licensed under CC BY 4.0
  (https://creativecommons.org/licenses/by/4.0/).
"""


def default_emoji_root() -> Path:
    """The packaged emoji sprites (``ravlm_graph/data/emoji``)."""
    return Path(__file__).resolve().parents[1] / "data" / "emoji"


def default_builtin_root() -> Path:
    """The packaged pre-built small benchmark (``ravlm_graph/data/builtin_small``)."""
    return Path(__file__).resolve().parents[1] / "data" / "builtin_small"


# --------------------------------------------------------------------------- config

@dataclass(frozen=True)
class BuildConfig:
    """Settings of one benchmark build.

    Args:
        seed: random seed; same seed, inputs and config -> identical files (default 0).
        train: questions in ``train`` (default 4000).
        val: questions in ``val`` (default 400).
        test: questions in each test split (default 400).
        image_size: scene side in px (default 128).
        train_style: sprite style of train/val/test_iid/test_unseen_facts (default
            ``"twemoji"``); ``test_other_style`` uses the other one.
        min_facts: least nameable facts an object's concept needs (default 5).
        held_out_fraction: share of (object, relation) pairs held out for
            ``test_unseen_facts`` (default 0.15).
        max_emoji_per_concept: at most this many emoji per concept are kept (default 3).
        type_mix: shares of ``fact``, ``select``, ``yesno`` questions (default 0.4, 0.3, 0.3).
        max_objects: most objects in a scene, 1-4 (default 4).
    """

    seed: int = 0
    train: int = 4000
    val: int = 400
    test: int = 400
    image_size: int = 128
    train_style: str = "twemoji"
    min_facts: int = 5
    held_out_fraction: float = 0.15
    max_emoji_per_concept: int = 3
    type_mix: tuple[float, float, float] = (0.4, 0.3, 0.3)
    max_objects: int = 4

    def __post_init__(self) -> None:
        object.__setattr__(self, "type_mix", tuple(float(x) for x in self.type_mix))
        for name in ("train", "val", "test"):
            if int(getattr(self, name)) < 0:
                raise ValueError(f"BuildConfig.{name}: expected a count >= 0, found {getattr(self, name)}")
        if isinstance(self.image_size, bool) or not isinstance(self.image_size, int) \
                or not 32 <= self.image_size <= MAX_SCENE_SIDE:
            raise ValueError(f"BuildConfig.image_size: expected 32..{MAX_SCENE_SIDE} px (the largest scene the "
                             f"built-in engines read), found {self.image_size}")
        if self.train_style not in STYLE_DIRS:
            raise ValueError(f"BuildConfig.train_style: expected one of {sorted(STYLE_DIRS)}, "
                             f"found {self.train_style!r}")
        if not 0 < self.held_out_fraction < 1:
            raise ValueError(f"BuildConfig.held_out_fraction: expected in (0, 1), found {self.held_out_fraction}")
        if len(self.type_mix) != 3 or min(self.type_mix) < 0 or sum(self.type_mix) <= 0:
            raise ValueError(f"BuildConfig.type_mix: expected 3 non-negative shares, found {self.type_mix}")
        if not 1 <= self.max_objects <= 4:
            raise ValueError(f"BuildConfig.max_objects: expected 1..4, found {self.max_objects}")
        if self.min_facts < 1 or self.max_emoji_per_concept < 1:
            raise ValueError("BuildConfig: expected min_facts >= 1 and max_emoji_per_concept >= 1, found "
                             f"{self.min_facts} and {self.max_emoji_per_concept}")

    @property
    def other_style(self) -> str:
        return next(s for s in STYLE_DIRS if s != self.train_style)

    def split_sizes(self) -> dict[str, int]:
        return {"train": self.train, "val": self.val, "test_iid": self.test,
                "test_unseen_facts": self.test, "test_other_style": self.test}


@dataclass
class BuildSummary:
    """What a build kept, skipped and wrote (``format()`` gives the one-screen summary)."""

    out: Path | None = None
    emoji_seen: int = 0
    emoji_kept: int = 0
    concepts_kept: int = 0
    skipped: Counter = field(default_factory=Counter)
    held_out_pairs: int = 0
    pairs: int = 0
    questions: dict[str, int] = field(default_factory=dict)
    by_relation: dict[str, Counter] = field(default_factory=dict)
    by_type: dict[str, Counter] = field(default_factory=dict)
    yes_no: dict[str, Counter] = field(default_factory=dict)

    def format(self) -> str:
        lines = [f"built-in benchmark -> {self.out}" if self.out else "built-in benchmark",
                 f"objects: {self.emoji_kept} of {self.emoji_seen} emoji kept, {self.concepts_kept} concepts; "
                 f"(object, relation) pairs: {self.pairs}, held out: {self.held_out_pairs}"]
        if self.skipped:
            lines.append("skipped: " + ", ".join(f"{k} {v}" for k, v in sorted(self.skipped.items())))
        rels = [r for r in QUESTION_RELATIONS if any(self.by_relation.get(s, {}).get(r) for s in self.questions)]
        short = {"train": "train", "val": "val", "test_iid": "iid", "test_unseen_facts": "unseen",
                 "test_other_style": "style"}
        head = f"{'relation':<15}" + "".join(f"{short.get(s, s):>8}" for s in self.questions)
        lines += ["", head, "-" * len(head)]
        for r in rels:
            lines.append(f"{r:<15}" + "".join(f"{self.by_relation[s].get(r, 0):>8}" for s in self.questions))
        for t in TEMPLATES:
            lines.append(f"{'[' + t + ']':<15}" + "".join(f"{self.by_type[s].get(t, 0):>8}" for s in self.questions))
        lines.append(f"{'yes / no':<15}" + "".join(
            f"{str(self.yes_no[s].get('yes', 0)) + '/' + str(self.yes_no[s].get('no', 0)):>8}"
            for s in self.questions))
        lines.append(f"{'total':<15}" + "".join(f"{n:>8}" for n in self.questions.values()))
        return "\n".join(lines)


# --------------------------------------------------------------------------- objects

def read_emoji_index(root: str | os.PathLike) -> list[dict]:
    """Read ``<root>/index.json``: a list of emoji records (``image``, ``name``, ``short_names``, ...).

    Raises:
        FileNotFoundError: no index.
        ValueError: malformed JSON or records (naming the file and record).
    """
    path = Path(root) / "index.json"
    if not path.is_file():
        raise FileNotFoundError(f"emoji index not found: {path}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}:{e.lineno}: malformed JSON: {e.msg}") from e
    if not isinstance(data, list):
        raise ValueError(f"{path}: expected a JSON list of emoji records, found {type(data).__name__}")
    for i, rec in enumerate(data):
        if not isinstance(rec, dict) or not isinstance(rec.get("image"), str) or not isinstance(rec.get("name"), str):
            raise ValueError(f"{path}: record {i}: expected an object with string fields 'image' and 'name'")
    return data


@dataclass(frozen=True)
class _Object:
    concept: str
    images: tuple[str, ...]   # sprite file names (same in every style)


def select_objects(index: Sequence[Mapping[str, Any]], kg, emoji_root: str | os.PathLike, config: BuildConfig, *,
                   progress: bool = False) -> tuple[list[_Object], list[dict], Counter]:
    """Link every emoji to a concept and check its sprites; keep the linked, decodable ones.

    Returns:
        ``(objects, kept_entries, skipped)``: objects by concept (sorted), the kept index
        entries with ``concept``/``rule``/``facts`` added, and skip counts by reason:
        ``no_concept`` (no candidate in the KG or refused), ``too_few_facts``,
        ``missing_image``, ``undecodable_image``, ``over_concept_cap``.
    """
    from tqdm.auto import tqdm

    skipped: Counter = Counter()
    by_concept: dict[str, list[str]] = defaultdict(list)
    kept: list[dict] = []
    cache = SpriteCache(emoji_root)
    for rec in tqdm(index, desc="emoji", unit="emoji", disable=not progress):
        if rec.get("concept"):  # an explicit link in the index wins over the rule
            n = count_nameable_facts(kg, rec["concept"])
            ok = n >= config.min_facts
            concept, rule = (rec["concept"], rec.get("rule", "index")) if ok else (None, "too_few_facts")
        else:
            link = link_emoji(rec["name"], rec.get("short_names") or [], kg, min_facts=config.min_facts)
            concept, rule, n = link.concept, link.rule, link.facts
        if concept is None:
            skipped["too_few_facts" if rule == "too_few_facts" else "no_concept"] += 1
            logger.debug("emoji %r: no concept (%s)", rec["name"], rule)
            continue
        if len(by_concept.get(concept, ())) >= config.max_emoji_per_concept:
            skipped["over_concept_cap"] += 1
            continue
        bad = None
        for style in STYLE_DIRS:
            try:
                cache.get(style, rec["image"])
            except FileNotFoundError:
                bad = "missing_image"
            except ValueError as e:
                bad = "undecodable_image"
                logger.warning("%s", e)
            if bad:
                break
        if bad:
            skipped[bad] += 1
            continue
        by_concept[concept].append(rec["image"])
        kept.append({**rec, "concept": concept, "rule": rule, "facts": n})
    objects = [_Object(c, tuple(ims)) for c, ims in sorted(by_concept.items())]
    return objects, kept, skipped


class _Knowledge:
    """The KG facts of the kept objects, indexed for question generation."""

    def __init__(self, kg, concepts: Iterable[str]):
        self.nameable: dict[str, dict[str, tuple[str, ...]]] = {}
        self.all_tails: dict[str, frozenset[str]] = {}
        self.rel_tails: dict[tuple[str, str], frozenset[str]] = {}
        for c in concepts:
            by_rel: dict[str, tuple[str, ...]] = {}
            tails: set[str] = set()
            for nb in kg.neighbors(c):
                tails.add(nb.concept)
            for rel in QUESTION_RELATIONS:
                try:
                    neigh = kg.neighbors(c, relation=rel)
                except KeyError:
                    continue
                rt = frozenset(nb.concept for nb in neigh)
                self.rel_tails[(c, rel)] = rt
                good = sorted(t for t in rt if is_nameable(t, rel, head=c))
                if good:
                    by_rel[rel] = tuple(good)
            self.nameable[c] = by_rel
            self.all_tails[c] = frozenset(tails)

    def pairs(self) -> list[tuple[str, str]]:
        return sorted((c, r) for c, rels in self.nameable.items() for r in rels)


def _hold_out(pairs: Sequence[tuple[str, str]], fraction: float, rng: random.Random) -> set[tuple[str, str]]:
    """Pick held-out (object, relation) pairs; every object keeps at least one pair for training."""
    order = list(pairs)
    rng.shuffle(order)
    left = Counter(c for c, _ in pairs)
    target = int(round(fraction * len(pairs)))
    held: set[tuple[str, str]] = set()
    for c, r in order:
        if len(held) >= target:
            break
        if left[c] > 1:
            held.add((c, r))
            left[c] -= 1
    return held


# --------------------------------------------------------------------------- questions

class _SplitGenerator:
    """Draws scenes and questions for one split."""

    def __init__(self, split: str, pairs: Sequence[tuple[str, str]], kb: _Knowledge, objects: Sequence[_Object],
                 style: str, config: BuildConfig, sprites: SpriteCache, rng: random.Random):
        if not pairs:
            raise ValueError(f"split {split!r}: no (object, relation) pairs to ask about; "
                             "the KG or the emoji set is too small")
        self.split, self.kb, self.style, self.cfg, self.sprites, self.rng = split, kb, style, config, sprites, rng
        self.objects = {o.concept: o for o in objects}
        self.concepts = sorted(self.objects)
        by_rel: dict[str, list[tuple[str, str]]] = defaultdict(list)
        for p in pairs:
            by_rel[p[1]].append(p)
        self.rels = sorted(by_rel)
        self.by_rel = {r: sorted(v) for r, v in by_rel.items()}
        self.rel_weights = [math.sqrt(len(self.by_rel[r])) for r in self.rels]
        # negatives for yes/no: the nameable tails of every object, per relation (with repeats)
        self.neg_pool = {r: [t for c in self.concepts for t in kb.nameable[c].get(r, ())] for r in QUESTION_RELATIONS}

    def _pair(self) -> tuple[str, str]:
        rel = self.rng.choices(self.rels, weights=self.rel_weights)[0]
        return self.rng.choice(self.by_rel[rel])

    def _others(self, exclude: set[str], n: int, ok=None) -> list[str] | None:
        pool = [c for c in self.concepts if c not in exclude and (ok is None or ok(c))]
        if len(pool) < n:
            return None
        return self.rng.sample(pool, n)

    def _scene(self, sid: str, target: str, others: list[str]) -> tuple[dict, str]:
        n = 1 + len(others)
        slots = self.rng.choice(LAYOUTS[n])
        concepts = [target, *others]
        self.rng.shuffle(concepts)
        objs = [{"image": self.rng.choice(self.objects[c].images), "concept": c} for c in concepts]
        size = self.cfg.image_size
        bg = random_background(self.rng)
        placed = place_objects(objs, slots, size, size, self.style, self.sprites, self.rng)
        spec = {"id": sid, "size": [size, size], "style": self.style, "background": bg, "objects": placed}
        return spec, slots[concepts.index(target)]

    def _n_objects(self, least: int) -> int:
        return self.rng.randint(least, max(least, self.cfg.max_objects))

    def make(self, sid: str, qtype: str, yes: bool | None) -> tuple[dict, dict] | None:
        c, rel = self._pair()
        answers_all = self.kb.nameable[c][rel]
        if qtype == "fact":
            others = self._others({c}, self._n_objects(1) - 1)
            if others is None:
                return None
            spec, slot = self._scene(sid, c, others)
            t = self.rng.randrange(len(TEMPLATES["fact"][rel]))
            q = render_question(TEMPLATES["fact"][rel][t], obj=self.rng.choice(SLOT_PHRASES[slot]))
            answers = list(answers_all)
            facts = [[c, rel, a] for a in answers]
            asked = None
        elif qtype == "select":
            if self.cfg.max_objects < 2:
                return None
            a = self.rng.choice(answers_all)
            n = self._n_objects(2) - 1
            # distractors: no KG edge to the asked concept at all (any relation)
            others = None
            while n >= 1 and others is None:
                others = self._others({c, a}, n, ok=lambda d: a not in self.kb.all_tails[d])
                n -= 1
            if others is None:
                return None
            spec, slot = self._scene(sid, c, others)
            t = self.rng.randrange(len(TEMPLATES["select"][rel]))
            q = render_question(TEMPLATES["select"][rel][t], answer=a)
            answers, facts, asked = [c], [[c, rel, a]], [c, rel, a]
        else:
            if yes:
                a = self.rng.choice(answers_all)
            else:
                cands = [t for t in self.neg_pool[rel] if t not in self.kb.all_tails[c] and t != c]
                if not cands:
                    return None
                a = self.rng.choice(cands)
            others = self._others({c}, self._n_objects(1) - 1)
            if others is None:
                return None
            spec, slot = self._scene(sid, c, others)
            t = self.rng.randrange(len(TEMPLATES["yesno"][rel]))
            q = render_question(TEMPLATES["yesno"][rel][t], obj=self.rng.choice(SLOT_PHRASES[slot]), answer=a)
            answers, facts, asked = ["yes" if yes else "no"], ([[c, rel, a]] if yes else []), [c, rel, a]
        rec = {"qid": sid, "question": q, "question_type": qtype, "relation": rel, "template": t,
               "target": c, "target_slot": slot, "answers": answers, "facts": facts, "asked_fact": asked,
               "scene": sid}
        return spec, rec

    def run(self, n: int, pbar=None) -> tuple[list[dict], list[dict]]:
        mix = self.cfg.type_mix
        total = sum(mix)
        n_fact = int(round(n * mix[0] / total))
        n_sel = int(round(n * mix[1] / total))
        n_yn = max(0, n - n_fact - n_sel)
        if n_yn % 2:  # an even count, so yes and no are exactly balanced
            n_yn -= 1
            n_fact += 1
        plan: list[tuple[str, bool | None]] = ([("fact", None)] * n_fact + [("select", None)] * n_sel
                                               + [("yesno", i % 2 == 0) for i in range(n_yn)])
        self.rng.shuffle(plan)
        scenes, records = [], []
        for i, (qtype, yes) in enumerate(plan):
            sid = f"{self.split}-{i:05d}"
            made = None
            for attempt in range(60):
                kind = qtype if attempt < 40 or qtype == "yesno" else "fact"
                made = self.make(sid, kind, yes)
                if made is not None:
                    break
            if made is None:
                raise ValueError(f"split {self.split!r}: could not make a {qtype!r} question after 60 tries; "
                                 "the KG or the emoji set is too small")
            scenes.append(made[0])
            records.append(made[1])
            if pbar is not None:
                pbar.update(1)
        return scenes, records


# --------------------------------------------------------------------------- build

def _dumps(obj) -> str:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


def _write_jsonl(path: Path, rows: Iterable[Mapping[str, Any]]) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    with open(tmp, "w", encoding="utf-8", newline="\n") as f:
        for r in rows:
            f.write(_dumps(r) + "\n")
    os.replace(tmp, path)


def build_builtin(out: str | os.PathLike, *, kg=None, emoji_root: str | os.PathLike | None = None,
                  config: BuildConfig | None = None, progress: bool = True) -> BuildSummary:
    """Build the benchmark into ``out`` (created; existing split files are replaced).

    Args:
        out: output folder.
        kg: a :class:`kg_ingest.KnowledgeGraph`; default ``load_default(with_fvqa=True)``
            (CN-100K + the FVQA ConceptNet facts).
        emoji_root: folder with ``index.json``, ``twemoji64/``, ``noto64/``; default the
            packaged sprites (:func:`default_emoji_root`).
        config: :class:`BuildConfig` (default settings when None).
        progress: show tqdm progress bars.

    Returns:
        The :class:`BuildSummary` (also logged); emoji without a concept and undecodable
        sprites are counted skips, not errors.

    Raises:
        FileNotFoundError: no emoji index.
        ValueError: too few objects or facts to fill a split, ``out`` a file.
    """
    cfg = config or BuildConfig()
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"{out}: exists and is not a folder")
    if kg is None:

        kg = load_default(with_fvqa=True)
    root = Path(emoji_root) if emoji_root is not None else default_emoji_root()
    index = read_emoji_index(root)
    objects, kept, skipped = select_objects(index, kg, root, cfg, progress=progress)
    if len(objects) < 2:
        where = getattr(kg, "path", None) or kg.meta.get("name") or "the KG"
        raise ValueError(f"{where}: the KG has too few concepts with >= {cfg.min_facts} nameable facts that an "
                         f"emoji of {root / 'index.json'} links to: {len(objects)} found, at least 2 needed "
                         f"({kg.num_edges} edges in the KG)")
    kb = _Knowledge(kg, [o.concept for o in objects])
    pairs = kb.pairs()
    held = _hold_out(pairs, cfg.held_out_fraction, random.Random(cfg.seed * 7919 + 1))
    seen_pairs = [p for p in pairs if p not in held]
    held_pairs = sorted(held)

    # The files are written into a temporary sibling folder and moved into ``out`` at the
    # end: an error (or Ctrl-C) leaves no partial split and no folder the build created.
    new_top = next((p for p in reversed([out, *out.parents]) if not p.exists()), None)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        summary = _write_builtin(tmp, out, kg, root, cfg, index, objects, kept, skipped, kb, pairs, held,
                                 seen_pairs, held_pairs, progress)
        out.mkdir(exist_ok=True)
        for f in sorted(tmp.iterdir()):
            os.replace(f, out / f.name)
    except BaseException:
        if new_top is not None and new_top.exists():
            shutil.rmtree(new_top, ignore_errors=True)  # the folders this build created
        raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    logger.debug("%s", summary.format())
    return summary


def _write_builtin(tmp: Path, out: Path, kg, root: Path, cfg: BuildConfig, index, objects, kept, skipped, kb, pairs,
                   held, seen_pairs, held_pairs, progress: bool) -> BuildSummary:
    """Write the splits, the manifest and the attribution of :func:`build_builtin` into ``tmp``."""
    from tqdm.auto import tqdm

    sprites = SpriteCache(root)
    summary = BuildSummary(out=out, emoji_seen=len(index), emoji_kept=len(kept), concepts_kept=len(objects),
                           skipped=skipped, held_out_pairs=len(held), pairs=len(pairs))
    sizes = cfg.split_sizes()
    split_info: dict[str, dict] = {}
    with tqdm(total=sum(sizes.values()), desc="questions", unit="q", disable=not progress) as pbar:
        for k, split in enumerate(BUILTIN_SPLITS):
            style = cfg.other_style if split == "test_other_style" else cfg.train_style
            split_pairs = held_pairs if split == "test_unseen_facts" else seen_pairs
            gen = _SplitGenerator(split, split_pairs, kb, objects, style, cfg, sprites,
                                  random.Random(cfg.seed * 7919 + 100 + k))
            scenes, records = gen.run(sizes[split], pbar)
            _write_jsonl(tmp / f"{split}.jsonl", records)
            _write_jsonl(tmp / f"{split}.scenes.jsonl", scenes)
            summary.questions[split] = len(records)
            summary.by_relation[split] = Counter(r["relation"] for r in records)
            summary.by_type[split] = Counter(r["question_type"] for r in records)
            summary.yes_no[split] = Counter(r["answers"][0] for r in records if r["question_type"] == "yesno")
            split_info[split] = {
                "questions": len(records), "style": style,
                "relations": dict(sorted(summary.by_relation[split].items())),
                "question_types": dict(sorted(summary.by_type[split].items())),
                "yes_no": dict(sorted(summary.yes_no[split].items())),
            }
    default_root = root.resolve() == default_emoji_root().resolve()
    manifest = {
        "name": "ravlm-builtin",
        "builder_version": BUILDER_VERSION,
        "seed": cfg.seed,
        "config": {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(cfg).items()},
        "emoji_root": None if default_root else str(root.resolve()),
        "kg": {"name": kg.meta.get("name"), "num_nodes": kg.num_nodes, "num_edges": kg.num_edges},
        "images": "scene specifications in <split>.scenes.jsonl, rendered on load",
        "objects": {"emoji": len(kept), "concepts": len(objects), "skipped": dict(sorted(skipped.items()))},
        "pairs": {"total": len(pairs), "held_out": len(held)},
        "splits": split_info,
        "held_out_pairs": [list(p) for p in held_pairs],
    }
    (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    (tmp / "ATTRIBUTION.md").write_text(ATTRIBUTION, encoding="utf-8")
    return summary


def package_emoji_assets(src_root: str | os.PathLike, dst_root: str | os.PathLike, *, kg=None,
                         config: BuildConfig | None = None, progress: bool = True) -> tuple[list[dict], Counter]:
    """Copy the sprites of the emoji that link to a concept into ``dst_root``.

    Writes ``twemoji64/``, ``noto64/`` (kept emoji only), ``index.json`` (kept entries with
    ``concept``, ``rule``, ``facts``) and ``ATTRIBUTION.md``.

    Returns:
        ``(kept_entries, skipped)``.
    """

    cfg = config or BuildConfig()
    if kg is None:

        kg = load_default(with_fvqa=True)
    src, dst = Path(src_root), Path(dst_root)
    _, kept, skipped = select_objects(read_emoji_index(src), kg, src, cfg, progress=progress)
    for style_dir in STYLE_DIRS.values():
        (dst / style_dir).mkdir(parents=True, exist_ok=True)
        for rec in kept:
            shutil.copyfile(src / style_dir / rec["image"], dst / style_dir / rec["image"])
    keys = ("unified", "image", "name", "short_names", "category", "subcategory", "concept", "rule", "facts")
    entries = [{k: rec[k] for k in keys if k in rec} for rec in kept]
    (dst / "index.json").write_text(json.dumps(entries, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    (dst / "ATTRIBUTION.md").write_text(ATTRIBUTION, encoding="utf-8")
    return entries, skipped


# --------------------------------------------------------------------------- load

class BuiltinRecord(VQARecord):
    """A :class:`VQARecord` of the built-in benchmark whose image is drawn from its scene spec.

    Fields beyond :class:`VQARecord` live in ``extra``: ``question_type`` (``fact`` /
    ``select`` / ``yesno``), ``relation``, ``target_object``, ``target_slot``,
    ``asked_fact`` (``[head, relation, tail]``, None for ``fact`` questions),
    ``objects`` (``[{"concept", "slot", "box", "image"}]``, boxes ``[x0, y0, x1, y1]`` px),
    ``style``, ``template``, ``scene`` (the full spec) and ``emoji_root``.
    """

    def load_image(self):
        """The rendered RGB scene (read from ``image_path`` when that file exists)."""
        if self.image_path is not None and self.image_path.is_file():
            return super().load_image()
        return render_scene(self.extra["scene"], self.extra["emoji_root"])


def read_manifest(root: str | os.PathLike | None = None) -> dict:
    """The ``manifest.json`` of a built benchmark folder (default: the packaged one)."""
    path = Path(root if root is not None else default_builtin_root()) / "manifest.json"
    if not path.is_file():
        raise FileNotFoundError(f"built-in benchmark manifest not found: {path}")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}:{e.lineno}: malformed JSON: {e.msg}") from e


def _read_jsonl(path: Path) -> list[tuple[int, dict]]:
    """(line number, record) of each non-blank line; malformed JSON or a non-object names file and line."""
    if not path.is_file():
        raise FileNotFoundError(f"built-in benchmark file not found: {path}")
    rows = []
    with open(path, encoding="utf-8-sig") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}:{lineno}: malformed JSON: {e.msg}") from e
            if not isinstance(row, dict):
                raise ValueError(f"{path}:{lineno}: expected a JSON object, found {type(row).__name__}")
            rows.append((lineno, row))
    return rows


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _require(row: Mapping[str, Any], keys: Sequence[str], where: str) -> None:
    missing = [k for k in keys if k not in row]
    if missing:
        raise ValueError(f"{where}: missing field{'s' if len(missing) > 1 else ''} "
                         f"{', '.join(repr(k) for k in missing)}")


_SCENE_FIELDS = ("id", "size", "style", "background", "objects")
_OBJECT_FIELDS = ("image", "concept", "slot", "size", "angle", "x", "y", "box")
_RECORD_FIELDS = ("qid", "question", "question_type", "relation", "template", "target", "target_slot", "answers",
                  "facts", "scene")


def check_scene(scene: Mapping[str, Any], where: str, *, min_side: int = DEFAULT_MIN_SIDE,
                max_side: int = MAX_SCENE_SIDE) -> None:
    """Check a scene spec before anything is drawn from it: fields present, the canvas
    ``size`` within the image limits of the built-in engines (``min_side`` to ``max_side`` px a
    side), each object's sprite size, position and ``box`` inside the canvas.

    Raises:
        ValueError: naming ``where`` (file and line) and the field.
    """
    _require(scene, _SCENE_FIELDS, where)
    size = scene["size"]
    if not (isinstance(size, list) and len(size) == 2 and all(_is_int(v) for v in size)):
        raise ValueError(f"{where}: field 'size': expected [width, height] in whole pixels, found {size!r}")
    w, h = size
    if not (min_side <= w <= max_side and min_side <= h <= max_side):
        raise ValueError(f"{where}: scene size {w}x{h} px: expected each side between {min_side} and {max_side} px")
    bg = scene["background"]
    if not isinstance(bg, dict) or bg.get("kind") not in ("solid", "gradient", "checker"):
        raise ValueError(f"{where}: field 'background': expected kind 'solid', 'gradient' or 'checker', found {bg!r}")
    if bg["kind"] == "checker" and not (_is_int(bg.get("cell")) and bg["cell"] >= 1):
        raise ValueError(f"{where}: background 'cell': expected a whole number of pixels >= 1, "
                         f"found {bg.get('cell')!r}")
    if not isinstance(scene["objects"], list):
        raise ValueError(f"{where}: field 'objects': expected a list, found {type(scene['objects']).__name__}")
    for j, o in enumerate(scene["objects"]):
        ow = f"{where}: object {j}"
        if not isinstance(o, dict):
            raise ValueError(f"{ow}: expected a JSON object, found {type(o).__name__}")
        _require(o, _OBJECT_FIELDS, ow)
        if not (_is_int(o["size"]) and 1 <= o["size"] <= max(w, h)):
            raise ValueError(f"{ow}: sprite size {o['size']!r}: expected whole pixels between 1 and {max(w, h)} "
                             f"(the scene's larger side)")
        if not _is_number(o["angle"]):
            raise ValueError(f"{ow}: field 'angle': expected degrees, found {o['angle']!r}")
        if not (_is_number(o["x"]) and _is_number(o["y"]) and 0 <= o["x"] <= w and 0 <= o["y"] <= h):
            raise ValueError(f"{ow}: position ({o['x']!r}, {o['y']!r}) outside the {w}x{h} px scene")
        box = o["box"]
        if not (isinstance(box, list) and len(box) == 4 and all(_is_number(v) for v in box)
                and 0 <= box[0] <= box[2] <= w and 0 <= box[1] <= box[3] <= h):
            raise ValueError(f"{ow}: box {box!r}: expected [x0, y0, x1, y1] inside the {w}x{h} px scene")


def load_builtin(split: str, root: str | os.PathLike | None = None, *,
                 emoji_root: str | os.PathLike | None = None,
                 images_dir: str | os.PathLike | None = None) -> list[BuiltinRecord]:
    """Read one split of a built benchmark.

    Args:
        split: one of :data:`BUILTIN_SPLITS`.
        root: the benchmark folder; default the packaged small build (:func:`default_builtin_root`).
        emoji_root: sprites to draw scenes with; default the manifest's, else the packaged ones.
        images_dir: if given, every scene is also rendered to ``<images_dir>/<split>/<scene>.png``
            (kept when already there) and ``image_path`` points to it.

    Returns:
        :class:`BuiltinRecord` s (``dataset="builtin"``): ``answers`` every valid answer
        (concepts; ``"yes"``/``"no"`` for yes/no questions), ``answer_concepts`` the same
        for non-yes/no questions, ``facts`` the supporting KG facts, ``entities`` the scene's
        objects (origin ``"image"``), ``image_id`` the scene id; more in ``extra``.

    Raises:
        KeyError: unknown split.
        FileNotFoundError: missing files.
        ValueError: malformed lines, missing or empty fields, scenes larger than the image limit
            (4096 px a side) or smaller than 8 px, objects outside their scene (naming file and
            line), or a record without its scene.
    """
    if split not in BUILTIN_SPLITS:
        raise KeyError(f"unknown built-in split {split!r}; expected one of {', '.join(BUILTIN_SPLITS)}")
    base = Path(root) if root is not None else default_builtin_root()
    manifest = read_manifest(base)
    if emoji_root is None:
        emoji_root = manifest.get("emoji_root") or default_emoji_root()
    emoji_root = str(emoji_root)
    scenes_path, questions_path = base / f"{split}.scenes.jsonl", base / f"{split}.jsonl"
    scenes = {}
    for lineno, sc in _read_jsonl(scenes_path):
        check_scene(sc, f"{scenes_path}:{lineno}")
        scenes[sc["id"]] = sc
    img_dir = Path(images_dir) / split if images_dir is not None else None
    if img_dir is not None:
        img_dir.mkdir(parents=True, exist_ok=True)
    sprites = SpriteCache(emoji_root) if img_dir is not None else None
    out = []
    for lineno, r in _read_jsonl(questions_path):
        where = f"{questions_path}:{lineno}"
        _require(r, _RECORD_FIELDS, where)
        scene = scenes.get(r["scene"])
        if scene is None:
            raise ValueError(f"{where}: scene {r['scene']!r} not in {scenes_path.name}")
        if not isinstance(r["answers"], list) or not r["answers"] or not all(
                isinstance(a, str) and a.strip() for a in r["answers"]):
            raise ValueError(f"{where}: field 'answers': expected a non-empty list of answers, found {r['answers']!r}")
        if not isinstance(r["question"], str) or not r["question"].strip():
            raise ValueError(f"{where}: field 'question': expected the question text, found {r['question']!r}")
        if not isinstance(r["facts"], list) or not all(isinstance(f, list) and len(f) == 3 for f in r["facts"]):
            raise ValueError(f"{where}: field 'facts': expected [head, relation, tail] triples, found {r['facts']!r}")
        image_path = None
        if img_dir is not None:
            image_path = img_dir / f"{scene['id']}.png"
            if not image_path.is_file():
                render_scene(scene, sprites=sprites).save(image_path)
        objects = [{"concept": o["concept"], "slot": o["slot"], "box": list(o["box"]), "image": o["image"]}
                   for o in scene["objects"]]
        yesno = r["question_type"] == "yesno"
        out.append(BuiltinRecord(
            qid=r["qid"], question=r["question"], dataset="builtin", split=split,
            answers=tuple(r["answers"]), answer_scores={a: 1.0 for a in r["answers"]},
            answer_concepts=() if yesno else tuple(r["answers"]),
            image_path=image_path, image_id=scene["id"],
            entities=tuple(Entity(o["concept"], 1.0, "image") for o in objects),
            facts=tuple(Fact(h, rel, t, source="conceptnet") for h, rel, t in r["facts"]),
            extra={"question_type": r["question_type"], "relation": r["relation"], "target_object": r["target"],
                   "target_slot": r["target_slot"], "asked_fact": r.get("asked_fact"), "objects": objects,
                   "style": scene["style"], "template": r["template"], "scene": scene, "emoji_root": emoji_root},
        ))
    return out
