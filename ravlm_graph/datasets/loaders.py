"""Readers for knowledge-VQA and commonsense-QA annotation files -> :class:`VQARecord`.

Supported official formats:

* FVQA (Wang et al., TPAMI 2018): ``all_qs_dict_release.json``-style question files keyed
  by question id, the per-split ``question id -> [head, relation, tail]`` fact files, and
  the ConceptNet part of its knowledge base (``relation head tail`` TSV).
* VQA v2 / OK-VQA: ``{"questions": [...]}`` question files and ``{"annotations": [...]}``
  answer files (10 human answers per question).
* LXMERT-style soft-score files (``label: {"racing": 1, "motocross": 0.667}``).
* A-OKVQA: choices, correct choice, 10 direct answers, rationales.
* CommonsenseQA: JSON lines with a question concept and choices labelled A-E.

Every reader accepts a path or an open file object (text or binary). Images are never
opened here: records carry the expected path and open it on
:meth:`VQARecord.load_image`.
"""

from __future__ import annotations

import io
import json
import logging
import os
import random
import re
import warnings
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import IO, Any, Union

from ravlm_graph.datasets.answers import normalize_answer, vqa_answer_scores
from ravlm_graph.types import Entity, Fact, VQARecord, canonical_relation, normalize_concept

logger = logging.getLogger(__name__)

__all__ = [
    "FVQA_DBPEDIA_RELATIONS",
    "UnknownRelationWarning",
    "fvqa_relation",
    "unknown_relation_name",
    "unknown_relations",
    "load_aokvqa",
    "load_csqa",
    "load_fvqa",
    "load_fvqa_kb_facts",
    "load_lxmert",
    "load_vqa",
]

Source = Union[str, os.PathLike, IO[str], IO[bytes]]

# FVQA's DBpedia relations map to the ConceptNet relation closest in meaning. Category
# membership ("transnbhd", FVQA's name for DBpedia's category neighbourhood) and the generic
# RDF membership predicates are "is a"; so is every taxonomic-rank relation
# ("animal_class", "animal_kingdom", "plant_genus", "dbo:family", ...), matched by rule below.
FVQA_DBPEDIA_RELATIONS: Mapping[str, str] = {
    "transnbhd": "IsA",
    "type": "IsA",
    "subject": "IsA",
    "category": "IsA",
    "broader": "IsA",
}
# The ranks of the Linnaean hierarchy (with their sub-/super-/infra- forms, matched by
# rule): the last word of a DBpedia taxonomy relation.
_TAXON_RANKS = frozenset({"domain", "kingdom", "phylum", "division", "class", "cohort", "order", "family",
                          "tribe", "genus", "section", "series", "species", "variety", "form", "clade",
                          "taxon", "rank"})
_RANK_AFFIX = re.compile(r"^(?:sub|super|infra|parv)(?=[a-z])")
# FVQA's WebChild comparatives: "<adjective>#f" (head is more <adj> than tail) and
# "<adjective>#r" (head is less <adj> than tail); also accepted spelt as "more_big" / "LessBig".
_WEBCHILD = re.compile(r"^([a-z][a-z0-9_\- ]*)#([fr])$", re.IGNORECASE)
_COMPARATIVE_NAME = re.compile(r"^(more|less)(?:[_\- ]+([a-z][a-z0-9_\- ]*)|([A-Z][A-Za-z0-9]*))$", re.IGNORECASE)
_SURFACE_SPAN = re.compile(r"\[\[(.+?)\]\]")
_ARTICLES = frozenset({"a", "an", "the"})


# --------------------------------------------------------------------------- reading

def _source_name(src: Source) -> str:
    if isinstance(src, (str, os.PathLike)):
        return Path(src).name
    name = getattr(src, "name", None)
    return Path(name).name if isinstance(name, str) else "<stream>"


def _read_text(src: Source) -> str:
    """The text of a path or file object, UTF-8 with or without a byte order mark."""
    if isinstance(src, (str, os.PathLike)):
        data = Path(src).read_bytes()
    else:
        data = src.read()
    if isinstance(data, bytes):
        try:
            return data.decode("utf-8-sig")
        except UnicodeDecodeError as e:
            raise ValueError(f"{_source_name(src)}: invalid UTF-8 at byte {e.start}") from e
    return data[1:] if data.startswith("\ufeff") else data


def _read_json(src: Source) -> tuple[str, Any]:
    name = _source_name(src)
    text = _read_text(src)
    try:
        return name, json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"{name}: malformed JSON at line {e.lineno} column {e.colno}: {e.msg}") from e


def _iter_jsonl(src: Source) -> Iterable[tuple[str, int, Any]]:
    name = _source_name(src)
    for lineno, line in enumerate(io.StringIO(_read_text(src)), start=1):
        if not line.strip():
            continue
        try:
            yield name, lineno, json.loads(line)
        except json.JSONDecodeError as e:
            raise ValueError(f"{name}: line {lineno}: malformed JSON at column {e.colno}: {e.msg}") from e


def _split_from_name(name: str) -> str:
    m = re.search(r"(?<![a-z])(train|dev|valid|val|test)(?![a-z])", name.lower())
    return m.group(1) if m else "unknown"


