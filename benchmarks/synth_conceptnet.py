#!/usr/bin/env python3
"""Deterministic generator of a synthetic ConceptNet 5.7 assertions dump.

The output has the exact layout of ``conceptnet-assertions-5.7.0.csv(.gz)``:
one assertion per line, five tab-separated columns::

    edge URI \\t relation URI \\t start URI \\t end URI \\t JSON info

for example::

    /a/[/r/AtLocation/,/c/en/wheat/,/c/en/field/]\\t/r/AtLocation\\t/c/en/wheat\\t/c/en/field\\t{"dataset": ...}

What is modelled (tuned on the official sample lines and on the published
shape of the 5.7 dump; the shares are approximate, not copied counts):

* ~50 relations with a skewed mix (RelatedTo, ExternalURL, Synonym, FormOf,
  IsA, DerivedFrom dominate; rare commonsense relations, the negated
  ``NotDesires``/``NotCapableOf``/``NotHasProperty``/``NotUsedFor`` and ten
  ``/r/dbpedia/*`` relations have a few lines each);
* about 10 % of the lines English-English (both ends ``/c/en/``); the rest is
  cross-lingual (``/c/fr/x`` -> ``/c/en/y``), other-language (~40 languages in
  Latin, Cyrillic, Greek, Arabic, Hebrew, Devanagari, Thai, Japanese, Chinese,
  Korean script, plus ``/c/mul/`` emoji) or ``ExternalURL`` links whose end is
  an ``http://`` URL (dbpedia, wikidata, opencyc, umbel);
* POS / sense suffixes (``/n``, ``/v/wikt/en_1``, ``/n/wn/food``,
  ``/n/wp/topic``) on roughly a third of the English concept occurrences;
* datasets, licences, sources, weights and ``surfaceText`` consistent with the
  dataset of each edge (wiktionary, wordnet, conceptnet/4 with OMCS votes,
  verbosity, dbpedia, opencyc, jmdict, cc_cedict, kyoto_yahoo, emoji), with
  the JSON keys in the dump's order: dataset, license, sources, [surfaceEnd,
  surfaceStart, surfaceText,] weight;
* a Zipf-like concept degree distribution (a few hub concepts with thousands
  of edges, most concepts with one to three) and a vocabulary that grows
  linearly with the number of lines (~0.4 English concepts per English-English
  edge, as in the real dump: ~1.1-1.5 M concepts for 3.4 M edges);
* lines grouped by relation and ordered by start concept, like the official
  dump (which is sorted by edge URI); this matters for the gzip ratio.

English terms are valid ConceptNet terms: lower case, ``[a-z]`` plus a few
accented letters and apostrophes in the hand-written hub words, words joined
by ``_``; no tab, newline, slash, quote or backslash.

Determinism: the output depends only on ``--lines``, ``--seed`` and the
compression level; the gzip header carries no file name and mtime 0, so the
same arguments give byte-identical files.

Usage::

    python benchmarks/synth_conceptnet.py --scale 0.01 --out /tmp/cn-1pct.csv.gz
    python benchmarks/synth_conceptnet.py --lines 100000 --out /tmp/cn.csv --seed 7

Library use: ``generate(path, lines, seed=0, level=6) -> dict`` (summary).
"""

from __future__ import annotations

import argparse
import math
import os
import queue
import struct
import sys
import threading
import time
import zlib
from dataclasses import dataclass, field

import numpy as np

FULL_DUMP_LINES = 34_074_917  # lines of conceptnet-assertions-5.7.0.csv
BLOCK = 65_536  # lines rendered per batch (fixed: part of the deterministic stream)

# ---------------------------------------------------------------------------
# Vocabulary
# ---------------------------------------------------------------------------

# Hand-written English hub words, roughly most connected first. They get the
# top popularity ranks, so the hubs of the synthetic graph are real words.
COMMON_EN = """
person slang plural something people water food man animal house woman child
thing place time book car money music city tree dog cat bird fish plant school
work game sport country language color body head hand eye computer chemistry
biology music_instrument mathematics physics medicine law religion government
war army ship boat train road river mountain sea sky sun moon star fire
earth air light sound word name story art paint picture table chair bed door
window room kitchen bathroom garden flower fruit apple orange banana bread meat
milk egg cheese coffee tea wine beer sugar salt rice vegetable potato tomato
horse cow pig sheep chicken mouse rabbit lion tiger bear snake insect bee
spider friend family mother father brother sister baby king queen doctor
teacher student police soldier farmer artist writer singer player worker
computing internet phone television radio newspaper letter paper pen pencil
knife gun clock watch key box bag bottle cup glass plate ball toy doll
shoe shirt hat coat dress clothes jewelry ring gold silver iron stone wood
metal plastic glass_bottle ice_cream living_room swimming_pool credit_card
go eat drink sleep run walk read write sing dance play swim fly drive think
learn teach buy sell give take make build break open close love hate laugh
cry talk listen see hear feel smell taste happy sad big small hot cold good
bad new old fast slow red blue green white black yellow long short high low
hard soft heavy light_weight beautiful ugly rich poor young strong weak
anatomy botany zoology geology astronomy nautical military cooking finance
business economics history geography philosophy psychology linguistics
grammar poetry theater film dance_music rock_'n'_roll café naïve jack-o'-lantern
""".split()

# Latin-script languages: (code, extra consonants, extra vowels)
_LATIN_EXTRA = {
    "en": ("", ""), "fr": ("ç", "éèêà"), "de": ("ß", "äöü"), "es": ("ñ", "áéíóú"),
    "it": ("", "àèò"), "pt": ("ç", "ãõáé"), "nl": ("", ""), "sv": ("", "åäö"),
    "fi": ("", "äö"), "pl": ("łżś", "ąę"), "hu": ("", "őűáé"), "cs": ("čřšž", "ěá"),
    "ca": ("ç", "àè"), "tr": ("şğç", "ıöü"), "la": ("", ""), "ms": ("", ""),
    "eo": ("ĉŝ", ""), "ro": ("șț", "ă"), "da": ("", "æøå"), "is": ("þð", "á"),
    "ga": ("", "áí"), "gl": ("ñ", "á"), "vi": ("đ", "ươạế"), "sh": ("čćšžđ", ""),
    "ang": ("þð", "æ"), "fro": ("", "é"), "id": ("", ""), "nb": ("", "æøå"),
    "si": ("", ""), "sq": ("ç", "ë"),
}
_SCRIPT_OF = {code: "latin" for code in _LATIN_EXTRA}
_SCRIPT_OF.update({"ru": "cyrillic", "uk": "cyrillic", "bg": "cyrillic", "el": "greek",
                   "grc": "greek", "ar": "arabic", "fa": "arabic", "he": "hebrew",
                   "hi": "devanagari", "th": "thai", "ja": "japanese", "zh": "han",
                   "ko": "hangul", "mul": "emoji"})
