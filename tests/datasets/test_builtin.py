import json
import random
import shutil
from collections import defaultdict
from pathlib import Path

import pytest
from PIL import Image, ImageChops

from kg_ingest import load_default
from ravlm_graph.cli.main import main as cli_main
from ravlm_graph.datasets.builtin import BUILTIN_SPLITS, BuildConfig, build_builtin, default_builtin_root, default_emoji_root, load_builtin, read_manifest
from ravlm_graph.types import VQARecord
from ravlm_graph.datasets.scenes import SpriteCache, place_objects, render_scene

TINY = BuildConfig(seed=3, train=60, val=12, test=12)


@pytest.fixture(scope="module")
def kg():
    return load_default(with_fvqa=True)


@pytest.fixture(scope="module")
def tiny_build(kg, tmp_path_factory):
    out = tmp_path_factory.mktemp("builtin") / "a"
    summary = build_builtin(out, kg=kg, config=TINY, progress=False)
    return out, summary


def _read(out: Path, split: str):
    return [json.loads(l) for l in (out / f"{split}.jsonl").read_text().splitlines()]


# --------------------------------------------------------------------------- scenes

def _sprite_root(tmp_path: Path) -> Path:
    """Two styles of one 64-px sprite: an opaque square inside a transparent margin."""
    for d, color in (("twemoji64", (200, 30, 30, 255)), ("noto64", (30, 30, 200, 255))):
        (tmp_path / d).mkdir(parents=True)
        im = Image.new("RGBA", (64, 64), (0, 0, 0, 0))
        im.paste(Image.new("RGBA", (40, 40), color), (12, 12))
        im.save(tmp_path / d / "sq.png")
    return tmp_path


def test_render_is_deterministic_and_boxes_are_exact(tmp_path):
    root = _sprite_root(tmp_path)
    sprites = SpriteCache(root)
    objs = [{"image": "sq.png", "concept": "a"}, {"image": "sq.png", "concept": "b"}]
    placed = place_objects(objs, ("left", "right"), 64, 64, "twemoji", sprites, random.Random(0))
    assert placed == place_objects(objs, ("left", "right"), 64, 64, "twemoji", sprites, random.Random(0))
    bg = {"kind": "solid", "color": [255, 255, 255]}
    spec = {"id": "s", "size": [64, 64], "style": "twemoji", "background": bg, "objects": placed}
    im = render_scene(spec, root)
    assert im.size == (64, 64) and im.mode == "RGB"
    assert im.tobytes() == render_scene(spec, root).tobytes()
    # left object left of the right one, boxes disjoint
    (l0, _, l1, _), (r0, _, r1, _) = placed[0]["box"], placed[1]["box"]
    assert l1 <= 32 <= r0
    for obj in placed:
        alone = render_scene({**spec, "objects": [obj]}, root)
        diff = ImageChops.difference(alone, Image.new("RGB", (64, 64), (255, 255, 255))).getbbox()
        x0, y0, x1, y1 = obj["box"]
        assert x0 <= diff[0] and y0 <= diff[1] and diff[2] <= x1 and diff[3] <= y1
        assert max(abs(a - b) for a, b in zip(diff, obj["box"])) <= 1


def test_unrotated_box_is_pixel_exact(tmp_path):
    root = _sprite_root(tmp_path)
    obj = {"image": "sq.png", "concept": "a", "slot": "only", "size": 64, "angle": 0.0, "x": 5, "y": 7,
           "box": [17, 19, 57, 59]}
    spec = {"id": "s", "size": [72, 72], "style": "noto", "background": {"kind": "solid", "color": [0, 0, 0]},
            "objects": [obj]}
    im = render_scene(spec, root)
    assert ImageChops.difference(im, Image.new("RGB", (72, 72))).getbbox() == (17, 19, 57, 59)
    placed = place_objects([obj], ("only",), 72, 72, "noto", SpriteCache(root), random.Random(5))[0]
    diff = ImageChops.difference(render_scene({**spec, "objects": [placed]}, root), Image.new("RGB", (72, 72)))
    got, box = diff.getbbox(), placed["box"]  # faint (alpha 1/255) edge pixels may not change the colour
    assert box[:2] <= list(got[:2]) and list(got[2:]) <= box[2:]
    assert max(abs(a - b) for a, b in zip(got, box)) <= 1
    assert im.getpixel((20, 20)) == (30, 30, 200)  # the noto sprite