def _field(rec: Any, key: str, where: str, types: type | tuple[type, ...] = str) -> Any:
    if not isinstance(rec, Mapping):
        raise ValueError(f"{where}: expected a JSON object, found {type(rec).__name__}")
    if key not in rec:
        raise ValueError(f"{where}: missing field {key!r}")
    value = rec[key]
    if not isinstance(value, types) or isinstance(value, bool) and bool not in _as_tuple(types):
        expected = " or ".join(t.__name__ for t in _as_tuple(types))
        raise ValueError(f"{where}: field {key!r}: expected {expected}, found {type(value).__name__}")
    return value


def _as_tuple(types: type | tuple[type, ...]) -> tuple[type, ...]:
    return types if isinstance(types, tuple) else (types,)


def _str_list(value: Any, key: str, where: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"{where}: field {key!r}: expected a list of strings, found {value!r}")
    return tuple(value)


def _warn_duplicates(name: str, duplicates: list[str], what: str = "question id", note: str = "") -> None:
    """Log one warning for the repeated ids of a file (the first five named)."""
    if duplicates:
        logger.warning("%s: %d duplicate %s%s%s: %s%s", name, len(duplicates), what, "s" * (len(duplicates) > 1),
                       note, ", ".join(duplicates[:5]), ", ..." if len(duplicates) > 5 else "")


def _record_duplicates(ids: Iterable[str], unit: str = "records") -> list[str]:
    """``"'7' (records 0 and 3)"`` for each id met again (every repeat named by its position)."""
    first: dict[str, int] = {}
    out = []
    for pos, qid in enumerate(ids):
        if qid in first:
            out.append(f"{qid!r} ({unit} {first[qid]} and {pos})")
        else:
            first[qid] = pos
    return out


def _image_number(image_id: int | str, where: str) -> int:
    """A COCO image id as the number its file name needs; a ValueError naming the record otherwise."""
    if isinstance(image_id, int):
        number = image_id
    elif re.fullmatch(r"\s*[0-9]+\s*", image_id):
        number = int(image_id)
    else:
        raise ValueError(f"{where}: field 'image_id': expected a numeric COCO image id (needed to name the "
                         f"image file), found {image_id!r}")
    if number < 0:
        raise ValueError(f"{where}: field 'image_id': expected a non-negative COCO image id, found {image_id!r}")
    return number


def _answer_concepts(scores: Mapping[str, float], first: Iterable[str] = ()) -> tuple[str, ...]:
    # Distinct answers as concepts, best score first (stable for ties).
    ranked = sorted(scores, key=lambda a: -scores[a])
    out = dict.fromkeys(normalize_concept(a) for a in (*first, *ranked))
    out.pop("", None)
    return tuple(out)


# --------------------------------------------------------------------------- FVQA

def _relation_words(name: str) -> list[str]:
    """Lower-case words of a relation name in any spelling: the last segment of a URI or a
    prefixed name (``http://dbpedia.org/ontology/family``, ``dbo:family``, ``/r/UsedFor``),
    split on separators and CamelCase."""
    key = name.strip().rstrip("/#")
    key = re.split(r"[/#]", key)[-1] if re.search(r"[/#]", key) else key
    key = key.split(":")[-1]
    words = []
    for part in re.split(r"[\s_\-.]+", key):
        words += [w.lower() for w in re.findall(r"[A-Z]+(?=[A-Z][a-z]|[0-9]|$)|[A-Z]?[a-z]+|[0-9]+", part)]
    return words


def _camel(words: Iterable[str]) -> str:
    return "".join(w[:1].upper() + w[1:] for w in words if w)


def fvqa_relation(name: str) -> tuple[str, str] | None:
    """Map an FVQA relation name to a ConceptNet-style relation and its source, by rule.

    Args:
        name: a relation of FVQA's knowledge base in any usual spelling: ConceptNet's
            (``"UsedFor"``, ``"/r/UsedFor"``, ``"used_for"``, ``"Used For"``), DBpedia's
            (``"transnbhd"``, any taxonomic-rank relation such as ``"animal_kingdom"`` or
            ``"dbo:genus"``) or WebChild comparatives (``"big#f"``, ``"natural#r"``).

    Returns:
        ``(relation, source)``: ConceptNet relations keep their CamelCase name
        (``("UsedFor", "conceptnet")``); DBpedia category and taxonomy relations become
        ``("IsA", "dbpedia")``; WebChild comparatives become ``More<Adj>`` / ``Less<Adj>``
        (``("MoreBig", "webchild")``). None when the name matches none of these rules.
    """
    if not isinstance(name, str) or not name.strip():
        return None
    key = name.strip()
    m = _WEBCHILD.match(key)
    if m:
        adj = _camel(re.split(r"[\s_\-]+", m.group(1).lower()))
        return ("More" if m.group(2).lower() == "f" else "Less") + adj, "webchild"
    cn = canonical_relation(key)
    if cn is None:
        words = _relation_words(key)
        cn = canonical_relation("".join(words)) if words else None
    if cn is not None:
        return cn, "conceptnet"
    words = _relation_words(key)
    if not words:
        return None
    joined = "_".join(words)
    if joined in FVQA_DBPEDIA_RELATIONS:
        return FVQA_DBPEDIA_RELATIONS[joined], "dbpedia"
    if _RANK_AFFIX.sub("", words[-1]) in _TAXON_RANKS:
        return "IsA", "dbpedia"
    m = _COMPARATIVE_NAME.match(key)
    if m:
        rest = m.group(2) if m.group(2) is not None else m.group(3)
        adj_words = re.split(r"[\s_\-]+", rest) if m.group(2) is not None else _relation_words(rest)
        return ("More" if m.group(1).lower() == "more" else "Less") + _camel(w.lower() for w in adj_words), \
            "webchild"
    return None