_SCRIPT_OF["si"] = "sinhala"

# Share of each non-English language among the non-English concept occurrences.
NONEN_LANGS = {
    "fr": 14, "de": 8, "ja": 7, "it": 6, "es": 6, "ru": 6, "zh": 5, "fi": 5,
    "pt": 4, "nl": 4, "la": 3, "pl": 3, "sv": 3, "ms": 1.5, "hu": 1.5, "cs": 1.5,
    "ca": 1.5, "ar": 1.5, "tr": 1, "ko": 1, "da": 1, "eo": 1, "ro": 1, "el": 1,
    "uk": 0.8, "is": 0.7, "he": 0.7, "fa": 0.7, "hi": 0.7, "vi": 0.7, "sh": 0.7,
    "gl": 0.5, "ga": 0.5, "th": 0.5, "bg": 0.5, "grc": 0.5, "id": 0.5, "nb": 0.5,
    "ang": 0.3, "fro": 0.2, "sq": 0.2, "si": 0.2,
}
# Languages that English etymologies point to.
ETYM_LANGS = {"la": 6, "grc": 3, "fro": 2, "ang": 2, "fr": 2, "de": 1, "nl": 0.5, "it": 0.5, "es": 0.5}
# Languages of the non-English commonsense (conceptnet/4, kyoto_yahoo) edges.
CS_LANGS = {"zh": 5, "ja": 4, "pt": 1, "fr": 0.5, "ko": 0.3, "nl": 0.2, "it": 0.2}
# Start languages of ExternalURL edges ("en" included).
EXT_LANGS = dict(NONEN_LANGS, en=12)


def _syllable_table(script: str, lang: str) -> list[list[str]]:
    """Token tables for pseudo-words; words are fixed-width token sequences, so
    distinct indices give distinct strings."""
    if script == "latin":
        xc, xv = _LATIN_EXTRA[lang]
        cons = "bcdfghjklmnprstvz" + xc
        vows = "aeiou" + xv
        return [[c + v for c in cons for v in vows]]
    if script == "cyrillic":
        return [[c + v for c in "бвгджзклмнпрстфхцчш" for v in "аеиоуыэюя"]]
    if script == "greek":
        return [[c + v for c in "βγδζθκλμνξπρστφχ" for v in "αεηιουωάέίό"]]
    if script == "arabic":
        base = "ابتثجحخدذرزسشصضطظعغفقكلمنهوي" + ("پچگژ" if lang == "fa" else "")
        return [list(base)]
    if script == "hebrew":
        return [[chr(c) for c in range(0x05D0, 0x05EB)]]
    if script == "devanagari":
        cons = [chr(c) for c in range(0x0915, 0x0939)]
        signs = ["\u093e", "\u093f", "\u0940", "\u0941", "\u0942", "\u0947", "\u094b"]
        return [[c + s for c in cons for s in signs]]
    if script == "thai":
        return [[chr(c) for c in range(0x0E01, 0x0E2F)]]
    if script == "sinhala":
        return [[chr(c) for c in range(0x0D9A, 0x0DC7) if c not in (0x0DB2, 0x0DBC, 0x0DBE, 0x0DBF)]]
    if script == "japanese":  # two disjoint sub-vocabularies: katakana words, kanji compounds
        kata = [chr(c) for c in range(0x30A2, 0x30F3) if c not in (0x30A3, 0x30A5, 0x30A7, 0x30A9)]
        kanji = [chr(0x4E00 + (i * 37) % 20000) for i in range(1500)]
        return [kata, list(dict.fromkeys(kanji))]
    if script == "han":
        return [list(dict.fromkeys(chr(0x4E00 + (i * 53) % 20900) for i in range(2500)))]
    if script == "hangul":
        return [[chr(0xAC00 + i * 5) for i in range(2000)]]
    if script == "emoji":
        cps = list(range(0x1F300, 0x1F5FF)) + list(range(0x1F600, 0x1F64F)) + \
            list(range(0x1F680, 0x1F6C5)) + list(range(0x2600, 0x26FF))
        return [[chr(c) for c in cps]]
    raise ValueError(script)


_SPREAD = 1_000_003  # prime > any table size: i -> i*P mod s**L is a bijection


def _word(i: int, table: list[str], min_len: int) -> str:
    s = len(table)
    length, cap = min_len, s ** min_len
    while i >= cap:
        i -= cap
        length += 1
        cap = s ** length
    i = (i * _SPREAD) % cap  # scatter consecutive indices over the whole block
    out = []
    for _ in range(length):
        i, r = divmod(i, s)
        out.append(table[r])
    return "".join(out)


def _make_names(lang: str, n: int) -> list[str]:
    """``n`` distinct concept terms of language ``lang`` (popularity order not implied)."""
    script = _SCRIPT_OF[lang]
    tables = _syllable_table(script, lang)
    words: list[str] = []
    seen: set[str] = set()
    if lang == "en":
        for w in COMMON_EN:
            if w not in seen:
                seen.add(w)
                words.append(w)
    min_len = {"latin": 3, "cyrillic": 2, "greek": 2, "devanagari": 2, "arabic": 3, "hebrew": 3,
               "thai": 3, "sinhala": 3, "han": 2, "hangul": 2, "emoji": 1}.get(script, 2)
    phrase_share = 0.4 if lang == "en" else (0.3 if script in ("latin", "cyrillic", "greek") else 0.0)
    k_phrase = 3000  # phrases are made of the first k_phrase single words
    single = phrase = 0
    i = 0
    while len(words) < n:
        if script == "japanese":
            t = tables[i & 1]
            w = _word(i >> 1, t, 2)
        elif (i % 10) < phrase_share * 10 and single > k_phrase:
            a, q = phrase % k_phrase, phrase // k_phrase
            b = (q + 7919 * a) % k_phrase  # (a, q) -> (a, b) is a bijection
            phrase += 1
            w = _word(a, tables[0], min_len) + "_" + _word(b, tables[0], min_len)
        else:
            w = _word(single, tables[0], min_len)
            single += 1
        i += 1
        if w not in seen:
            seen.add(w)
            words.append(w)
    return words


