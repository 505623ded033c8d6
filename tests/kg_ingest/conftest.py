import json
from pathlib import Path

import pytest

from kg_ingest import GraphBuilder, RelationConfig

FIXTURES = Path(__file__).parent / "fixtures"
SAMPLE = FIXTURES / "assertions_sample.csv"


def line(rel, start, end, weight=1.0, surface=None, extra=""):
    """One line in the official dump format."""
    info = '{"dataset": "/d/conceptnet/4/en", "license": "cc:by/4.0", "sources": []'
    if surface:
        info += f', "surfaceText": "{surface}"'
    info += f', "weight": {weight}}}'
    return f"/a/[/r/{rel}/,{start}/,{end}/]\t/r/{rel}\t{start}\t{end}\t{info}{extra}\n"


@pytest.fixture
def sample_path():
    return SAMPLE


@pytest.fixture
def tiny_kg():
    """A 6-node graph:

        apple -UsedFor-> eating, apple -IsA-> fruit, banana -IsA-> fruit,
        fruit -AtLocation-> market, kitchen -RelatedTo-> apple (w 0.5),
        apple -AtLocation-> kitchen (w 2.0)
    """
    b = GraphBuilder(RelationConfig())
    for r, h, t, w in [("UsedFor", "apple", "eating", 1.0), ("IsA", "apple", "fruit", 1.0),
                       ("IsA", "banana", "fruit", 1.0), ("AtLocation", "fruit", "market", 1.0),
                       ("RelatedTo", "kitchen", "apple", 0.5), ("AtLocation", "apple", "kitchen", 2.0)]:
        b.add(r, h, t, w)
    return b.build()


def rehash(d):
    """Record every store file's current size and checksum in meta.json, as a writer would."""
    from kg_ingest._files import StoreDir

    meta = json.loads((Path(d) / "meta.json").read_text())
    algo = meta["checksums"]["algorithm"]
    with StoreDir(Path(d)) as sd:
        for name in meta["files"]:
            meta["files"][name] = (Path(d) / name).stat().st_size
            meta["checksums"]["files"][name] = sd.hash(name, algo)
    (Path(d) / "meta.json").write_text(json.dumps(meta))