def unknown_relation_name(name: str) -> str:
    """A CamelCase relation name for a relation :func:`fvqa_relation` does not know
    (``"capital_of"`` -> ``"CapitalOf"``), so that its record still carries a fact."""
    return _camel(_relation_words(name)) or "Unknown"


def _fvqa_concept(text: str) -> str:
    s = text.strip()
    if s.lower().startswith("category:"):  # DBpedia category pages
        s = s[len("category:"):]
    return normalize_concept(s)


def load_fvqa_kb_facts(tsv: Source) -> list[Fact]:
    """Read FVQA's ConceptNet facts (``relation<TAB>head<TAB>tail``, optional header).

    Args:
        tsv: path or file object of ``conceptnet_facts.tsv``.

    Returns:
        The facts in file order, concepts ConceptNet-style (``saving lives`` ->
        ``saving_lives``), relations CamelCase, ``source="conceptnet"``.

    Raises:
        ValueError: a line without 3 tab-separated fields, an empty field, or a relation
            that is not ConceptNet's (naming the file and line).
    """
    name = _source_name(tsv)
    facts: list[Fact] = []
    for lineno, line in enumerate(io.StringIO(_read_text(tsv)), start=1):
        line = line.rstrip("\r\n")
        if not line.strip():
            continue
        cols = line.split("\t")
        if lineno == 1 and [c.strip().lower() for c in cols] == ["relation", "head", "tail"]:
            continue
        if len(cols) != 3:
            raise ValueError(f"{name}: line {lineno}: expected 3 tab-separated fields "
                             f"(relation, head, tail), found {len(cols)}")
        rel, head, tail = cols
        relation = canonical_relation(rel)
        if relation is None:
            raise ValueError(f"{name}: line {lineno}: unknown relation {rel!r}; expected a ConceptNet relation")
        h, t = normalize_concept(head), normalize_concept(tail)
        if not h or not t:
            raise ValueError(f"{name}: line {lineno}: empty head or tail")
        facts.append(Fact(h, relation, t, source="conceptnet"))
    return facts


def _words(text: str) -> set[str]:
    s = text.lower()
    if s.startswith("category:"):
        s = s[len("category:"):]
    out = set()
    for w in re.split(r"[^a-z0-9]+", s):
        if not w or w in _ARTICLES:
            continue
        for suffix in ("ing", "es", "s"):  # crude stemming: enough to match surface forms
            if w.endswith(suffix) and len(w) - len(suffix) >= 3:
                w = w[: -len(suffix)]
                break
        out.add(w)
    return out


def _overlap(a: str, b: str) -> float:
    wa, wb = _words(a), _words(b)
    return len(wa & wb) / len(wa | wb) if wa and wb else 0.0


def _fvqa_visual_end(head: str, tail: str, answer: str, ans_source: str, question: str) -> int:
    """0 when the head is the concept seen in the image, 1 for the tail.

    ``ans_source == "image"``: the answer is the visual concept, so the end closer to
    the answer; ``"kb"``: the answer is the other end. Ties are broken by the question
    (the end it names is the non-visual one), then in favour of the head.
    """
    sh, st = _overlap(answer, head), _overlap(answer, tail)
    if sh != st:
        closer = 0 if sh > st else 1
        return closer if ans_source != "kb" else 1 - closer
    qh, qt = _overlap(question, head), _overlap(question, tail)
    if qh != qt:
        return 0 if qh < qt else 1
    return 0


def _answer_outside_fact(answer: str, question: str, ends: tuple[str, str]) -> bool:
    """The answer shares no word with either end of the fact and is yes/no, or one of the
    choices an "A or B" question offers (a comparative: "bigger or smaller than ...")."""
    if _overlap(answer, ends[0]) or _overlap(answer, ends[1]):
        return False
    words = _words(answer)
    if not words:
        return False
    if len(words) == 1 and words <= {"yes", "no"}:
        return True
    return " or " in f" {question.lower()} " and words <= _words(question)


def _as_mapping(src: Source | Mapping[str, Any], what: str) -> tuple[str, Mapping[str, Any]]:
    if isinstance(src, Mapping):
        return f"<{what}>", src
    name, data = _read_json(src)
    if not isinstance(data, Mapping):
        raise ValueError(f"{name}: expected a JSON object keyed by question id, found {type(data).__name__}")
    return name, data