class Pool:
    """Concepts of one language: names sorted like the dump, popularity -> rank."""

    def __init__(self, lang: str, size: int, seed: int, zipf_s: float = 1.0, zipf_q: float = 5.0):
        self.lang = lang
        names = _make_names(lang, size)
        self.size = size
        rng = np.random.default_rng([seed, 0x5EED, sum(map(ord, lang)), len(lang)])
        perm = rng.permutation(size)
        if lang == "en":  # hub words keep the top popularity ranks
            n_common = min(len(set(COMMON_EN)), size)
            rest = perm[perm >= n_common]
            perm = np.concatenate([np.arange(n_common), rest])
        order = sorted(range(size), key=names.__getitem__)
        rank_of_name = np.empty(size, dtype=np.int64)
        rank_of_name[np.asarray(order, dtype=np.int64)] = np.arange(size)
        self.pop2rank = rank_of_name[perm]  # popularity index -> rank in sorted names
        self.names = [names[o] for o in order]  # sorted
        w = 1.0 / np.power(np.arange(size, dtype=np.float64) + zipf_q, zipf_s)
        self.cdf = np.cumsum(w)
        self.cdf /= self.cdf[-1]

    def sample(self, rng: np.random.Generator, n: int, uniform_frac: float) -> np.ndarray:
        """Ranks of ``n`` concepts: a uniform / Zipf mixture over popularity."""
        u = rng.random(n)
        z = np.minimum(np.searchsorted(self.cdf, rng.random(n)), self.size - 1)
        uni = rng.integers(0, self.size, n)
        pop = np.where(u < uniform_frac, uni, z)
        return self.pop2rank[pop]


# ---------------------------------------------------------------------------
# Datasets, sources, suffixes
# ---------------------------------------------------------------------------

WN_LEX_N = ("act animal artifact attribute body cognition communication event feeling food group "
            "location motive object person phenomenon plant possession process quantity relation "
            "shape state substance time").split()
WN_LEX_V = ("body change cognition communication competition consumption contact creation emotion "
            "motion perception possession social stative weather").split()
WP_TOPICS = ("assessment film band album song novel company river city village football_club "
             "mythology computing software magazine surname given_name company organization").split()
OMCS_ACTIVITIES = ["/s/activity/omcs/omcs1_possibly_free_text"] * 4 + [
    "/s/activity/omcs/template", "/s/activity/omcs/commons2_template",
    "/s/activity/omcs/csamoa4_self_rating", "/s/activity/omcs/verbosity"]
OMCS_WEIGHTS = ["1.0", "2.0", "2.828", "3.464", "4.0", "4.472"]


def _mix(p: float, items: list[str], n: int = 60) -> list[str]:
    """A choice list of length ``n`` with a share ``p`` of (cycled) ``items`` and the rest ''."""
    k = round(p * n)
    return [items[i % len(items)] for i in range(k)] + [""] * (n - k)


def _wikt(dl: str) -> list[str]:
    return [f"/n/wikt/{dl}_1", f"/n/wikt/{dl}_1", f"/v/wikt/{dl}_1", f"/n/wikt/{dl}_2",
            f"/a/wikt/{dl}_1", "/n", "/n", "/v", "/a"]


POS = ["/n", "/n", "/n", "/v", "/v", "/a", "/r"]
WN_N = [f"/n/wn/{x}" for x in WN_LEX_N] + ["/n/wn"]
WN_V = [f"/v/wn/{x}" for x in WN_LEX_V]
WN_ALL = WN_N * 2 + WN_V + ["/a/wn/all", "/r/wn/all"]
WP = [f"/n/wp/{x}" for x in WP_TOPICS]
VERB_WEIGHTS = [repr(round(0.1 + 0.001 * i, 3)) for i in range(900)] + ["1.0"] * 100


@dataclass
class Prof:
    """How one kind of edge is written (dataset, sources, weight, suffixes, surface text)."""

    dataset: str
    license: str
    sources: list[str]
    weights: list[str] = field(default_factory=lambda: ["1.0"])
    ssuf: list[str] = field(default_factory=lambda: [""])
    esuf: list[str] = field(default_factory=lambda: [""])
    surface: list[str] | None = None
    article: bool = False  # OMCS surface texts often say "a wheat", "an apple"
    omcs: str | None = None  # "en" / "zh" / "ja" / "pt" / "x": generated multi-contributor sources
    only: frozenset | None = None  # start languages this dataset has

    def __post_init__(self):
        self.head = f'{{"dataset": "{self.dataset}", "license": "{self.license}", "sources": ['


BY, BYSA = "cc:by/4.0", "cc:by-sa/4.0"
_WIKT_SRC = '{{"contributor": "/s/resource/wiktionary/{0}", "process": "/s/process/wikiparsec/2"}}'


def WIKT(dl="en", ssuf=None, esuf=None, weights=None, only=None):
    return Prof(f"/d/wiktionary/{dl}", BYSA, [_WIKT_SRC.format(dl)], weights or ["1.0"],
                ssuf if ssuf is not None else _mix(0.35, _wikt(dl)),
                esuf if esuf is not None else _mix(0.25, _wikt(dl)), only=only)


def WN(tmpl, ssuf=None, esuf=None):
    return Prof("/d/wordnet/3.1", BY, ['{"contributor": "/s/resource/wordnet/rdf/3.1"}'], ["2.0"],
                ssuf or WN_ALL, esuf or WN_ALL, surface=[tmpl])


def DBP(weights=("0.5",), ssuf=None, esuf=None):
    return Prof("/d/dbpedia/en", BYSA, ['{"contributor": "/s/resource/dbpedia/2015/en"}'], list(weights),
                ssuf if ssuf is not None else _mix(0.3, WP), esuf if esuf is not None else _mix(0.3, WP))


OCYC = Prof("/d/opencyc", BY, ['{"contributor": "/s/resource/opencyc/2012"}'], ["1.0"], ["/n"], ["/n"])
VERB = Prof("/d/verbosity", BY, [
    '{"contributor": "/s/resource/verbosity"}',
    '{"contributor": "/s/resource/verbosity", "process": "/s/process/split_words"}, '
    '{"contributor": "/s/resource/verbosity"}',
    '{"contributor": "/s/resource/verbosity", "process": "/s/process/split_words"}'],
    VERB_WEIGHTS, surface=["[[{s}]] is related to [[{e}]]"])
JMDICT = Prof("/d/jmdict", BYSA, ['{"contributor": "/s/resource/jmdict/1.07"}'], ["2.0", "1.0"],
              _mix(0.5, POS), [""], only=frozenset({"ja"}))
CEDICT = Prof("/d/cc_cedict", BYSA, ['{"contributor": "/s/resource/cc_cedict/2017-10"}'], ["1.0"],
              only=frozenset({"zh"}))
EMOJI = Prof("/d/emoji", BY, ['{"contributor": "/s/resource/unicode/cldr/32.0.1"}'], ["1.0"])
KYOTO = Prof("/d/kyoto_yahoo", BY, ['{"activity": "/s/activity/kyoto_yahoo"}'],
             ["1.0", "1.0", "0.5", "2.0"], only=frozenset({"ja"}))

