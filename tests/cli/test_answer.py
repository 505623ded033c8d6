"""`ravlm answer`: inputs checked before the engine loads; entities with positions and boxes."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from PIL import Image

from ravlm_graph.cli.main import main
from ravlm_graph.engine import KnowledgeVQA

ENGINE = Path(__file__).resolve().parents[2] / "ravlm_graph" / "data" / "engine_builtin"


@pytest.fixture()
def png(tmp_path):
    p = tmp_path / "scene.png"
    Image.new("RGB", (96, 64), (120, 160, 200)).save(p)
    return p


def run(capsys, *argv):
    rc = main(["answer", *argv])
    out = capsys.readouterr()
    return rc, out.out, out.err


@pytest.fixture()
def not_an_engine(tmp_path):
    """A folder that exists but holds no engine: an error below must come from the input
    checks, which run first (loading it would fail otherwise)."""
    d = tmp_path / "engine"
    d.mkdir()
    return str(d)


@pytest.mark.parametrize("args, match", [
    (["--image", "/no/such/photo.jpg", "--question", "What is it?"], "/no/such/photo.jpg"),
    (["--question", "   "], "--question is empty"),
    (["--question", "Qu'est-ce que c'est, l'objet à gauche ?"], "looks like French.*--any-language"),
    (["--question", "左边的东西是用来做什么的？"], "looks like Chinese"),
    (["--question", "What is it?", "--entities", ","], "--entities: expected one or more object names"),
    (["--question", "What is it?", "--entities", "knife@behind"], "'behind' is not a position word"),
    (["--question", "What is it?", "--entities", "/no/such/ents.json"], "entity file not found"),
    (["--question", "What is it?", "--threads", "0"], "--threads: expected an integer >= 1, found 0"),
    (["--question", "What is it?", "--beams", "0"], "--beams: expected an integer >= 1, found 0"),
    (["--question", "What is\x07 on the \x1b[2Jleft?"], "control character .U\\+0007 at position 7"),
    (["--question", "???"], "has no words.*--any-language"),
    (["--question", "What is it?", "--entities", "knife@10,20,60,80,bread@1,2,3,4,5"],
     r"item 3 \('5'\): expected an object name, not a number"),
    (["--question", "What is it?", "--entities", "TMP/ents.json"], "unknown key.*'bxo'"),
    (["--question", "What is it?", "--entities", "TMP"], "expected a JSON entity file, found a folder"),
    (["--question", "What is it?", "--detector", "given"], "--detector given: the objects are given with --entities"),
    (["--question", "What is it?", "--draw", "PNG"], "is the input image"),
    (["--question", "What is it?", "--draw", "TMP"], "--draw: expected an image file to write, found a folder"),
    (["--question", "What is it?", "--draw", "TMP/out.txt"], r"--draw: expected a file name ending in one of .*\.png"),
    (["--question", "What is it?", "--draw", "/no/such/folder/out.png"], "the folder '/no/such/folder' does not exist"),
])
def test_inputs_are_checked_before_the_engine_loads(capsys, monkeypatch, png, not_an_engine, args, match):
    def never(*a, **k):
        raise AssertionError("the engine was loaded before the inputs were checked")

    monkeypatch.setattr(KnowledgeVQA, "from_pretrained", never)
    (png.parent / "ents.json").write_text('[{"concept": "knife", "bxo": [1, 2, 3, 4]}]')
    args = [a.replace("TMP", str(png.parent)).replace("PNG", str(png)) for a in args]
    if "--image" not in args:
        args = ["--image", str(png), *args]
    rc, out, err = run(capsys, "--model", not_an_engine, *args)
    assert rc == 2 and out == ""
    assert err.startswith("ravlm: error: ")
    assert re.search(match, err), err


def test_too_long_a_question_is_refused_before_the_engine_loads(capsys, monkeypatch, png, not_an_engine):
    """Every word and mark is at least one token: more of them than the model's
    max_question_tokens is refused from the engine's config.json alone."""
    monkeypatch.setattr(KnowledgeVQA, "from_pretrained", lambda *a, **k: (_ for _ in ()).throw(AssertionError))
    (Path(not_an_engine) / "config.json").write_text(json.dumps({"max_question_tokens": 8}))
    rc, out, err = run(capsys, "--model", not_an_engine, "--image", str(png), "--question",
                       "What is the thing on the left side used for?")
    assert rc == 2 and "11 words and marks, more than the 8 tokens this model reads" in err