def load_fvqa(
    questions: Source | Mapping[str, Any],
    fact_triples: Source | Mapping[str, Any] | None = None,
    *,
    images_root: str | os.PathLike | None = None,
    kb_facts: Source | Iterable[Fact] | None = None,
    distractors: int = 4,
    seed: int = 0,
    concept_vocab: Iterable[str] | None = None,
    split: str | None = None,
) -> list[VQARecord]:
    """Read FVQA questions (a whole split file or any subset of its records).

    Given-entities mode (no images needed): each record's image entities are the
    supporting fact's visual concept plus ``distractors`` distractor concepts, drawn
    without replacement from the visual concepts of the other loaded questions (or
    from ``concept_vocab``), never equal to either end of the fact, with a generator
    seeded by ``(seed, question id)``, which also shuffles the entity order (so the
    true concept is not always first); loading the same records again gives the same
    entities. The visual end of the fact is the end matching the answer when
    ``ans_source`` is ``image`` and the other end when it is ``kb``.

    Args:
        questions: ``all_qs_dict_release.json``-style file (path or file object), or a
            mapping question id -> record taken from one.
        fact_triples: file or mapping question id -> ``[head, relation, tail]``. Without
            it the records have no facts and the two ``[[...]]`` spans of
            ``fact_surface`` stand in for the fact's ends.
        images_root: folder holding the ``img_file`` images; None: no image paths.
        kb_facts: ``conceptnet_facts.tsv`` (path or file) or Facts; when given,
            ``extra["fact_in_kb"]`` tells whether a ConceptNet supporting fact is in it.
        distractors: distractor image entities per question (>= 0).
        seed: seed of the distractor draw.
        concept_vocab: concept names to draw distractors from instead of the questions.
        split: split name; default: the word ``train``/``val``/``test`` in the file
            name (``train_split0_questions.json`` -> ``"train"``), else ``"unknown"``.

    Returns:
        One :class:`VQARecord` per question, in file order. ``answers`` is the raw
        answer, ``answer_concepts`` the answer end of the fact, ``extra`` holds
        ``kb_source``, ``ans_source``, ``visual_concept_type`` (obj/scn/act),
        ``visual_concept``, ``fact_surface``, ``fact_id``, ``fvqa_relation``.

    Raises:
        ValueError: malformed JSON (naming the file), a record missing ``question`` or
            ``answer``, a question without a supporting fact, or a malformed triple
            (naming the file and record).

    Warns:
        UnknownRelationWarning: once per call, when some supporting facts have a relation
            that :func:`fvqa_relation` cannot map, with the names, their counts and the
            first record of each. Such records are kept: their fact's relation is the
            name as written in CamelCase, ``source="unknown"``, and
            ``extra["relation_known"]`` is False (see :func:`unknown_relations`).
    """
    if not isinstance(distractors, int) or distractors < 0:
        raise ValueError(f"load_fvqa: expected distractors >= 0, found {distractors!r}")
    qname, qdata = _as_mapping(questions, "questions")
    tname, tdata = (None, None) if fact_triples is None else _as_mapping(fact_triples, "fact_triples")
    if split is None:
        split = _split_from_name(qname)

    kb: set[Fact] | None = None
    if kb_facts is not None:
        if isinstance(kb_facts, (str, os.PathLike)) or hasattr(kb_facts, "read"):
            kb = set(load_fvqa_kb_facts(kb_facts))  # type: ignore[arg-type]
        else:
            kb = set(kb_facts)

    parsed = []  # (qid, rec, fact | None, ends | None, visual index | None, fvqa relation)
    unknown: dict[str, int] = {}  # relation name -> records
    unknown_where: dict[str, str] = {}  # relation name -> its first record
    for qid, rec in qdata.items():
        qid = str(qid)
        where = f"{qname}: record {qid!r}"
        question = _field(rec, "question", where)
        answer = _field(rec, "answer", where)
        for key, value in (("question", question), ("answer", answer)):
            if not value.strip():
                raise ValueError(f"{where}: field {key!r} is empty")
        if "question_id" in rec and str(rec["question_id"]) != qid:
            raise ValueError(f"{where}: field 'question_id' is {rec['question_id']!r}, expected {qid!r} (its key)")
        fact: Fact | None = None
        ends: tuple[str, str] | None = None
        raw_rel = None
        if tdata is not None:
            twhere = f"{tname}: record {qid!r}"
            if qid not in tdata:
                raise ValueError(f"{twhere}: missing supporting fact for this question")
            triple = tdata[qid]
            if (not isinstance(triple, (list, tuple)) or len(triple) != 3
                    or not all(isinstance(x, str) and x.strip() for x in triple)):
                raise ValueError(f"{twhere}: expected [head, relation, tail] strings, found {triple!r}")
            raw_head, raw_rel, raw_tail = triple
            mapped = fvqa_relation(raw_rel)
            if mapped is None:
                # Counted and reported once for the whole file; the record keeps its fact
                # (its ends still give the answer and the visual concept).
                unknown[raw_rel] = unknown.get(raw_rel, 0) + 1
                unknown_where.setdefault(raw_rel, twhere)
                mapped = (unknown_relation_name(raw_rel), "unknown")
            head, tail = _fvqa_concept(raw_head), _fvqa_concept(raw_tail)
            if not head or not tail:
                raise ValueError(f"{twhere}: empty head or tail in {triple!r}")
            fact = Fact(head, mapped[0], tail, source=mapped[1])
            ends = (head, tail)
        else:
            spans = _SURFACE_SPAN.findall(str(rec.get("fact_surface", "")))
            if len(spans) == 2:
                ends = tuple(  # type: ignore[assignment]
                    normalize_concept(" ".join(w for w in s.split() if w.lower() not in _ARTICLES))
                    for s in spans)
        visual = None
        if ends is not None:
            visual = _fvqa_visual_end(ends[0], ends[1], answer, str(rec.get("ans_source", "image")), question)
        parsed.append((qid, rec, fact, ends, visual, raw_rel))

    if concept_vocab is not None:
        pool = sorted({c for c in (normalize_concept(v) for v in concept_vocab) if c})
    else:
        pool = sorted({ends[vis] for _, _, _, ends, vis, _ in parsed if ends is not None})
    root = Path(images_root) if images_root is not None else None

    records = []
    n_missing_kb = 0
    for qid, rec, fact, ends, visual, raw_rel in parsed:
        entities: tuple[Entity, ...] = ()
        answer_concepts: tuple[str, ...] = ()
        extra: dict[str, Any] = {
            "kb_source": rec.get("kb_source"),
            "ans_source": rec.get("ans_source"),
            "visual_concept_type": rec.get("visual_concept"),
            "fact_surface": rec.get("fact_surface"),
            "fact_id": (rec.get("fact") or [None])[0] if isinstance(rec.get("fact"), list) else rec.get("fact"),
            "fvqa_relation": raw_rel,
            "relation_known": raw_rel is None or raw_rel not in unknown,
            "visual_concept": None,
        }
        if ends is not None and visual is not None:
            gold = ends[visual]
            other = ends[1 - visual]
            extra["visual_concept"] = gold
            answer_concepts = (other,) if rec.get("ans_source") == "kb" else (gold,)
            if _answer_outside_fact(str(rec["answer"]), str(rec["question"]), ends):
                # "bigger or smaller than a dolphin?" -> "bigger", "Is it ...?" -> "yes": the
                # answer is a choice the question offers (or yes/no), not an end of the fact
                answer_concepts = (normalize_concept(str(rec["answer"])),)
                extra["answer_outside_fact"] = True
            rng = random.Random(f"{seed}:{qid}")
            candidates = [c for c in pool if c != gold and c != other]
            names = [gold, *rng.sample(candidates, min(distractors, len(candidates)))]
            if len(names) - 1 < distractors:
                logger.debug("fvqa record %r: only %d distractor concepts available", qid, len(names) - 1)
            rng.shuffle(names)
            entities = tuple(Entity(n, 1.0, "image") for n in names)
        if kb is not None and fact is not None and fact.source == "conceptnet":
            extra["fact_in_kb"] = fact in kb
            n_missing_kb += fact not in kb
        img_file = rec.get("img_file")
        records.append(VQARecord(
            qid=qid,
            question=rec["question"],
            dataset="fvqa",
            split=split,
            answers=(rec["answer"],),
            answer_scores={rec["answer"]: 1.0},
            answer_concepts=answer_concepts,
            image_path=(root / img_file) if root is not None and img_file else None,
            image_id=img_file,
            entities=entities,
            facts=(fact,) if fact is not None else (),
            extra=extra,
        ))
    if n_missing_kb:
        logger.info("%s: %d ConceptNet supporting facts are not in the given KB facts", qname, n_missing_kb)
    if unknown:
        warnings.warn(
            f"{tname}: {sum(unknown.values())} of {len(records)} records have a relation that is neither "
            f"ConceptNet's, a DBpedia category/taxonomy relation nor a WebChild comparative: "
            + ", ".join(f"{r!r} x{n} (first at {unknown_where[r].split(': ', 1)[-1]})"
                        for r, n in sorted(unknown.items(), key=lambda kv: (-kv[1], kv[0])))
            + "; kept with the relation name as written (extra['relation_known'] is False)",
            UnknownRelationWarning, stacklevel=2)
    return records