# OMCS surface templates per relation ({s}, {e} are the surface forms)
OMCS_TEMPLATES = {
    "AtLocation": ["You are likely to find [[{s}]] in [[{e}]]", "*Something you find on [[{e}]] is [[{s}]]",
                   "Somewhere [[{s}]] can be is [[{e}]]", "*Something you find at [[{e}]] is [[{s}]]"],
    "UsedFor": ["[[{s}]] is used for [[{e}]]", "You can use [[{s}]] to [[{e}]]", "[[{s}]] is for [[{e}]]"],
    "CapableOf": ["[[{s}]] can [[{e}]]", "An activity [[{s}]] can do is [[{e}]]"],
    "HasSubevent": ["Something that might happen while [[{s}]] is [[{e}]]",
                    "Something you might do while [[{s}]] is [[{e}]]"],
    "HasPrerequisite": ["If you want to [[{s}]] then you should [[{e}]]", "[[{s}]] requires [[{e}]]"],
    "Causes": ["Sometimes [[{s}]] causes [[{e}]]", "The effect of [[{s}]] is [[{e}]]"],
    "MotivatedByGoal": ["You would [[{s}]] because you want to [[{e}]]", "You would [[{s}]] because [[{e}]]"],
    "HasProperty": ["[[{s}]] is [[{e}]]", "[[{s}]] can be [[{e}]]"],
    "PartOf": ["[[{s}]] is part of [[{e}]]"],
    "HasA": ["[[{s}]] has [[{e}]]", "[[{s}]] contains [[{e}]]"],
    "ReceivesAction": ["[[{s}]] can be [[{e}]]"],
    "CausesDesire": ["[[{s}]] would make you want to [[{e}]]"],
    "Desires": ["[[{s}]] wants [[{e}]]", "[[{s}]] likes [[{e}]]"],
    "HasFirstSubevent": ["The first thing you do when you [[{s}]] is [[{e}]]"],
    "HasLastSubevent": ["The last thing you do when you [[{s}]] is [[{e}]]"],
    "DefinedAs": ["[[{s}]] is [[{e}]]", "[[{s}]] is the [[{e}]]"],
    "MadeOf": ["[[{s}]] is made of [[{e}]]"],
    "CreatedBy": ["[[{s}]] is created by [[{e}]]"],
    "LocatedNear": ["[[{s}]] is typically near [[{e}]]"],
    "ObstructedBy": ["[[{s}]] can be prevented by [[{e}]]"],
    "NotDesires": ["[[{s}]] does not want [[{e}]]", "[[{s}]] doesn't want [[{e}]]"],
    "NotCapableOf": ["[[{s}]] can not [[{e}]]", "[[{s}]] cannot [[{e}]]"],
    "NotHasProperty": ["[[{s}]] is not [[{e}]]"],
    "NotUsedFor": ["[[{s}]] is not used for [[{e}]]"],
    "IsA": ["[[{s}]] is a kind of [[{e}]]", "[[{s}]] is a type of [[{e}]]", "[[{s}]] is a [[{e}]]"],
    "RelatedTo": ["[[{s}]] is related to [[{e}]]"],
    "Antonym": ["[[{s}]] is the opposite of [[{e}]]"],
}


def OMCS(rel: str) -> Prof:
    return Prof("/d/conceptnet/4/en", BY, [], surface=OMCS_TEMPLATES[rel], article=True, omcs="en")


CN4_ZH = Prof("/d/conceptnet/4/zh", BY, [], surface=["*[[{e}]] 的時候可能會用到 [[{s}]]。", "[[{s}]] 會讓你想要 [[{e}]]"],
              omcs="zh", only=frozenset({"zh"}))
CN4_JA = Prof("/d/conceptnet/4/ja", BY, [], surface=["[[{s}]]から[[{e}]]を連想することがある．", "[[{s}]]は[[{e}]]に使う．"],
              omcs="ja", only=frozenset({"ja"}))
CN4_PT = Prof("/d/conceptnet/4/pt", BY, [], surface=["[[{s}]] pode [[{e}]]", "Uma coisa que [[{s}]] faz é [[{e}]]"],
              omcs="pt", only=frozenset({"pt"}))
CN4_X = Prof("/d/conceptnet/4/{L}", BY, [], surface=["[[{s}]] / [[{e}]]"], omcs="x",
             only=frozenset({"fr", "ko", "nl", "it"}))


# ---------------------------------------------------------------------------
# Relations: share of the dump (per mille), split by language category, profiles
# ---------------------------------------------------------------------------
# Categories: "ee" English-English, "ex" English start / other end, "xe" other
# start / English end, "xx" other-other, "url" ExternalURL (end is a URL).
CATS = ("ee", "ex", "xe", "xx", "url")

COMMONSENSE = ["UsedFor", "AtLocation", "CapableOf", "HasSubevent", "HasPrerequisite", "Causes",
               "MotivatedByGoal", "HasProperty", "HasA", "ReceivesAction", "CausesDesire", "Desires",
               "HasFirstSubevent", "HasLastSubevent", "DefinedAs", "MadeOf", "CreatedBy", "LocatedNear",
               "ObstructedBy", "NotDesires", "NotCapableOf", "NotHasProperty", "NotUsedFor"]
_CS_SHARE = {"UsedFor": 2.5, "AtLocation": 1.5, "CapableOf": 1.5, "HasSubevent": 1.5, "HasPrerequisite": 1.2,
             "Causes": 1.1, "MotivatedByGoal": 0.6, "HasProperty": 0.9, "HasA": 0.9, "ReceivesAction": 0.3,
             "CausesDesire": 0.25, "Desires": 0.2, "HasFirstSubevent": 0.15, "HasLastSubevent": 0.1,
             "DefinedAs": 0.1, "MadeOf": 0.05, "CreatedBy": 0.015, "LocatedNear": 0.01, "ObstructedBy": 0.01,
             "NotDesires": 0.1, "NotCapableOf": 0.02, "NotHasProperty": 0.02, "NotUsedFor": 0.01}
_CS_EE = {"UsedFor": .6, "AtLocation": .7, "CapableOf": .5, "HasSubevent": .6, "HasPrerequisite": .7,
          "Causes": .6, "MotivatedByGoal": .6, "HasProperty": .6, "HasA": .6, "ReceivesAction": .7,
          "CausesDesire": .7, "Desires": .5, "NotDesires": .8}


@dataclass
class Rel:
    name: str
    share: float  # per mille of all lines
    cats: dict  # category -> fraction of this relation's lines
    profiles: dict  # category -> list of (weight, Prof)
    xlangs: dict | None = None  # languages of non-English starts (default NONEN_LANGS)
    elangs: dict | None = None  # languages of non-English ends of "ex" edges
    same_lang: float = 1.0  # "xx": probability that the end has the start's language


