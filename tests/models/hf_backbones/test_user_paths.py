"""A user's own Hugging Face model behind an engine: what goes wrong with real folders and
options (tiny random LLaVA / VisionEncoderDecoder models built from configs)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("torch_geometric")

from PIL import Image  # noqa: E402

from ravlm_graph.cli.main import main  # noqa: E402
from ravlm_graph.engine import EngineConfig, KnowledgeVQA  # noqa: E402
from ravlm_graph.models.hf_backbones import BackboneConfig, GenerativeVQAConfig, KnowledgeGenerator  # noqa: E402
from tests.test_generative import _llava, _ved  # noqa: E402


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def llava_folder(tmp_path_factory) -> Path:
    return _llava(tmp_path_factory.mktemp("llava") / "llava")


@pytest.fixture(scope="module")
def ved_folder(tmp_path_factory) -> Path:
    return _ved(tmp_path_factory.mktemp("ved") / "ved")


@pytest.fixture()
def png(tmp_path) -> Path:
    p = tmp_path / "scene.png"
    Image.new("RGB", (40, 32), (120, 160, 200)).save(p)
    return p


def _engine(folder: Path, out: Path, kind: str, **model) -> Path:
    """An untrained engine without the graph around the backbone in ``folder``."""
    cfg = GenerativeVQAConfig(backbone=BackboneConfig(kind=kind, path=str(folder)), use_graph=False, **model)
    engine = KnowledgeVQA(KnowledgeGenerator(cfg), EngineConfig(detector=None), kg=None, retriever=None)
    return Path(engine.save_pretrained(out))


def test_answer_draw_on_an_engine_that_gives_no_score(llava_folder, png, tmp_path, capsys):
    # A LLaVA engine generates without scoring its answer: --draw titled it with p=None and failed.
    engine = _engine(llava_folder, tmp_path / "engine", "llava", max_new_tokens=2)
    out = tmp_path / "drawn.png"
    rc = main(["answer", "--model", str(engine), "--image", str(png), "--question", "What is the apple used for?",
               "--entities", "apple@left", "--draw", str(out)])
    assert rc == 0, capsys.readouterr().err
    assert out.is_file() and f"drawn: {out}" in capsys.readouterr().out


def test_decoder_position_table_bounds_the_question_and_the_answer(ved_folder, tmp_path):
    # The tiny BERT decoder has 128 positions: a longer question or --max-new-tokens 500 failed
    # inside the model (an index error); now a ValueError names the limit, and the limit works.
    engine = KnowledgeVQA.from_pretrained(_engine(ved_folder, tmp_path / "engine", "vision_encoder_decoder"))
    image = Image.new("RGB", (40, 32), (120, 160, 200))
    q = "what is the apple used for"
    with pytest.raises(ValueError, match=r"max_new_tokens: expected at most 122 .*position table has 128.*found 500"):
        engine.answer(image, q, max_new_tokens=500)
    a = engine.answer(image, q, max_new_tokens=122)  # [start] + 6 words: the last step reads 7 + 121 = 128
    assert isinstance(a.answer, str)
    with pytest.raises(ValueError, match=r"expected at most 128 tokens \(the decoder's position table"):
        engine.answer(image, " ".join([q] * 30), max_new_tokens=1)
