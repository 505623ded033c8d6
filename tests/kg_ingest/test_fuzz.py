"""Seeded, time-bounded fuzzing of real dump lines and of store files.

Every outcome is either a clear error (InputError / StoreError naming the input)
or exactly the right result: the dump fuzz compares each ingest with an
independent reference reading of the mutated lines; the store fuzz compares
every loaded store with the undamaged one. Never a traceback, never a wrong
neighbour.
"""

import gzip
import json
import os
import random
import re
import shutil
import time
import unicodedata
from pathlib import Path
from urllib.parse import unquote

import numpy as np
import orjson
import pytest

from kg_ingest import InputError, KnowledgeGraph, StoreError, ingest_conceptnet
from kg_ingest.cli import main
from kg_ingest.relations import RelationConfig, canonical_relation

SAMPLE = Path(__file__).parent / "fixtures" / "official_sample_764.csv"
# Seconds per fuzz test and a seed offset; raise them for a deeper run:
#   KG_FUZZ_SECONDS=120 KG_FUZZ_SEED=5 pytest tests/kg_ingest/test_fuzz.py
BUDGET_S = float(os.environ.get("KG_FUZZ_SECONDS", "3"))
SEED = int(os.environ.get("KG_FUZZ_SEED", "0"))

# ----------------------------------------------------------------- reference
_URI = re.compile(rb"/c/([a-z]{2}[^/]{0,10})/([^/]+)(?:/.*)?", re.S)
_CTRL = re.compile(rb"[\x00-\x1f\x7f]")
_F32 = float(np.finfo(np.float32).max)


def reference_line(line: bytes):
    """What one dump line must become: a (relation, head, tail, weight) record, "skip", "blank" or "malformed"."""
    if line.endswith(b"\r"):
        line = line[:-1]
    cols = line.split(b"\t")
    if len(cols) != 5:
        return "blank" if not line.strip() else "malformed"
    _, rel, s, e, info = cols
    if not rel.startswith(b"/r/") or len(rel) == 3 or _CTRL.search(rel):
        return "malformed"
    if not (s.startswith(b"/c/") and e.startswith(b"/c/")):
        other = e if s.startswith(b"/c/") else s
        if other.startswith((b"http://", b"https://")):
            return "skip"
    ms, me = _URI.fullmatch(s), _URI.fullmatch(e)
    if ms is None or me is None or _CTRL.search(s) or _CTRL.search(e):
        return "malformed"
    if ms.group(1) != b"en" or me.group(1) != b"en":
        return "skip"
    if b" " in rel:  # a relation URI has no space (lines skipped above are skipped whatever their relation)
        return "malformed"
    out = []
    for m in (ms, me):
        try:
            term = m.group(2).decode("utf-8")
            if "%" in term:
                term = unquote(term, errors="strict")
        except UnicodeDecodeError:
            return "malformed"
        if any(c < " " or "\x7f" <= c <= "\x9f" or c in "\u2028\u2029" for c in term):
            return "malformed"
        # as ConceptNet spells concepts: NFC, lower case, runs of spaces to one "_" (ends trimmed)
        term = re.sub(" +", "_", unicodedata.normalize("NFC", term.lower()).strip(" "))
        if not term:
            return "malformed"
        out.append(term)
    try:
        meta = orjson.loads(info)
    except orjson.JSONDecodeError:
        return "malformed"
    if not isinstance(meta, dict):
        return "malformed"
    w = meta.get("weight", 1.0)
    if isinstance(w, bool) or not isinstance(w, (int, float)) or not abs(w) <= _F32:
        return "malformed"
    try:
        r = rel[3:].decode("utf-8")
    except UnicodeDecodeError:
        return "malformed"
    return (r, out[0], out[1], float(w))


def reference(data: bytes):
    """(edges {(head, relation, tail): weight}, first malformed line number or None, malformed count, lines)."""
    lines = data.split(b"\n")
    if data.endswith(b"\n"):
        lines.pop()
    cfg = RelationConfig()
    edges: dict = {}
    first_bad, n_bad = None, 0
    for i, ln in enumerate(lines, 1):
        r = reference_line(ln)
        if r == "malformed":
            n_bad += 1
            first_bad = first_bad or i
        if not isinstance(r, tuple):
            continue
        rel, h, t, w = r
        if cfg.resolve(rel) is None or w < 0 or h == t:
            continue
        key = (h, canonical_relation(rel), t)
        w32 = float(np.float32(w))
        edges[key] = max(edges.get(key, w32), w32)
    return edges, first_bad, n_bad, len(lines)