def _relations() -> list[Rel]:
    R = []
    wikt3 = [(6, WIKT("en")), (3, WIKT("fr")), (1, WIKT("de"))]
    R.append(Rel("RelatedTo", 200, {"ee": .20, "ex": .15, "xe": .15, "xx": .50}, {
        "ee": [(50, WIKT("en")), (25, VERB), (5, DBP()), (20, OMCS("RelatedTo"))],
        "ex": wikt3, "xe": wikt3 + [(1, DBP())],
        "xx": wikt3 + [(1, CN4_JA), (1, CN4_ZH)]}, same_lang=0.8))
    R.append(Rel("ExternalURL", 260, {"url": 1.0}, {}, xlangs=EXT_LANGS))
    R.append(Rel("Synonym", 130, {"ee": .05, "ex": .25, "xe": .35, "xx": .35}, {
        "ee": [(4, WN("[[{s}]] is a synonym of [[{e}]]")), (4, WIKT("en")), (1, DBP())],
        "ex": [(6, WIKT("en")), (2, WIKT("fr")), (1, WIKT("de"))],
        "xe": [(3, WN("[[{s}]] is a translation of [[{e}]]")), (4, WIKT("en")), (1, WIKT("fr")),
               (2, DBP()), (1, JMDICT), (1, CEDICT)],
        "xx": [(5, WIKT("fr")), (3, WIKT("en")), (1, WIKT("de")), (1, JMDICT), (1, CEDICT)]}, same_lang=0.5))
    R.append(Rel("FormOf", 110, {"ee": .10, "xx": .90}, {
        "ee": [(1, WIKT("en", ssuf=[""], esuf=_mix(0.4, POS)))],
        "xx": [(5, WIKT("en", ssuf=[""], esuf=_mix(0.5, POS))), (3, WIKT("fr", [""])), (2, WIKT("de", [""]))]}))
    R.append(Rel("IsA", 70, {"ee": .10, "ex": .01, "xe": .01, "xx": .88}, {
        "ee": [(35, WN("[[{s}]] is a type of [[{e}]]")), (25, OMCS("IsA")), (15, OCYC), (15, DBP()),
               (10, WIKT("en"))],
        "ex": [(1, WIKT("en"))], "xe": [(1, WIKT("en")), (1, DBP())],
        "xx": [(3, KYOTO), (4, WIKT("fr")), (2, WIKT("en")), (1, CN4_ZH), (1, CN4_JA)]}, same_lang=0.97))
    R.append(Rel("DerivedFrom", 60, {"ee": .15, "ex": .025, "xe": .025, "xx": .80}, {
        "ee": [(1, WIKT("en", ssuf=[""], esuf=_mix(0.5, _wikt("en"))))],
        "ex": [(1, WIKT("en"))], "xe": [(1, WIKT("en"))],
        "xx": [(5, WIKT("en", [""])), (3, WIKT("fr", [""])), (2, WIKT("de", [""]))]}, same_lang=0.9))
    R.append(Rel("EtymologicallyRelatedTo", 30, {"ee": .03, "ex": .2, "xe": .3, "xx": .47}, {
        c: [(1, WIKT("en", weights=["0.25"]))] for c in ("ee", "ex", "xe", "xx")},
        elangs=ETYM_LANGS, same_lang=0.3))
    R.append(Rel("HasContext", 35, {"ee": .20, "xe": .45, "xx": .35}, {
        "ee": [(1, WIKT("en", ssuf=_mix(0.6, _wikt("en")), esuf=[""]))],
        "xe": [(3, WIKT("en", esuf=[""])), (2, WIKT("fr", esuf=[""])), (1, JMDICT)],
        "xx": [(1, WIKT("fr", esuf=[""])), (1, WIKT("de", esuf=[""]))]}, same_lang=0.3))
    R.append(Rel("Antonym", 12, {"ee": .25, "xx": .75}, {
        "ee": [(5, WIKT("en")), (3, WN("[[{s}]] is the opposite of [[{e}]]")), (2, OMCS("Antonym"))],
        "xx": [(2, WIKT("en")), (2, WIKT("fr")), (1, WIKT("de"))]}, same_lang=0.95))
    R.append(Rel("SimilarTo", 3, {"ee": .9, "xx": .1}, {
        "ee": [(1, WN("[[{s}]] is similar to [[{e}]]", ["/a/wn/all"], ["/a/wn/all"]))],
        "xx": [(1, WIKT("fr"))]}))
    R.append(Rel("DistinctFrom", 1, {"ee": .6, "xx": .4}, {
        "ee": [(1, WIKT("en"))], "xx": [(1, WIKT("fr")), (1, WIKT("de"))]}))
    R.append(Rel("PartOf", 1.0, {"ee": .5, "xx": .5}, {
        "ee": [(6, WN("[[{s}]] is part of [[{e}]]", WN_N, WN_N)), (4, OMCS("PartOf"))],
        "xx": [(1, WIKT("fr"))]}))
    R.append(Rel("MannerOf", 0.4, {"ee": 1.0}, {
        "ee": [(1, WN("[[{s}]] is a way of [[{e}]]", WN_V, WN_V)), (1, WIKT("en"))]}))
    R.append(Rel("InstanceOf", 0.05, {"ee": 1.0}, {"ee": [(1, DBP(["1.0"]))]}))
    R.append(Rel("Entails", 0.02, {"ee": 1.0}, {"ee": [(1, WN("[[{s}]] entails [[{e}]]", WN_V, WN_V))]}))
    R.append(Rel("SymbolOf", 0.05, {"xe": 1.0}, {"xe": [(1, EMOJI)]}, xlangs={"mul": 1}))
    R.append(Rel("EtymologicallyDerivedFrom", 0.01, {"ex": 1.0}, {"ex": [(1, WIKT("en", weights=["0.25"]))]},
                 elangs=ETYM_LANGS))
    cs_xx = [(3, CN4_ZH), (2, CN4_JA), (2, KYOTO), (1, CN4_PT), (1, CN4_X)]
    for rel in COMMONSENSE:
        ee = _CS_EE.get(rel, 1.0 if rel not in ("NotDesires",) else .8)
        cats = {"ee": ee} if ee >= 1.0 else {"ee": ee, "xx": 1.0 - ee}
        ee_prof = [(1, OMCS(rel))]
        R.append(Rel(rel, _CS_SHARE[rel], cats, {"ee": ee_prof, "xx": cs_xx}, xlangs=CS_LANGS))
    for rel, share in (("genre", 0.12), ("influencedBy", 0.04), ("knownFor", 0.02), ("occupation", 0.04),
                       ("language", 0.03), ("field", 0.02), ("product", 0.02), ("capital", 0.015),
                       ("leader", 0.005), ("genus", 0.09)):
        R.append(Rel(f"dbpedia/{rel}", share, {"ee": 1.0},
                     {"ee": [(1, DBP(["0.5"], ssuf=_mix(0.2, WP), esuf=_mix(0.1, WP)))]}))
    R.sort(key=lambda r: f"/a/[/r/{r.name}/,")  # the dump's order
    return R