class UnknownRelationWarning(UserWarning):
    """A loader met relation names it cannot map; the records were kept and counted."""


def unknown_relations(records: Iterable[VQARecord]) -> dict[str, int]:
    """Relation name -> number of records whose supporting fact has a relation the loader
    could not map (``extra["relation_known"]`` False), most frequent first."""
    counts: dict[str, int] = {}
    for r in records:
        if r.extra.get("relation_known") is False:
            name = str(r.extra.get("fvqa_relation"))
            counts[name] = counts.get(name, 0) + 1
    return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


# --------------------------------------------------------------------------- VQA / OK-VQA

def load_vqa(
    questions_json: Source,
    annotations_json: Source | None = None,
    images_root: str | os.PathLike | None = None,
    *,
    dataset: str | None = None,
    split: str | None = None,
) -> list[VQARecord]:
    """Read a VQA v2 / OK-VQA question file, with its annotation file when given.

    Args:
        questions_json: ``{"questions": [{"question_id", "image_id", "question"}, ...]}``
            (official ``OpenEnded_mscoco_<subtype>_questions.json``).
        annotations_json: ``{"annotations": [{"question_id", "answers": [{"answer"}, ...]}]}``;
            None: unlabelled records (empty ``answers``).
        images_root: folder holding ``COCO_<data_subtype>_<image_id:012d>.jpg``.
        dataset: dataset name; default ``"okvqa"`` when the file's ``info`` mentions
            OK-VQA, else ``"vqa"``.
        split: split name; default: the file's ``data_subtype`` (``"val2014"``).

    Returns:
        Records in question-file order; ``answers`` the raw human answers,
        ``answer_scores`` normalised answer -> VQA accuracy (:func:`vqa_answer_scores`).

    Raises:
        ValueError: malformed JSON, a missing ``questions``/``annotations`` list, a
            record missing a field, a question without an annotation, or (with
            ``images_root``) an ``image_id`` that is not a number (naming file and record).

    Logs a warning for repeated question ids in the question file, for repeated
    annotations of a question (the last copy is kept) and for annotations whose
    question is not in the question file (ignored; their count and first ids).
    """
    qname, qdata = _read_json(questions_json)
    if not isinstance(qdata, Mapping) or not isinstance(qdata.get("questions"), list):
        raise ValueError(f"{qname}: expected a JSON object with a 'questions' list")
    subtype = qdata.get("data_subtype")
    if dataset is None:
        info = json.dumps(qdata.get("info", {})).lower()
        dataset = "okvqa" if "ok-vqa" in info or "okvqa" in info else "vqa"
    if split is None:
        split = subtype if isinstance(subtype, str) else "unknown"
    if images_root is not None and not isinstance(subtype, str):
        raise ValueError(f"{qname}: missing field 'data_subtype', needed to name image files")

    annotations: dict[str, Any] | None = None
    aname = None
    if annotations_json is not None:
        aname, adata = _read_json(annotations_json)
        if not isinstance(adata, Mapping) or not isinstance(adata.get("annotations"), list):
            raise ValueError(f"{aname}: expected a JSON object with an 'annotations' list")
        annotations = {}
        ann_ids = []
        for i, ann in enumerate(adata["annotations"]):
            aqid = str(_field(ann, "question_id", f"{aname}: annotation {i}", (int, str)))
            ann_ids.append(aqid)
            annotations[aqid] = ann
        _warn_duplicates(aname, _record_duplicates(ann_ids, "annotations"), "annotation question id",
                         " (the last annotation of each is kept)")

    qids = [str(_field(q, "question_id", f"{qname}: question {i}", (int, str)))
            for i, q in enumerate(qdata["questions"])]
    _warn_duplicates(qname, _record_duplicates(qids, "questions"))
    if annotations is not None:
        asked = set(qids)
        orphans = [a for a in annotations if a not in asked]
        if orphans:
            logger.warning("%s: %d annotation%s for no question of %s (ignored; first: %s%s)", aname, len(orphans),
                           "s" * (len(orphans) > 1), qname, ", ".join(repr(a) for a in orphans[:5]),
                           ", ..." if len(orphans) > 5 else "")

    root = Path(images_root) if images_root is not None else None
    records = []
    for qid, q in zip(qids, qdata["questions"]):
        where = f"{qname}: record {qid!r}"
        question = _field(q, "question", where)
        image_id = _field(q, "image_id", where, (int, str))
        answers: tuple[str, ...] = ()
        scores: dict[str, float] = {}
        extra: dict[str, Any] = {}
        if annotations is not None:
            if qid not in annotations:
                raise ValueError(f"{aname}: record {qid!r}: missing annotation for this question")
            ann = annotations[qid]
            awhere = f"{aname}: record {qid!r}"
            raw = _field(ann, "answers", awhere, list)
            if not raw:
                raise ValueError(f"{awhere}: field 'answers': expected human answers, found an empty list")
            answers = tuple(_field(a, "answer", f"{awhere}: answer {j}") for j, a in enumerate(raw))
            scores = vqa_answer_scores(answers)
            for k in ("question_type", "answer_type", "multiple_choice_answer"):
                if k in ann:
                    extra[k] = ann[k]
        image_path = None
        if root is not None:
            image_path = root / f"COCO_{subtype}_{_image_number(image_id, where):012d}.jpg"
        records.append(VQARecord(
            qid=qid, question=question, dataset=dataset, split=split, answers=answers,
            answer_scores=scores, answer_concepts=_answer_concepts(scores),
            image_path=image_path, image_id=str(image_id), extra=extra,
        ))
    return records