def store_edges(kg):
    return {(kg.concept_name(s), kg.relations[r], kg.concept_name(d)): w
            for s, r, d, w in zip(kg.edge_src.tolist(), kg.edge_rel.tolist(), kg.edge_dst.tolist(),
                                  kg.edge_weight.tolist())}


# ----------------------------------------------------------------- mutations
_BYTES = [b"\x00", b"\t", b"\n", b"\r", b"\xff", b"\xc3", b"/", b"{", b"}", b'"', b" ", b"\x7f", b"\x01", b"a", b"E"]
_URIS = [b"apple", b"/x/en/foo", b"/c/en", b"/c/en/", b"/c/EN/apple", b"/c/e/apple", b"/c/en//x", b"http://x.org/y",
         b"/c/en/app\x00le", b"/c/en/caf\xc3", b"/c/fr/pomme", b"/c/en/dog", b"/c/zh-hant/x", b"/c/en/a/n/wn/food",
         b"https://x", b"httpx", b"/c/abcdefghijklmn/x"]
_WEIGHTS = [b"1", b"1.5", b"-2.0", b"true", b'"x"', b"null", b"1e39", b"1e400", b"-0.0", b"[1]"]


def mutate_line(rng: random.Random, line: bytes) -> bytes:
    op = rng.randrange(9)
    if op == 0 and line:
        i = rng.randrange(len(line))
        return line[:i] + rng.choice(_BYTES) + line[i + 1:]
    if op == 1 and line:
        i = rng.randrange(len(line))
        return line[:i] + line[i + rng.randint(1, 12):]
    if op == 2:
        i = rng.randrange(len(line) + 1)
        return line[:i] + rng.choice(_BYTES) + line[i:]
    cols = line.split(b"\t")
    if op == 3 and len(cols) == 5:
        cols[rng.choice([2, 3])] = rng.choice(_URIS)
        return b"\t".join(cols)
    if op == 4 and len(cols) == 5:
        cols[4] = re.sub(rb'"weight": [^,}]*', b'"weight": ' + rng.choice(_WEIGHTS), cols[4])
        return b"\t".join(cols)
    if op == 5 and len(cols) == 5:
        i, j = rng.sample(range(5), 2)
        cols[i], cols[j] = cols[j], cols[i]
        return b"\t".join(cols)
    if op == 6 and len(cols) == 5:
        cols[1] = rng.choice([b"/r/", b"r/IsA", b"/r/Is\x00A", b"/r/ExternalURL", b"/r/dbpedia/genre", b"/r/\xffX",
                              b"/r/NewRelation"])
        return b"\t".join(cols)
    if op == 7:
        return line[: rng.randrange(len(line) + 1)]
    return line.replace(b"/c/en/", rng.choice([b"/c/fr/", b"/c/EN/", b"/c/en//", b"/c/e/"]), 1)