def allocate(n: int, rels: list[Rel]) -> list[list[tuple[str, int]]]:
    """Exact line counts per (relation, category), summing to ``n`` (largest remainder)."""
    cells = [(ri, c, r.share * f) for ri, r in enumerate(rels) for c, f in r.cats.items()]
    tot = sum(w for _, _, w in cells)
    raw = [n * w / tot for _, _, w in cells]
    cnt = [int(x) for x in raw]
    rem = n - sum(cnt)
    for j in sorted(range(len(cells)), key=lambda j: (-(raw[j] - cnt[j]), j))[:rem]:
        cnt[j] += 1
    out: list[list[tuple[str, int]]] = [[] for _ in rels]
    for (ri, c, _), k in zip(cells, cnt):
        if k:
            out[ri].append((c, k))
    return out


# ---------------------------------------------------------------------------
# Deterministic gzip writer (compression in a background thread)
# ---------------------------------------------------------------------------

class _Writer:
    """Writes plain or gzip output; gzip header without name and with mtime 0."""

    def __init__(self, path: str, level: int = 6, gz: bool | None = None):
        self.gz = path.endswith(".gz") if gz is None else gz
        self.f = open(path, "wb")
        self.raw_bytes = 0
        self._crc = 0
        self._err: BaseException | None = None
        if self.gz:
            comp_mod = zlib
            self.backend = "zlib"
            if level <= 3:
                try:  # python-isal: several times faster at its levels 0-3
                    from isal import isal_zlib as comp_mod  # type: ignore
                    self.backend = "isal"
                except ImportError:
                    pass
            self._crc32 = comp_mod.crc32
            self._comp = comp_mod.compressobj(level, zlib.DEFLATED, -15)
            xfl = 2 if level >= 9 else (4 if level == 1 else 0)
            self.f.write(b"\x1f\x8b\x08\x00\x00\x00\x00\x00" + bytes([xfl, 255]))
        self._q: queue.Queue = queue.Queue(maxsize=4)
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()

    def _run(self):
        try:
            while True:
                data = self._q.get()
                if data is None:
                    break
                if self.gz:
                    self._crc = self._crc32(data, self._crc)
                    self.f.write(self._comp.compress(data))
                else:
                    self.f.write(data)
        except BaseException as e:  # pragma: no cover - surfaced in close()
            self._err = e
            while self._q.get() is not None:
                pass

    def write(self, data: bytes):
        self.raw_bytes += len(data)
        self._q.put(data)

    def close(self):
        self._q.put(None)
        self._t.join()
        if self._err:
            self.f.close()
            raise self._err
        if self.gz:
            self.f.write(self._comp.flush())
            self.f.write(struct.pack("<II", self._crc & 0xFFFFFFFF, self.raw_bytes & 0xFFFFFFFF))
        self.f.close()


# ---------------------------------------------------------------------------
# Generation
# ---------------------------------------------------------------------------

def _lang_weights(d: dict) -> tuple[list[str], np.ndarray]:
    langs = sorted(d)
    w = np.array([d[l] for l in langs], dtype=np.float64)
    return langs, w / w.sum()


def _surface(term: str, article: bool, r: int) -> str:
    s = term.replace("_", " ")
    if article and r % 3 == 0:
        s = ("an " if s[:1] in "aeiou" else "a ") + s
    return s