def load_lxmert(
    path: Source,
    images_root: str | os.PathLike | None = None,
    *,
    dataset: str = "okvqa",
    split: str | None = None,
) -> list[VQARecord]:
    """Read an LXMERT-format file: ``[{"question_id", "sent", "img_id", "label": {answer: score}}]``.

    A file without any ``label`` is read as unlabelled (test); when one record has a
    label, every record needs one.

    Args:
        path: the JSON file (path or file object).
        images_root: folder holding ``<img_id>.jpg``.
        dataset: dataset name for the records.
        split: split name; default: taken from the ``img_id`` (``COCO_val2014_...`` ->
            ``"val2014"``), else ``"unknown"``.

    Returns:
        Records in file order; ``answers`` the labelled answers, best score first;
        ``answer_scores`` the label table.

    Raises:
        ValueError: malformed JSON, a record missing a field, or a score outside [0, 1].

    Logs a warning for repeated question ids (naming them and their records).
    """
    name, data = _read_json(path)
    if not isinstance(data, list):
        raise ValueError(f"{name}: expected a JSON list of records, found {type(data).__name__}")
    root = Path(images_root) if images_root is not None else None
    # labelled when any record has a label (then every record needs one: a first record
    # without it is an error, not a reason to drop every label)
    labelled = any(isinstance(r, Mapping) and "label" in r for r in data)
    records = []
    first_pos: dict[str, int] = {}
    duplicates: list[str] = []
    for i, rec in enumerate(data):
        qid = str(_field(rec, "question_id", f"{name}: record {i}", (int, str)))
        where = f"{name}: record {qid!r}"
        if qid in first_pos:
            duplicates.append(f"{qid!r} (records {first_pos[qid]} and {i})")
        else:
            first_pos[qid] = i
        question = _field(rec, "sent", where)
        img_id = _field(rec, "img_id", where, (str, int))
        scores: dict[str, float] = {}
        if labelled:
            label = _field(rec, "label", where, dict)
            for answer, score in label.items():
                if not isinstance(score, (int, float)) or isinstance(score, bool) or not 0 <= score <= 1:
                    raise ValueError(f"{where}: field 'label': expected a score in [0, 1] for {answer!r}, "
                                     f"found {score!r}")
                scores[answer] = float(score)
        rec_split = split
        if rec_split is None:
            m = re.match(r"COCO_([a-z]+\d*)_\d+$", str(img_id))
            rec_split = m.group(1) if m else "unknown"
        answers = tuple(sorted(scores, key=lambda a: -scores[a]))
        records.append(VQARecord(
            qid=qid, question=question, dataset=dataset, split=rec_split, answers=answers,
            answer_scores=scores, answer_concepts=_answer_concepts(scores),
            image_path=(root / f"{img_id}.jpg") if root is not None else None, image_id=str(img_id),
            extra={"class": rec["class"]} if "class" in rec else {},
        ))
    _warn_duplicates(name, duplicates)
    return records