# --------------------------------------------------------------------------- builder

def test_tiny_build_is_deterministic(kg, tiny_build, tmp_path):
    out, summary = tiny_build
    build_builtin(tmp_path / "b", kg=kg, config=TINY, progress=False)
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted(p.name for p in (tmp_path / "b").iterdir())
    for n in names:
        assert (out / n).read_bytes() == (tmp_path / "b" / n).read_bytes(), n
    assert summary.questions == TINY.split_sizes()
    text = summary.format()
    assert "held out" in text and "UsedFor" in text and "total" in text


def _check_split_properties(out: Path, kg):
    seen_pairs = set()
    train_answers = defaultdict(set)
    for split in ("train", "val", "test_iid", "test_other_style"):
        for r in _read(out, split):
            seen_pairs.add((r["target"], r["relation"]))
            if split == "train":
                for h, rel, t in r["facts"] + ([r["asked_fact"]] if r["asked_fact"] else []):
                    train_answers[(h, rel)].add(t)
    unseen = _read(out, "test_unseen_facts")
    assert unseen
    for r in unseen:
        key = (r["target"], r["relation"])
        assert key not in seen_pairs
        for h, rel, t in r["facts"]:
            assert t not in train_answers[(h, rel)]
        if r["question_type"] == "fact":
            assert not set(r["answers"]) & train_answers[key]
    styles = {s: {json.loads(l)["style"] for l in (out / f"{s}.scenes.jsonl").read_text().splitlines()}
              for s in BUILTIN_SPLITS}
    assert styles["test_other_style"] == {"noto"}
    assert all(styles[s] == {"twemoji"} for s in BUILTIN_SPLITS if s != "test_other_style")
    for split in BUILTIN_SPLITS:
        recs = _read(out, split)
        yn = [r["answers"][0] for r in recs if r["question_type"] == "yesno"]
        assert yn.count("yes") == yn.count("no")
        scenes = {json.loads(l)["id"]: json.loads(l) for l in (out / f"{split}.scenes.jsonl").read_text().splitlines()}
        for r in recs:
            objs = [o["concept"] for o in scenes[r["scene"]]["objects"]]
            assert r["target"] in objs and len(set(objs)) == len(objs)
            if r["question_type"] == "fact":
                tails = {n.concept for n in kg.neighbors(r["target"], relation=r["relation"])}
                assert set(r["answers"]) <= tails and r["answers"]
            elif r["question_type"] == "select":
                assert r["answers"] == [r["target"]]
                _, rel, a = r["asked_fact"]
                assert (r["target"], rel, a) in {tuple(f) for f in r["facts"]}
                for d in objs:
                    if d != r["target"]:  # distractors lack the asked property (no edge to it at all)
                        assert a not in {n.concept for n in kg.neighbors(d)}
            else:
                h, rel, a = r["asked_fact"]
                holds = a in {n.concept for n in kg.neighbors(h, relation=rel)}
                assert holds == (r["answers"] == ["yes"])


def test_tiny_build_split_properties(kg, tiny_build):
    _check_split_properties(tiny_build[0], kg)


def test_shipped_build_split_properties(kg):
    root = default_builtin_root()
    m = read_manifest(root)
    assert m["emoji_root"] is None  # draws from the packaged sprites
    for split in BUILTIN_SPLITS:
        assert m["splits"][split]["questions"] == len(_read(root, split))
    assert 3000 <= m["splits"]["train"]["questions"] <= 6000
    assert all(300 <= m["splits"][s]["questions"] <= 500 for s in BUILTIN_SPLITS if s != "train")
    _check_split_properties(root, kg)
    assert "Apache" in (root / "ATTRIBUTION.md").read_text()