def test_undecodable_image_is_reported(capsys, tmp_path, not_an_engine):
    bad = tmp_path / "photo.jpg"
    bad.write_bytes(b"not an image at all")
    rc, _, err = run(capsys, "--model", not_an_engine, "--image", str(bad), "--question", "What is it?")
    assert rc == 2 and "photo.jpg" in err and "engine" not in err


def test_animated_image_warns_once_in_one_line_which_frame_is_read(capsys, monkeypatch, tmp_path, not_an_engine):
    gif = tmp_path / "clip.gif"
    Image.new("RGB", (32, 32), (0, 128, 0)).save(gif, save_all=True, append_images=[Image.new("RGB", (32, 32))],
                                                  duration=100)

    def stop(*a, **k):
        raise ValueError("stopped before the engine loads")

    monkeypatch.setattr(KnowledgeVQA, "from_pretrained", stop)
    rc, out, err = run(capsys, "--model", not_an_engine, "--image", str(gif), "--question", "What is it?")
    assert rc == 2 and out == ""
    assert err.splitlines() == [f"ravlm: warning: {gif}: an image of 2 frames or pages; only the first is read",
                                "ravlm: error: stopped before the engine loads"]


def test_bad_json_entity_file_names_the_line(capsys, png, tmp_path, not_an_engine):
    f = tmp_path / "ents.json"
    f.write_text('[{"concept": "knife"},\n {"concept": }]')
    rc, _, err = run(capsys, "--model", not_an_engine, "--image", str(png), "--question", "What is it?",
                     "--entities", str(f))
    assert rc == 2 and "ents.json:2: not valid JSON" in err


@pytest.mark.slow
def test_positions_and_boxes_reach_the_answer(capsys, png, tmp_path):
    q = "Which object keeps you dry when it rains?"
    rc, out, err = run(capsys, "--model", str(ENGINE), "--image", str(png), "--question", q,
                       "--entities", "umbrella@left,apple@middle,guitar@right", "--json")
    assert rc == 0, err
    d = json.loads(out)
    assert d["answer_concept"] == "umbrella"
    boxes = {e["concept"]: e["box"] for e in d["entities"] if e["origin"] == "image"}
    assert boxes == {"umbrella": [0.0, 64 / 3, 32.0, 128 / 3], "apple": [32.0, 64 / 3, 64.0, 128 / 3],
                     "guitar": [64.0, 64 / 3, 96.0, 128 / 3]}
    # Plain names: the model reads them as covering the whole image, and answers the same.
    rc, out, err = run(capsys, "--model", str(ENGINE), "--image", str(png), "--question", q,
                       "--entities", "umbrella,apple,guitar", "--json")
    assert rc == 0 and json.loads(out)["answer_concept"] == "umbrella"
    # The same with boxes from a JSON file.
    f = tmp_path / "ents.json"
    f.write_text(json.dumps([{"concept": "umbrella", "box": [0, 20, 32, 44]},
                             {"concept": "apple", "box": [32, 20, 64, 44]},
                             {"concept": "guitar", "box": [64, 20, 96, 44]}]))
    rc, out, err = run(capsys, "--model", str(ENGINE), "--image", str(png), "--question", q,
                       "--entities", str(f), "--json")
    assert rc == 0 and json.loads(out)["answer_concept"] == "umbrella"
    # A spatial reference picks the object by its given position; a plural is mapped with a note.
    rc, out, err = run(capsys, "--model", str(ENGINE), "--image", str(png), "--question",
                       "What is the thing on the right used for?", "--entities", "scissors@left,guitar@right",
                       "--json")
    assert rc == 0
    d = json.loads(out)
    assert [e["concept"] for e in d["entities"] if e["referred"]] == ["guitar"]
    assert "used concept `scissor`" in err and "used concept `scissor`" in d["notes"][0]