class _Generator:
    def __init__(self, lines: int, seed: int):
        self.lines = lines
        self.seed = seed
        self.rels = _relations()
        self.alloc = allocate(lines, self.rels)
        self.langs = sorted(set(NONEN_LANGS) | {"en", "mul"} | set(ETYM_LANGS) | set(CS_LANGS))
        self.lang_rank = {l: i for i, l in enumerate(self.langs)}
        self.dist_cache: dict[int, tuple[list[str], np.ndarray]] = {}
        # Expected concept occurrences per language -> pool sizes.
        occ = {l: 0.0 for l in self.langs}
        n_ee = 0
        for r, cells in zip(self.rels, self.alloc):
            xl = _lang_weights(r.xlangs or NONEN_LANGS)
            el = _lang_weights(r.elangs or NONEN_LANGS)
            for c, k in cells:
                if c == "ee":
                    n_ee += k
                    continue
                if c == "url":
                    for l, p in zip(*xl):
                        occ[l] += k * p
                    continue
                if c in ("ex",):
                    occ["en"] += k
                    for l, p in zip(*el):
                        occ[l] += k * p
                if c == "xe":
                    occ["en"] += k
                    for l, p in zip(*xl):
                        occ[l] += k * p
                if c == "xx":
                    for l, p in zip(*xl):
                        occ[l] += k * p * (1 + r.same_lang)
                    for l, p in zip(*_lang_weights(NONEN_LANGS)):
                        occ[l] += k * p * (1 - r.same_lang)
        self.n_ee = n_ee
        sizes = {l: max(64, int(0.3 * v)) for l, v in occ.items() if l != "en"}
        sizes["en"] = max(len(COMMON_EN) + 64, int(0.42 * n_ee))
        sizes["mul"] = min(sizes.get("mul", 64), 1500)
        self.sizes = sizes
        self.pools: dict[str, Pool] = {}

    def pool(self, lang: str) -> Pool:
        p = self.pools.get(lang)
        if p is None:
            p = self.pools[lang] = Pool(lang, self.sizes.get(lang, 64), self.seed)
        return p

    # -- sampling -----------------------------------------------------------
    def _sample_langs(self, rng, n: int, d: dict) -> np.ndarray:
        langs, p = _lang_weights(d)
        idx = rng.choice(len(langs), size=n, p=p)
        ranks = np.array([self.lang_rank[l] for l in langs], dtype=np.int64)
        return ranks[idx]

    def _sample_terms(self, rng, lang_ranks: np.ndarray, uniform_frac: float) -> np.ndarray:
        out = np.empty(len(lang_ranks), dtype=np.int64)
        for lr in np.unique(lang_ranks):
            m = lang_ranks == lr
            out[m] = self.pool(self.langs[lr]).sample(rng, int(m.sum()), uniform_frac)
        return out

    def _starts(self, ri: int, rel: Rel, cells) -> tuple[np.ndarray, np.ndarray]:
        rng = np.random.default_rng([self.seed, ri, 0xA11])
        keys, cats = [], []
        for c, k in cells:
            if c in ("ee", "ex"):
                lr = np.full(k, self.lang_rank["en"], dtype=np.int64)
            else:
                lr = self._sample_langs(rng, k, rel.xlangs or NONEN_LANGS)
            uf = 1.0 if c == "url" else 0.65
            t = self._sample_terms(rng, lr, uf)
            keys.append((lr << 32) | t)
            cats.append(np.full(k, CATS.index(c), dtype=np.int8))
        key = np.concatenate(keys)
        cat = np.concatenate(cats)
        order = np.argsort(key, kind="stable")
        return key[order], cat[order]

    def _ends(self, rng, rel: Rel, skey: np.ndarray, cat: np.ndarray) -> np.ndarray:
        n = len(skey)
        slang = skey >> 32
        elang = np.empty(n, dtype=np.int64)
        en = self.lang_rank["en"]
        is_url = cat == CATS.index("url")
        for ci, c in enumerate(CATS):
            m = cat == ci
            k = int(m.sum())
            if not k:
                continue
            if c in ("ee", "xe"):
                elang[m] = en
            elif c == "ex":
                elang[m] = self._sample_langs(rng, k, rel.elangs or NONEN_LANGS)
            elif c == "xx":
                other = self._sample_langs(rng, k, NONEN_LANGS)
                same = rng.random(k) < rel.same_lang
                elang[m] = np.where(same, slang[m], other)
            else:
                elang[m] = -1
        ekey = np.empty(n, dtype=np.int64)
        nu = ~is_url
        if nu.any():
            ekey[nu] = (elang[nu] << 32) | self._sample_terms(rng, elang[nu], 0.25)
        if is_url.any():
            ekey[is_url] = rng.integers(0, 12, int(is_url.sum()))  # URL kind
        # No duplicate (start, end) pairs and no self-loops: redraw, a few rounds.
        for _ in range(8):
            order = np.lexsort((ekey, skey))
            skey, ekey, cat = skey[order], ekey[order], cat[order]
            bad = np.zeros(n, dtype=bool)
            bad[1:] = (skey[1:] == skey[:-1]) & (ekey[1:] == ekey[:-1])
            bad |= (skey == ekey)
            if not bad.any():
                break
            bu = bad & (cat == CATS.index("url"))
            bt = bad & ~bu
            if bu.any():
                ekey[bu] = rng.integers(0, 12, int(bu.sum()))
            if bt.any():
                el = ekey[bt] >> 32
                ekey[bt] = (el << 32) | self._sample_terms(rng, el, 1.0)
        return skey, ekey, cat

    # -- rendering ----------------------------------------------------------
    def _profile_lists(self, rel: Rel):
        out = {}
        for c, plist in rel.profiles.items():
            flat = []
            for w, p in plist:
                flat += [p] * int(w)
            out[CATS.index(c)] = flat
        return out

    @staticmethod
    def _for_lang(flat: list, lang: str, cache: dict) -> list:
        """The profiles of a cell that fit a start language (dataset language)."""
        key = (id(flat), lang)
        got = cache.get(key)
        if got is None:
            got = cache[key] = [p for p in flat if p.only is None or lang in p.only] or flat
        return got

    def _render_block(self, rng, ri: int, rel: Rel, skey, ekey, cat, plists) -> str:
        n = len(skey)
        langs = self.langs
        rnd = rng.integers(0, 1 << 30, size=(6, n)).tolist()
        r0, r1, r2, r3, r4, r5 = rnd
        sl = (skey >> 32).tolist()
        st = (skey & 0xFFFFFFFF).tolist()
        el = (ekey >> 32).tolist()
        et = (ekey & 0xFFFFFFFF).tolist()
        cats = cat.tolist()
        rname = rel.name
        e_head = f"/a/[/r/{rname}/,"
        r_col = f"\t/r/{rname}\t"
        out = []
        app = out.append
        pools = self.pools
        url_cat = CATS.index("url")
        pcache: dict = {}
        for k in range(n):
            slang = langs[sl[k]]
            sterm = pools[slang].names[st[k]]
            c = cats[k]
            if c == url_cat:
                url, prof = self._url(slang, sterm, et[k], r1[k])
                ssuf = "/n/wp/" + WP_TOPICS[r2[k] % len(WP_TOPICS)] if r3[k] % 10 == 0 else ""
                s_uri = f"/c/{slang}/{sterm}{ssuf}"
                info = f'{prof.head}{prof.sources[0]}], "weight": 1.0}}'
                app(f"{e_head}{s_uri}/,/{url}/]{r_col}{s_uri}\t{url}\t{info}\n")
                continue
            elang = langs[el[k]]
            eterm = pools[elang].names[et[k]]
            flat = plists[c]
            prof = flat[r0[k] % len(flat)]
            if prof.only is not None and slang not in prof.only:
                fl = self._for_lang(flat, slang, pcache)
                prof = fl[r0[k] % len(fl)]
            ss = prof.ssuf[r1[k] % len(prof.ssuf)]
            es = prof.esuf[r2[k] % len(prof.esuf)]
            s_uri = f"/c/{slang}/{sterm}{ss}"
            e_uri = f"/c/{elang}/{eterm}{es}"
            head = prof.head
            if prof.omcs is not None:
                src, w = self._omcs_sources(prof.omcs, slang, r3[k], r4[k])
                if prof.omcs == "x":
                    head = head.replace("{L}", slang)
            else:
                src = prof.sources[r3[k] % len(prof.sources)]
                w = prof.weights[r4[k] % len(prof.weights)]
            if prof.surface is not None:
                sS = _surface(sterm, prof.article, r5[k])
                sE = _surface(eterm, prof.article, r5[k] >> 3)
                tmpl = prof.surface[r5[k] % len(prof.surface)]
                text = tmpl.replace("{s}", sS).replace("{e}", sE)
                info = (f'{head}{src}], "surfaceEnd": "{sE}", "surfaceStart": "{sS}", '
                        f'"surfaceText": "{text}", "weight": {w}}}')
            else:
                info = f'{head}{src}], "weight": {w}}}'
            app(f"{e_head}{s_uri}/,{e_uri}/]{r_col}{s_uri}\t{e_uri}\t{info}\n")
        return "".join(out)

    _DBP = DBP(["1.0"])
    _OCYC = OCYC
    _URL_LANGS = ["en", "de", "fr", "it", "es", "ja", "nl", "pl", "pt", "ru", "sv"]

    def _url(self, lang: str, term: str, kind: int, r: int) -> tuple[str, Prof]:
        title = term[:1].upper() + term[1:]
        if kind == 0:
            host = "dbpedia.org" if lang == "en" else f"{lang}.dbpedia.org"
            return f"http://{host}/resource/{title}", self._DBP
        if kind == 1:
            return f"http://wikidata.dbpedia.org/resource/Q{(r % 5_000_000) + 1}", self._DBP
        if lang == "en" and kind in (2, 3):
            camel = "".join(w[:1].upper() + w[1:] for w in term.split("_"))
            if kind == 2:
                return f"http://umbel.org/umbel/sc/{camel}", self._OCYC
            return f"http://sw.opencyc.org/2012/05/10/concept/en/{camel}", self._OCYC
        ul = self._URL_LANGS[kind - 1]
        host = "dbpedia.org" if ul == "en" else f"{ul}.dbpedia.org"
        return f"http://{host}/resource/{title}_({lang})", self._DBP

    def _omcs_sources(self, kind: str, slang: str, r: int, r2: int) -> tuple[str, str]:
        nsrc = (1, 1, 1, 1, 1, 1, 2, 2, 2, 3, 3, 4, 5)[r % 13]
        if kind == "zh":
            first = f'{{"activity": "/s/activity/ptt/petgame", "contributor": "/s/contributor/petgame/pet_{r2 % 9000}"}}'
            vote = '{{"activity": "/s/activity/ptt/petgame", "contributor": "/s/contributor/petgame/pet_{0}"}}'
        elif kind == "ja":
            first = (f'{{"activity": "/s/activity/omcs/nadya.jp", '
                     f'"contributor": "/s/contributor/omcs/nadyajp_twitter_{r2 % 300000000}"}}')
            vote = '{{"activity": "/s/activity/omcs/nadya.jp", "contributor": "/s/contributor/omcs/nadyajp_guest_{0}"}}'
        else:
            act = OMCS_ACTIVITIES[r2 % len(OMCS_ACTIVITIES)]
            first = f'{{"activity": "{act}", "contributor": "/s/contributor/omcs/user{r2 % 20000}"}}'
            vote = '{{"activity": "/s/activity/omcs/vote", "contributor": "/s/contributor/omcs/user{0}"}}'
        parts = [first] + [vote.format((r2 >> (4 * j)) % 997) for j in range(1, nsrc)]
        return ", ".join(parts), OMCS_WEIGHTS[nsrc - 1]

    def run(self, writer: _Writer, progress: bool = False) -> dict:
        t0 = last = time.perf_counter()
        done = 0
        for ri, (rel, cells) in enumerate(zip(self.rels, self.alloc)):
            if not cells:
                continue
            skey, cat = self._starts(ri, rel, cells)
            plists = self._profile_lists(rel)
            n = len(skey)
            pos, bi = 0, 0
            while pos < n:
                end = min(pos + BLOCK, n)
                if end < n:  # keep all edges of one start concept in one block
                    end = int(np.searchsorted(skey, skey[end - 1], side="right"))
                rng = np.random.default_rng([self.seed, ri, bi, 0xB10C])
                sk, ek, ct = self._ends(rng, rel, skey[pos:end], cat[pos:end])
                text = self._render_block(rng, ri, rel, sk, ek, ct, plists)
                writer.write(text.encode("utf-8"))
                done += end - pos
                pos, bi = end, bi + 1
                if progress and (time.perf_counter() - last > 1.0 or done == self.lines):
                    last = time.perf_counter()
                    el = last - t0
                    print(f"\r  synth: {done:,}/{self.lines:,} lines ({done / max(el, 1e-9):,.0f}/s) "
                          f"{rel.name:<26}", end="", file=sys.stderr, flush=True)
        if progress:
            print(file=sys.stderr)
        return {"lines": done, "relations": sum(1 for c in self.alloc if c), "en_en_lines": self.n_ee,
                "pool_sizes": dict(sorted(self.sizes.items()))}