def test_load_builtin_records(tmp_path):
    recs = load_builtin("test_iid")
    assert len(recs) == read_manifest()["splits"]["test_iid"]["questions"]
    r = recs[0]
    assert isinstance(r, VQARecord) and r.dataset == "builtin" and r.split == "test_iid"
    assert r.entities and all(e.origin == "image" for e in r.entities)
    assert {o["concept"] for o in r.extra["objects"]} == {e.concept for e in r.entities}
    assert r.extra["question_type"] in ("fact", "select", "yesno") and r.extra["relation"]
    im = r.load_image()
    assert im.size == (128, 128) and im.mode == "RGB"
    for o in r.extra["objects"]:
        x0, y0, x1, y1 = o["box"]
        assert 0 <= x0 < x1 <= 128 and 0 <= y0 < y1 <= 128
    facts = [f for rec in recs for f in rec.facts]
    assert facts and all(f.source == "conceptnet" for f in facts)
    fact_q = next(x for x in recs if x.extra["question_type"] == "fact")
    assert set(fact_q.answers) == {f.tail for f in fact_q.facts} == set(fact_q.answer_concepts)
    # materialised PNGs give the same pixels
    small = load_builtin("test_iid", images_dir=tmp_path)[:2]
    assert small[0].image_path.is_file()
    assert small[0].load_image().tobytes() == recs[0].load_image().tobytes()
    with pytest.raises(KeyError, match="unknown built-in split 'test'"):
        load_builtin("test")


# --------------------------------------------------------------------------- bad input

def test_bad_inputs_are_counted_skips(kg, tmp_path):
    src = default_emoji_root()
    index = json.loads((src / "index.json").read_text())
    by_concept = {}
    for rec in index:
        by_concept.setdefault(rec["concept"], rec)
    root = tmp_path / "emoji"
    (root / "twemoji64").mkdir(parents=True)
    (root / "noto64").mkdir()
    entries = []
    for c in ("apple", "dog", "bus", "knife", "book", "car"):
        rec = {k: v for k, v in by_concept[c].items() if k not in ("concept", "rule", "facts")}
        entries.append(rec)
        for d in ("twemoji64", "noto64"):
            shutil.copyfile(src / d / rec["image"], root / d / rec["image"])
    entries.append({"image": "broken.png", "name": "cat face", "short_names": ["cat"]})
    for d in ("twemoji64", "noto64"):
        (root / d / "broken.png").write_bytes(b"this is not a png")
    entries.append({"image": "none.png", "name": "qwxz gizmo", "short_names": ["qwxz"]})
    for d in ("twemoji64", "noto64"):
        shutil.copyfile(src / d / entries[0]["image"], root / d / "none.png")
    (root / "index.json").write_text(json.dumps(entries))
    cfg = BuildConfig(seed=1, train=20, val=6, test=6, held_out_fraction=0.3)
    summary = build_builtin(tmp_path / "out", kg=kg, emoji_root=root, config=cfg, progress=False)
    assert dict(summary.skipped) == {"undecodable_image": 1, "no_concept": 1}
    assert summary.emoji_kept == 6 and summary.concepts_kept == 6
    assert "undecodable_image 1" in summary.format() and "no_concept 1" in summary.format()
    assert read_manifest(tmp_path / "out")["emoji_root"] == str(root.resolve())
    rec = load_builtin("train", tmp_path / "out")[0]
    assert rec.load_image().size == (128, 128)