def test_broken_pipe_and_os_errors_end_with_one_line(capsys, monkeypatch):
    """A reader that goes away (`ravlm retrieve ... | head`) ends the command quietly; an
    OSError (a folder where a file was expected) is one error line, not a traceback."""
    import os

    import importlib

    cli_main = importlib.import_module("ravlm_graph.cli.main")

    def parser_with(exc):
        class P:
            def parse_args(self, argv):
                import argparse

                def func(args):
                    raise exc
                return argparse.Namespace(verbose=False, func=func)
        return lambda command=None: P()

    monkeypatch.setattr(cli_main, "build_parser", parser_with(IsADirectoryError(21, "Is a directory", "out.png")))
    assert cli_main.main(["data"]) == 2
    assert capsys.readouterr().err == "ravlm: error: Is a directory: out.png\n"
    saved = os.dup(1)
    try:
        monkeypatch.setattr(cli_main, "build_parser", parser_with(BrokenPipeError(32, "Broken pipe")))
        assert cli_main.main(["data"]) == 0
    finally:
        os.dup2(saved, 1)
        os.close(saved)
    assert capsys.readouterr().err == ""


def _never_load(monkeypatch):
    def never(*a, **k):
        raise AssertionError("the engine was loaded before --out was checked")

    monkeypatch.setattr(KnowledgeVQA, "from_pretrained", never)


def test_export_refuses_to_destroy_what_is_not_an_engine(capsys, monkeypatch, tmp_path):
    """--out must never delete a user's folder or file, nor rewrite the source engine."""
    _never_load(monkeypatch)
    precious = tmp_path / "u"
    precious.mkdir()
    (precious / "thesis.txt").write_text("precious")
    afile = tmp_path / "notes.txt"
    afile.write_text("keep")
    cases = [(str(precious), "a non-empty folder that is not an engine folder"),
             (str(afile), "exists and is not a folder"),
             (str(afile / "sub"), "is a file, not a folder"),
             (str(ENGINE), "is the source engine"),
             (str(ENGINE / "detector"), "or a folder inside it"),
             (str(ENGINE.parent), "contains the source engine"),
             ("", "--out: expected a folder path, found an empty string")]
    for out, match in cases:
        rc = main(["export", str(ENGINE), "--out", out])
        err = capsys.readouterr().err
        assert rc == 2 and err.startswith("ravlm: error: --out: ") and match in err, (out, err)
        assert err.count("\n") == 1
    assert (precious / "thesis.txt").read_text() == "precious" and afile.read_text() == "keep"


@pytest.mark.parametrize("args, match", [
    (["--detector", "photo", "--detector-settings", "[1]"], r"--detector-settings: expected a JSON object, found '\[1\]'"),
    (["--detector", "photo", "--detector-settings", "{"], "--detector-settings: expected a JSON object"),
    (["--detector", "magic"], "--detector: expected one of"),
    (["--detector", "layout_cells", "--detector-path", "/no/such/det"], "--detector-path: expected a detector folder, "
                                                                     "found no such folder"),
])
def test_export_options_are_checked_before_the_engine_loads(capsys, monkeypatch, tmp_path, args, match):
    _never_load(monkeypatch)
    rc = main(["export", str(ENGINE), "--out", str(tmp_path / "x"), *args])
    err = capsys.readouterr().err
    assert rc == 2 and re.search(match, err), err
    assert not (tmp_path / "x").exists()


def test_export_replaces_an_engine_folder_and_fills_an_empty_one(capsys, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["export", str(ENGINE), "--out", str(empty)]) == 0
    assert (empty / "engine.json").is_file()
    (empty / "stale.txt").write_text("old")  # an engine folder is replaced whole
    assert main(["export", str(ENGINE), "--out", str(empty)]) == 0
    assert (empty / "engine.json").is_file() and not (empty / "stale.txt").exists()
    capsys.readouterr()