def generate(path: str, lines: int, seed: int = 0, level: int = 6, progress: bool = False) -> dict:
    """Write a synthetic dump of exactly ``lines`` lines to ``path`` (``.gz`` -> gzip).

    The file is written to ``path + '.part'`` and renamed at the end. Returns a
    summary dict (lines, bytes, seconds, ...).
    """
    if lines < 1:
        raise ValueError("lines must be >= 1")
    t0 = time.perf_counter()
    tmp = path + ".part"
    w = _Writer(tmp, level, gz=path.endswith(".gz"))
    try:
        info = _Generator(lines, seed).run(w, progress)
        w.close()
    except BaseException:
        try:
            w.close()
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)
        raise
    os.replace(tmp, path)
    info.update(path=path, seed=seed, level=level if w.gz else None,
                gzip_backend=w.backend if w.gz else None,
                uncompressed_bytes=w.raw_bytes, file_bytes=os.path.getsize(path),
                seconds=round(time.perf_counter() - t0, 2))
    return info


def lines_for_scale(scale: float) -> int:
    """``scale`` x 34,074,917 lines, rounded down (0.1 -> 3,407,491; 0.01 -> 340,749)."""
    return int(math.floor(FULL_DUMP_LINES * scale + 1e-9))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    g = ap.add_mutually_exclusive_group(required=True)
    g.add_argument("--lines", type=int, help="number of lines to write")
    g.add_argument("--scale", type=float,
                   help=f"fraction of the real dump ({FULL_DUMP_LINES:,} lines), e.g. 0.01 or 0.1")
    ap.add_argument("--out", required=True, help="output file; .gz -> gzip, otherwise plain text")
    ap.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    ap.add_argument("--level", type=int, default=6,
                    help="gzip level (default 6, zlib); 0-3 use python-isal when installed (much faster)")
    ap.add_argument("--quiet", action="store_true", help="nothing on stderr")
    a = ap.parse_args(argv)
    if a.scale is not None and not (math.isfinite(a.scale) and a.scale > 0):
        ap.error(f"--scale: expected a number > 0, found {a.scale}")
    n = a.lines if a.lines is not None else lines_for_scale(a.scale)
    if n < 1:
        ap.error("the number of lines must be at least 1")
    if not 0 <= a.level <= 9:
        ap.error("--level must be 0-9")
    out_dir = os.path.dirname(a.out) or "."
    if os.path.isdir(a.out) or not os.path.isdir(out_dir):
        ap.error(f"--out {a.out}: not a file path in an existing folder")
    info = generate(a.out, n, a.seed, a.level, progress=not a.quiet)
    if not a.quiet:
        print(f"wrote {info['lines']:,} lines to {a.out}: {info['uncompressed_bytes'] / 1e6:,.1f} MB "
              f"uncompressed, {info['file_bytes'] / 1e6:,.1f} MB on disk, {info['seconds']:.1f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