# --------------------------------------------------------------------------- A-OKVQA

AOKVQA_DIRECT_ANSWERS = 10  # direct answers per record in the official files


def load_aokvqa(path: Source, images_root: str | os.PathLike | None = None) -> list[VQARecord]:
    """Read an A-OKVQA file (``aokvqa_v1p0_<split>.json``).

    Args:
        path: the JSON list (path or file object).
        images_root: folder holding the COCO 2017 images ``<image_id:012d>.jpg``.

    Returns:
        Records in file order: ``choices`` and ``correct_choice`` (multiple choice),
        ``answers`` the 10 direct answers, ``answer_scores`` their VQA accuracies,
        ``answer_concepts`` the correct choice then the direct answers by score,
        ``rationales``; ``extra["difficult_direct_answer"]``. Records of the ``test``
        split may lack the answer fields.

    Raises:
        ValueError: malformed JSON, a record missing a field, a correct choice
            index out of range, or (with ``images_root``) an ``image_id`` that is not a
            number (naming the file and record).

    Logs a warning for repeated question ids and for records whose ``direct_answers``
    are not the 10 of the official files (naming the records and their counts).
    """
    name, data = _read_json(path)
    if not isinstance(data, list):
        raise ValueError(f"{name}: expected a JSON list of records, found {type(data).__name__}")
    root = Path(images_root) if images_root is not None else None
    records = []
    first_pos: dict[str, int] = {}
    duplicates: list[str] = []
    odd_answers: list[str] = []  # records without the official 10 direct answers
    for i, rec in enumerate(data):
        qid = str(_field(rec, "question_id", f"{name}: record {i}", (str, int)))
        where = f"{name}: record {qid!r}"
        if qid in first_pos:
            duplicates.append(f"{qid!r} (records {first_pos[qid]} and {i})")
        else:
            first_pos[qid] = i
        question = _field(rec, "question", where)
        split = _field(rec, "split", where)
        image_id = _field(rec, "image_id", where, (int, str))
        choices = _str_list(_field(rec, "choices", where, list), "choices", where)
        unlabelled = split == "test"
        correct = None
        answers: tuple[str, ...] = ()
        rationales: tuple[str, ...] = ()
        if not unlabelled or "correct_choice_idx" in rec:
            correct = _field(rec, "correct_choice_idx", where, int)
            if not 0 <= correct < len(choices):
                raise ValueError(f"{where}: field 'correct_choice_idx': expected 0..{len(choices) - 1}, "
                                 f"found {correct}")
        if not unlabelled or "direct_answers" in rec:
            answers = _str_list(_field(rec, "direct_answers", where, list), "direct_answers", where)
            if not answers:
                raise ValueError(f"{where}: field 'direct_answers': expected answers, found an empty list")
            if len(answers) != AOKVQA_DIRECT_ANSWERS:
                odd_answers.append(f"{qid!r} ({len(answers)})")
        if not unlabelled or "rationales" in rec:
            rationales = _str_list(_field(rec, "rationales", where, list), "rationales", where)
        scores = vqa_answer_scores(answers) if answers else {}
        first = (normalize_answer(choices[correct]),) if correct is not None else ()
        extra = {k: rec[k] for k in ("difficult_direct_answer",) if k in rec}
        records.append(VQARecord(
            qid=qid, question=question, dataset="aokvqa", split=split, answers=answers,
            answer_scores=scores, answer_concepts=_answer_concepts(scores, first),
            choices=choices, correct_choice=correct,
            image_path=(root / f"{_image_number(image_id, where):012d}.jpg") if root is not None else None,
            image_id=str(image_id), rationales=rationales, extra=extra,
        ))
    _warn_duplicates(name, duplicates)
    if odd_answers:
        logger.warning("%s: %d record%s without the %d direct answers of the official files (their count "
                       "in parentheses; VQA scores are over the answers given): %s%s", name, len(odd_answers),
                       "s" * (len(odd_answers) > 1), AOKVQA_DIRECT_ANSWERS, ", ".join(odd_answers[:5]),
                       ", ..." if len(odd_answers) > 5 else "")
    return records