def test_fuzz_dump_lines_ingest_matches_the_reference(tmp_path):
    rng = random.Random(20261201 + SEED)
    lines = SAMPLE.read_bytes().split(b"\n")[:-1]
    deadline = time.perf_counter() + BUDGET_S
    runs = cli_runs = errors = 0
    while time.perf_counter() < deadline or runs < 30:
        picked = rng.sample(lines, rng.randint(5, 80))
        for _ in range(rng.randint(0, max(1, len(picked) // 4))):
            k = rng.randrange(len(picked))
            picked[k] = mutate_line(rng, picked[k])
        data = b"\n".join(picked) + (b"\n" if rng.random() < 0.8 else b"")
        if rng.random() < 0.1:
            data = b"\xef\xbb\xbf" + data
        p = tmp_path / f"d{runs}.csv"
        if rng.random() < 0.2:
            p = p.with_suffix(".csv.gz")
            p.write_bytes(gzip.compress(data))
        else:
            p.write_bytes(data)
        strict = rng.random() < 0.3
        edges, first_bad, n_bad, n_lines = reference(data)
        looks_wrong = n_bad and n_bad >= min(n_lines, 1000) * 0.9
        try:
            kg, _ = ingest_conceptnet(p, options=_opts(strict))
        except InputError as e:
            errors += 1
            msg = str(e)
            assert msg.startswith(str(p)), msg
            if looks_wrong:
                assert "does not look like a ConceptNet assertions dump" in msg, msg
            elif strict and first_bad:
                assert msg.startswith(f"{p}:{first_bad}: "), (msg, first_bad)
            else:
                assert not edges and "no edges to store" in msg, (msg, edges)
        else:
            assert not looks_wrong and not (strict and first_bad), (p, first_bad, n_bad)
            assert store_edges(kg) == edges, p
        if runs % 7 == 0:  # the command line: one line on stderr, rc 0 or 2, never a traceback
            cli_runs += 1
            out = tmp_path / "s"
            args = ["conceptnet", str(p), "--out", str(out), "--quiet", "--no-progress"] + (["--strict"] * strict)
            rc = main(args)
            assert rc in (0, 2)
            if rc == 0:
                assert store_edges(KnowledgeGraph.load(out)) == edges
        p.unlink()
        runs += 1
    assert runs >= 30 and cli_runs >= 5 and 0 < errors < runs


def _opts(strict):
    from kg_ingest import ConceptNetOptions

    return ConceptNetOptions(strict=strict)


# --------------------------------------------------------------- store files
_ARRAYS = ["concepts.off.npy", "edge_src.npy", "edge_dst.npy", "edge_rel.npy", "edge_weight.npy", "out_indptr.npy",
           "in_indptr.npy", "in_eid.npy"]
_INDEX_FILES = ["concepts.bin", "concepts.off.npy", "edge_src.npy", "edge_dst.npy", "out_indptr.npy",
                "in_indptr.npy", "in_eid.npy", "relations.json"]


def damage(rng: random.Random, d: Path, files: list[str]) -> str:
    name = rng.choice(files)
    p = d / name
    data = p.read_bytes()
    op = rng.randrange(8)
    if op == 0 and data:  # flip one byte
        i = rng.randrange(len(data))
        p.write_bytes(data[:i] + bytes([data[i] ^ (1 << rng.randrange(8))]) + data[i + 1:])
    elif op == 1:  # truncate
        p.write_bytes(data[: rng.randrange(len(data) + 1)])
    elif op == 2:  # extend
        p.write_bytes(data + os.urandom(rng.randint(1, 64)))
    elif op == 3:  # swap with another file of the store
        other = d / rng.choice([f for f in files if f != name] or [name])
        tmp = d / "swap"
        os.replace(p, tmp)
        os.replace(other, p)
        os.replace(tmp, other)
    elif op == 4:  # a symbolic link to an identical copy outside
        outside = d.parent / f"outside-{rng.randrange(10**9)}"
        outside.write_bytes(data)
        p.unlink()
        p.symlink_to(outside)
    elif op == 5:
        p.unlink()
    elif op == 6 and name.endswith(".npy"):  # rewrite a valid array with one value changed
        a = np.load(p)
        if len(a):
            a = a.copy()
            i = rng.randrange(len(a))
            a[i] = a[i] + rng.choice([-1, 1, 2, 7])
        np.save(p, a)
    else:  # damage meta.json: a field of another type or value
        meta = json.loads((d / "meta.json").read_text())
        key = rng.choice(["files", "checksums", "num_nodes", "num_edges", "has_surface", "format_version", "source"])
        meta[key] = rng.choice([None, [], {}, -1, 0, 10**12, "x", True, 2, {"a": 1}])
        (d / "meta.json").write_text(json.dumps(meta))
        return f"meta.json[{key}]"
    return f"{name} op {op}"


@pytest.fixture(scope="module")
def sample_store(tmp_path_factory):
    d = tmp_path_factory.mktemp("fuzzstore") / "s"
    ingest_conceptnet(SAMPLE, d)
    return d


@pytest.mark.parametrize("level, files", [(True, "all"), ("quick", "index")])
def test_fuzz_store_files_never_answer_wrongly(tmp_path, sample_store, level, files):
    rng = random.Random((7 if level is True else 8) + 100 * SEED)
    good = KnowledgeGraph.load(sample_store)
    want_edges, want_names = store_edges(good), good.concept_names(range(good.num_nodes))
    pool = (_INDEX_FILES if files == "index" else _ARRAYS + ["concepts.bin", "relations.json", "meta.json"])
    deadline = time.perf_counter() + BUDGET_S / 2
    runs = caught = 0
    while time.perf_counter() < deadline or runs < 40:
        d = tmp_path / f"s{runs}"
        shutil.copytree(sample_store, d, symlinks=True)
        what = damage(rng, d, pool)
        try:
            kg = KnowledgeGraph.load(d, verify=level)
            got_edges, got_names = store_edges(kg), kg.concept_names(range(kg.num_nodes))
        except StoreError as e:
            caught += 1
            assert str(e).startswith(str(d)), (what, str(e))
        else:
            assert (got_edges, got_names) == (want_edges, want_names), what
        shutil.rmtree(d)
        runs += 1
    assert runs >= 40 and caught >= runs * 0.7