def test_cli_build_and_info(tmp_path, capsys):
    root = tmp_path / "emoji"
    src = default_emoji_root()
    index = json.loads((src / "index.json").read_text())[:40]
    for d in ("twemoji64", "noto64"):
        (root / d).mkdir(parents=True)
        for rec in index:
            shutil.copyfile(src / d / rec["image"], root / d / rec["image"])
    (root / "index.json").write_text(json.dumps(index))
    rc = cli_main(["data", "build", "--out", str(tmp_path / "o"), "--train", "20", "--test", "6",
                   "--emoji-root", str(root), "--no-progress"])
    assert rc == 0
    assert "total" in capsys.readouterr().out
    assert cli_main(["data", "info", str(tmp_path / "o")]) == 0
    out = capsys.readouterr().out
    assert "test_unseen_facts" in out and "style=noto" in out
    assert cli_main(["data", "info", str(tmp_path / "missing")]) == 2


# --------------------------------------------------------------------------- checks on load

def small_builtin_copy(dest: Path, n: int = 3, edit_scene=None, edit_record=None) -> Path:
    """A benchmark folder with the packaged manifest and the first ``n`` val questions and scenes;
    ``edit_scene`` / ``edit_record`` change the first scene / question (a dict, in place)."""
    src = default_builtin_root()
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src / "manifest.json", dest / "manifest.json")
    for name, edit in (("val.scenes.jsonl", edit_scene), ("val.jsonl", edit_record)):
        rows = [json.loads(l) for l in (src / name).read_text().splitlines()[:n]]
        if edit is not None and rows:
            edit(rows[0])
        (dest / name).write_text("".join(json.dumps(r) + "\n" for r in rows))
    return dest


@pytest.mark.parametrize("edit, message", [
    (lambda s: s.update(size=[100000, 100000]), r"val.scenes.jsonl:1: scene size 100000x100000 px: expected each side "
                                                r"between 8 and 4096 px"),
    (lambda s: s.update(size=[0, 0]), r"val.scenes.jsonl:1: scene size 0x0 px"),
    (lambda s: s.update(size=[128]), r"val.scenes.jsonl:1: field 'size'"),
    (lambda s: s["objects"][0].update(box=[0, 0, 100000, 100000]), r"val.scenes.jsonl:1: object 0: box"),
    (lambda s: s["objects"][1].update(size=100000), r"val.scenes.jsonl:1: object 1: sprite size 100000"),
    (lambda s: s["objects"][0].pop("x"), r"val.scenes.jsonl:1: object 0: missing field 'x'"),
    (lambda s: s.update(background={"kind": "checker", "colors": [[0, 0, 0], [9, 9, 9]], "cell": 0}),
     r"val.scenes.jsonl:1: background 'cell'"),
])
def test_load_builtin_checks_scenes_before_drawing_them(tmp_path, edit, message):
    root = small_builtin_copy(tmp_path / "d", edit_scene=edit)
    with pytest.raises(ValueError, match=message) as e:
        load_builtin("val", root)
    assert str(root) in str(e.value)


@pytest.mark.parametrize("edit, message", [
    (lambda r: r.pop("answers"), r"val.jsonl:1: missing field 'answers'"),
    (lambda r: r.update(answers=[]), r"val.jsonl:1: field 'answers': expected a non-empty list"),
    (lambda r: r.update(question=" "), r"val.jsonl:1: field 'question'"),
    (lambda r: r.pop("qid"), r"val.jsonl:1: missing field 'qid'"),
])
def test_load_builtin_names_file_line_and_field_of_a_bad_record(tmp_path, edit, message):
    root = small_builtin_copy(tmp_path / "d", edit_record=edit)
    with pytest.raises(ValueError, match=message):
        load_builtin("val", root)


def test_load_builtin_reads_a_small_copy_and_a_byte_order_mark(tmp_path):
    root = small_builtin_copy(tmp_path / "d")
    assert [r.qid for r in load_builtin("val", root)] == ["val-00000", "val-00001", "val-00002"]
    p = root / "val.jsonl"
    p.write_text("\ufeff" + p.read_text(), encoding="utf-8")
    assert len(load_builtin("val", root)) == 3
