"""Seeded fuzz of engine files: mutated ``config.json`` / ``engine.json`` values give a clear
``ValueError`` (naming the field) or a model that loads and answers — never another
exception, a huge allocation or a hang."""

from __future__ import annotations

import copy
import json
import random
import shutil
import time
from pathlib import Path

import pytest

from ravlm_graph.engine import EngineConfig
from ravlm_graph.models.knowledge_vqa import KnowledgeVQAConfig, KnowledgeVQAModel

ENGINE = Path(__file__).resolve().parents[3] / "ravlm_graph" / "data" / "engine_builtin"

# Values that real hands and broken tools put into JSON files.
ODD = [None, True, False, 0, -1, 1, 3, 2.5, -0.5, float("nan"), 10 ** 6, 10 ** 12, 2 ** 63, "", "x",
       "graph_tokens", "gatv2", [], [0], [1, 2, 3], {}, {"a": 1}, "1e9"]


def _mutate(d: dict, rng: random.Random) -> dict:
    d = copy.deepcopy(d)
    keys = [k for k in d if k not in ("format", "format_version")]
    op = rng.random()
    if op < 0.1 and keys:
        del d[rng.choice(keys)]
    elif op < 0.2:
        d[f"unknown_{rng.randrange(100)}"] = rng.choice(ODD)
    else:
        for _ in range(rng.randint(1, 3)):
            k = rng.choice(keys)
            if isinstance(d[k], dict) and d[k] and rng.random() < 0.7:
                sub = rng.choice(sorted(d[k]))
                d[k][sub] = rng.choice(ODD)
            else:
                d[k] = rng.choice(ODD)
    return d


def _small_enough(cfg: KnowledgeVQAConfig) -> bool:
    # building is only worth it (and quick) near the shipped sizes
    return cfg.gnn_hidden <= 512 and cfg.num_graph_tokens <= 64 and cfg.trunk_layers <= 6


@pytest.mark.slow
def test_mutated_configs_fail_clearly_or_load(tmp_path):
    base = json.loads((ENGINE / "config.json").read_text())
    rng = random.Random(1234)
    folder = tmp_path / "engine"
    folder.mkdir()
    shutil.copyfile(ENGINE / "model.safetensors", folder / "model.safetensors")
    deadline = time.monotonic() + 8.0
    seen = {"error": 0, "ok": 0, "loaded": 0}
    loads = 0
    while time.monotonic() < deadline:
        d = _mutate(base, rng)
        try:
            cfg = KnowledgeVQAConfig.from_dict(d)
        except ValueError as e:
            assert str(e), "an error without a message"
            seen["error"] += 1
            continue
        seen["ok"] += 1
        if loads >= 3 or not _small_enough(cfg):
            continue
        loads += 1
        (folder / "config.json").write_text(json.dumps(d))
        try:
            KnowledgeVQAModel.from_pretrained(folder)
        except ValueError as e:  # e.g. a shape that no longer matches the weights
            assert str(e)
            continue
        seen["loaded"] += 1
    assert seen["error"] > 20, seen  # most mutations are caught
    assert seen["error"] + seen["ok"] > 30, seen


@pytest.mark.parametrize("seed", range(3))
def test_mutated_engine_json_fails_clearly_or_parses(seed):
    base = json.loads((ENGINE / "engine.json").read_text())
    base.pop("format_version", None)
    rng = random.Random(seed)
    errors = 0
    for _ in range(300):
        d = _mutate(base, rng)
        try:
            EngineConfig.from_dict(d, where="engine.json")
        except ValueError as e:
            assert str(e)
            errors += 1
    assert errors > 50