# --------------------------------------------------------------------------- CommonsenseQA

def load_csqa(path: Source, *, split: str | None = None) -> list[VQARecord]:
    """Read CommonsenseQA JSON lines (official ``*_rand_split.jsonl`` format).

    Each line: ``{"id", "answerKey", "question": {"stem", "question_concept",
    "choices": [{"label": "A", "text": ...}, ...]}}``. Choices must be labelled
    ``A``, ``B``, ... in order. A file without any ``answerKey`` is read as unlabelled (the
    official test file); when one record has one, every record needs one.

    Args:
        path: the JSONL file (path or file object).
        split: split name; default: the word ``train``/``dev``/``valid``/``val``/``test``
            in the file name (``train.jsonl`` -> ``"train"``, ``dev_rand_split.jsonl`` ->
            ``"dev"``), else ``"unknown"``.

    Returns:
        Text-only records: ``choices``, ``correct_choice``, ``answers`` (the correct
        choice's text), ``question_concept`` and a ``"question"`` entity, both
        ConceptNet-style (``revolving door`` -> ``revolving_door``).

    Raises:
        ValueError: malformed JSON (naming file and line), a missing field, an empty
            stem or choice text, badly labelled choices or an ``answerKey`` that names no
            choice (naming file, line and record).

    Logs a warning for repeated question ids and for questions with fewer choices
    than most; a leading UTF-8 byte order mark is skipped.
    """
    if split is None:
        split = _split_from_name(_source_name(path))
    records = []
    labelled: bool | None = None
    first_line: dict[str, int] = {}  # question id -> its first line
    duplicates: list[str] = []
    name = _source_name(path)
    for name, lineno, rec in _iter_jsonl(path):
        qid = str(_field(rec, "id", f"{name}: line {lineno}", (str, int)))
        where = f"{name}: line {lineno}: record {qid!r}"
        if qid in first_line:
            duplicates.append(f"{qid!r} (lines {first_line[qid]} and {lineno})")
        else:
            first_line[qid] = lineno
        q = _field(rec, "question", where, dict)
        stem = _field(q, "stem", where)
        if not stem.strip():
            raise ValueError(f"{where}: field 'stem' is empty")
        concept_raw = _field(q, "question_concept", where)
        raw_choices = _field(q, "choices", where, list)
        texts, labels = [], []
        for j, c in enumerate(raw_choices):
            labels.append(_field(c, "label", f"{where}: choice {j}"))
            texts.append(_field(c, "text", f"{where}: choice {j}"))
            if not texts[-1].strip():
                raise ValueError(f"{where}: choice {labels[-1]!r}: field 'text' is empty")
        expected = [chr(ord("A") + j) for j in range(len(labels))]
        if not labels or labels != expected:
            raise ValueError(f"{where}: expected choices labelled {expected or ['A', '...']}, found {labels}")
        if labelled is None:
            labelled = "answerKey" in rec
            first_unlabelled = None if labelled else where
        elif not labelled and "answerKey" in rec:
            raise ValueError(f"{where}: has an 'answerKey' but {first_unlabelled} has none: expected every record "
                             f"labelled (train/dev) or none (test)")
        correct = None
        answers: tuple[str, ...] = ()
        if labelled:
            key = _field(rec, "answerKey", where)
            if key not in labels:
                raise ValueError(f"{where}: field 'answerKey': expected one of {labels}, found {key!r}")
            correct = labels.index(key)
            answers = (texts[correct],)
        concept = normalize_concept(concept_raw)
        records.append(VQARecord(
            qid=qid, question=stem, dataset="csqa", split=split, answers=answers,
            answer_scores={a: 1.0 for a in answers},
            answer_concepts=tuple(normalize_concept(a) for a in answers),
            choices=tuple(texts), correct_choice=correct,
            entities=(Entity(concept, 1.0, "question"),) if concept else (),
            question_concept=concept or None,
            extra={"question_concept_raw": concept_raw},
        ))
    _warn_duplicates(name, duplicates)
    counts: dict[int, int] = {}
    for r in records:
        counts[len(r.choices)] = counts.get(len(r.choices), 0) + 1
    if len(counts) > 1:
        most = max(counts, key=lambda k: (counts[k], k))
        fewer = [r.qid for r in records if len(r.choices) < most]
        if fewer:
            logger.warning("%s: %d question%s with fewer than the usual %d choices (first: %r)", name, len(fewer),
                           "s" * (len(fewer) > 1), most, fewer[0])
    return records
