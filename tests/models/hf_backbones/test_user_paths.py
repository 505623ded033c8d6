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


#: tiny matrices: one torch thread (tests/conftest.py)
pytestmark = pytest.mark.usefixtures("one_torch_thread")


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


def test_float16_backbone_weights_that_train_are_refused_and_lora_adapters_stay_float32(ved_folder):
    # On a float16 backbone, AdamW turned the trained cross-attention (or LoRA adapters, which
    # were float16 too) into NaN at the second step: "non-finite loss nan" and a traceback.
    from ravlm_graph.training.loop import TrainConfig, check_trainable_dtypes, train

    bb = {"kind": "vision_encoder_decoder", "path": str(ved_folder), "dtype": "float16"}
    trained = KnowledgeGenerator(GenerativeVQAConfig(backbone={**bb, "train": ["crossattention"]}, use_graph=False))
    with pytest.raises(ValueError, match=r"weights that train are float16 \(backbone\.model\.decoder\..*crossattention"):
        train(trained, [0], lambda items: items, TrainConfig(out_dir="", epochs=1))
    lora = KnowledgeGenerator(GenerativeVQAConfig(backbone={**bb, "lora": {"r": 2, "target_modules": ["query"]}},
                                                  use_graph=False))
    adapters = [p for n, p in lora.named_parameters() if "lora_" in n]
    assert adapters and all(p.dtype == torch.float32 and p.requires_grad for p in adapters)
    assert lora.backbone.dtype == torch.float16  # the frozen backbone stays half
    check_trainable_dtypes(lora)


def test_a_diverging_training_is_one_line_error(monkeypatch, tmp_path, capsys):
    import ravlm_graph.cli.train as cli_train

    def diverge(recipe, progress=True):
        raise FloatingPointError("train: non-finite loss nan at step 1")

    monkeypatch.setattr(cli_train, "train_recipe", diverge)
    recipe = Path(__file__).resolve().parents[3] / "configs" / "builtin_generative.json"
    assert main(["train", str(recipe), "--out", str(tmp_path / "run"), "--no-progress"]) == 2
    assert capsys.readouterr().err == "ravlm: error: train: non-finite loss nan at step 1\n"


def test_a_relative_backbone_path_is_saved_absolute_and_a_missing_one_is_named(ved_folder, tmp_path, monkeypatch):
    # A recipe's "path": "models/ved" was saved as given: the engine then loaded only from the
    # folder it was trained in, and elsewhere failed with "models/ved: expected a model folder".
    import shutil

    from ravlm_graph.utils.checkpoint import CheckpointError

    shutil.copytree(ved_folder, tmp_path / "models" / "ved")
    monkeypatch.chdir(tmp_path)
    engine = _engine(Path("models/ved"), tmp_path / "engine", "vision_encoder_decoder")
    saved = json.loads((engine / "config.json").read_text())["backbone"]["path"]
    assert saved == str(tmp_path / "models" / "ved")
    monkeypatch.chdir(tmp_path / "models")
    assert KnowledgeVQA.from_pretrained(engine).generative
    shutil.move(tmp_path / "models" / "ved", tmp_path / "moved")
    with pytest.raises(CheckpointError, match=r"engine/config.json: backbone.path names the model folder this engine "
                                              r"was trained on, '.*models/ved', and it is not there"):
        KnowledgeVQA.from_pretrained(engine)


def test_an_image_text_model_that_is_not_llava_style_is_refused_when_loaded(tmp_path):
    # BLIP-2 has vision_config, text_config and image_token_id, so it loaded as kind "llava"; its
    # Q-Former gives num_query_tokens features (not one per patch) and its forward needs
    # pixel_values: the first training step failed with "expected 4 image placeholder tokens".
    from transformers import (Blip2Config, Blip2ForConditionalGeneration, Blip2QFormerConfig, Blip2VisionConfig,
                              OPTConfig)

    from ravlm_graph.models.hf_backbones import LlavaKGBackbone

    cfg = Blip2Config(
        vision_config=Blip2VisionConfig(hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                        intermediate_size=16, image_size=16, patch_size=8).to_dict(),
        qformer_config=Blip2QFormerConfig(vocab_size=40, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                          intermediate_size=16, encoder_hidden_size=16).to_dict(),
        text_config=OPTConfig(vocab_size=40, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, ffn_dim=16,
                              word_embed_proj_dim=16, max_position_embeddings=64).to_dict(),
        num_query_tokens=2, image_token_index=39)
    Blip2ForConditionalGeneration(cfg).save_pretrained(tmp_path / "blip2")
    with pytest.raises(ValueError, match=r"expected a LLaVA-style model whose forward reads inputs_embeds alone, "
                                         r"found Blip2ForConditionalGeneration \(model_type 'blip-2'\) requiring "
                                         r"pixel_values, input_ids"):
        LlavaKGBackbone.from_pretrained(tmp_path / "blip2")


def test_train_no_progress_shows_no_epoch_bars(ved_folder, tmp_path, capsys):
    # `ravlm train --no-progress` hid the feature bars only: the loop's epoch bars still ran.
    recipe = tmp_path / "recipe.json"
    recipe.write_text(json.dumps({
        "dataset": "builtin", "out_dir": str(tmp_path / "run"), "kg": "bundled:cn100k+fvqa",
        "kg_cache": str(tmp_path / "stores"), "limit": 2,
        "model": {"backbone": {"kind": "vision_encoder_decoder", "path": str(ved_folder),
                               "train": ["crossattention"]}, "use_graph": False,
                  "max_new_tokens": 1, "val_limit": 1},
        "train": {"epochs": 1, "batch_size": 2}}))
    assert main(["train", str(recipe), "--no-progress"]) == 0
    out = capsys.readouterr()
    assert json.loads(out.out)["epochs"] == 1
    assert "epoch 1/1" not in out.err and "features (train)" not in out.err, out.err[-300:]


def test_llava_answers_are_bounded_by_the_language_model_context(llava_folder, tmp_path):
    # --max-new-tokens 100000 on a LLaVA engine whose model never says EOS ran for as long as
    # 100000 decoding steps take, past the 256-position context of the tiny Llama.
    engine = KnowledgeVQA.from_pretrained(_engine(llava_folder, tmp_path / "engine", "llava"))
    image = Image.new("RGB", (40, 32), (120, 160, 200))
    with pytest.raises(ValueError, match=r"max_new_tokens: expected at most \d+ for this question \(\d+ tokens; "
                                         r"the language model's context has 256\), found 100000"):
        engine.answer(image, "what is the apple used for", max_new_tokens=100000)
