"""Generative engines on Hugging Face backbones: tiny random LLaVA and VisionEncoderDecoder
models built from configs, saved to a temporary folder, and driven through the CLI
(`ravlm train` -> `ravlm answer --json` -> `ravlm bench`) on a few built-in questions."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("torch_geometric")

from ravlm_graph.cli.main import main  # noqa: E402
from ravlm_graph.datasets import load_builtin  # noqa: E402
from ravlm_graph.engine import answer_nodes  # noqa: E402
from ravlm_graph.models.hf_backbones import (BackboneConfig, GenerativeVQAConfig, KnowledgeGenerator,  # noqa: E402
                                             backbone_kind)
from ravlm_graph.utils.checkpoint import CheckpointError  # noqa: E402
from tests.test_backbones import _tokenizer  # noqa: E402


#: tiny matrices: one torch thread (tests/conftest.py)
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _llava(path: Path) -> Path:
    from transformers import (CLIPImageProcessorPil, CLIPVisionConfig, LlamaConfig, LlavaConfig,
                              LlavaForConditionalGeneration, LlavaProcessor)

    tok = _tokenizer(("<image>",))
    cfg = LlavaConfig(
        vision_config=CLIPVisionConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                                       intermediate_size=37, image_size=32, patch_size=8),
        text_config=LlamaConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                                intermediate_size=37, max_position_embeddings=256, pad_token_id=0,
                                bos_token_id=2, eos_token_id=3),
        image_token_index=tok.convert_tokens_to_ids("<image>"), image_seq_length=16, vision_feature_layer=-1,
        vision_feature_select_strategy="default")
    torch.manual_seed(0)
    LlavaForConditionalGeneration(cfg).save_pretrained(path)
    ip = CLIPImageProcessorPil(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    LlavaProcessor(image_processor=ip, tokenizer=tok, patch_size=8, vision_feature_select_strategy="default",
                   image_token="<image>", num_additional_image_tokens=1).save_pretrained(path)
    return path


def _ved(path: Path) -> Path:
    from transformers import (BertConfig, ViTConfig, ViTImageProcessorPil, VisionEncoderDecoderConfig,
                              VisionEncoderDecoderModel)

    tok = _tokenizer(())
    enc = ViTConfig(hidden_size=24, num_hidden_layers=1, num_attention_heads=2, intermediate_size=37,
                    image_size=32, patch_size=8)
    dec = BertConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                     intermediate_size=37, max_position_embeddings=128, is_decoder=True, add_cross_attention=True,
                     pad_token_id=0, bos_token_id=2, eos_token_id=3)
    cfg = VisionEncoderDecoderConfig(encoder=enc, decoder=dec, decoder_start_token_id=2, pad_token_id=0,
                                     eos_token_id=3)
    torch.manual_seed(0)
    VisionEncoderDecoderModel(config=cfg).save_pretrained(path)
    tok.save_pretrained(path)
    ViTImageProcessorPil(size={"height": 32, "width": 32}).save_pretrained(path)
    return path


def _recipe(tmp: Path, backbone: dict, **model) -> Path:
    rec = {"dataset": "builtin", "out_dir": str(tmp / "run"), "kg": "bundled:cn100k+fvqa",
           "kg_cache": str(tmp / "stores"), "budget": 24, "retrieval": {"method": "ppr"}, "limit": 6,
           "model": {"backbone": backbone, "num_graph_tokens": 4, "copy_nodes": 8, "max_new_tokens": 3,
                     "gnn": {"hidden_dim": 32, "heads": 2, "num_layers": 1}, "val_limit": 3, **model},
           "train": {"epochs": 2, "batch_size": 3, "lr": 1e-3, "seed": 0}}
    path = tmp / "recipe.json"
    path.write_text(json.dumps(rec))
    return path


def _drive_cli(tmp: Path, recipe: Path, capsys) -> tuple[dict, dict, dict]:
    assert main(["train", str(recipe), "--no-progress"]) == 0
    summary = json.loads(capsys.readouterr().out)
    engine = tmp / "run" / "final"
    rec = load_builtin("test_unseen_facts")[0]
    image = tmp / "scene.png"
    rec.load_image().save(image)
    ents = ",".join(o["concept"] for o in rec.extra["objects"])
    assert main(["answer", "--model", str(engine), "--image", str(image), "--question", rec.question,
                 "--entities", ents, "--kg-cache", str(tmp / "stores"), "--json", "--beams", "2"]) == 0
    answer = json.loads(capsys.readouterr().out)
    assert main(["bench", "builtin", "--model", str(engine), "--out", str(tmp / "bench"), "--given-entities",
                 "--splits", "test_unseen_facts", "--limit", "3", "--kg-cache", str(tmp / "stores"),
                 "--budgets", "none", "--max-new-tokens", "2"]) == 0
    capsys.readouterr()
    results = json.loads((tmp / "bench" / "results.json").read_text())
    return summary, answer, results


def _check(summary, answer, results, tmp: Path) -> None:
    assert summary["train_questions"] == 6 and summary["epochs"] == 2
    assert all(isinstance(x, float) and x == x for x in summary["losses"])
    for key in ("answer", "entities", "facts", "subgraph_size", "answer_nodes"):
        assert key in answer
    assert answer["generated"] is True and isinstance(answer["answer"], str)
    assert answer["subgraph_size"] > 0 and answer["facts"]
    assert {e["concept"] for e in answer["entities"] if e["origin"] == "image"}
    m = results["test_unseen_facts"]
    assert m["n"] == 3 and m["generative"] is True
    assert 0.0 <= m["exact_match"] <= 1.0 and 0.0 <= m["vqa_accuracy"] <= 1.0
    rows = [json.loads(line) for line in (tmp / "bench" / "predictions.jsonl").read_text().splitlines()]
    assert len(rows) == 3
    # the answer nodes are subgraph nodes the prediction names
    for r in rows:
        assert all(n.replace("_", " ") in r["prediction"] for n in r["answer_nodes"])
    # the checkpoint holds only the trained parts, and names its backbone by path and hash
    cfg = json.loads((tmp / "run" / "final" / "config.json").read_text())
    assert len(cfg["backbone_hash"]) == 64
    from safetensors import safe_open

    with safe_open(str(tmp / "run" / "final" / "model.safetensors"), "pt") as f:
        keys = list(f.keys())
    assert any(k.startswith("gnn.") for k in keys) and any(k.startswith("token_proj.") for k in keys)
    frozen = [k for k in keys if k.startswith("backbone.")]
    assert all("lora_" in k or "crossattention" in k for k in frozen), frozen[:3]


@pytest.mark.slow
def test_llava_train_answer_bench_through_the_cli(tmp_path, capsys):
    folder = _llava(tmp_path / "llava")
    recipe = _recipe(tmp_path, {"kind": "llava", "path": str(folder),
                                "lora": {"r": 2, "alpha": 4, "target_modules": ["q_proj", "v_proj"]}})
    summary, answer, results = _drive_cli(tmp_path, recipe, capsys)
    _check(summary, answer, results, tmp_path)
    assert summary["backbone"] == "llava"


@pytest.mark.slow
def test_vision_encoder_decoder_train_answer_bench_through_the_cli(tmp_path, capsys):
    folder = _ved(tmp_path / "ved")
    recipe = _recipe(tmp_path, {"kind": "vision_encoder_decoder", "path": str(folder), "train": ["crossattention"]})
    summary, answer, results = _drive_cli(tmp_path, recipe, capsys)
    _check(summary, answer, results, tmp_path)
    assert summary["backbone"] == "vision_encoder_decoder"
    # resume: a second run of the same recipe continues from out_dir/last (no epoch left to run)
    assert main(["train", str(recipe), "--no-progress"]) == 0
    again = json.loads(capsys.readouterr().out)
    assert again["epochs"] == 0


@pytest.fixture(scope="module")
def ved_folder(tmp_path_factory) -> Path:
    return _ved(tmp_path_factory.mktemp("ved"))


def test_checkpoint_refuses_another_backbone(ved_folder, tmp_path):
    cfg = GenerativeVQAConfig(backbone={"kind": "vision_encoder_decoder", "path": str(ved_folder)}, num_relations=8,
                              gnn={"hidden_dim": 16, "heads": 2, "num_layers": 1}, copy_nodes=4)
    model = KnowledgeGenerator(cfg)
    model.save_pretrained(tmp_path / "ck")
    saved = json.loads((tmp_path / "ck" / "config.json").read_text())
    assert saved["backbone"]["path"] == str(ved_folder) and len(saved["backbone_hash"]) == 64
    back = KnowledgeGenerator.from_pretrained(tmp_path / "ck")
    for (k, v), (k2, v2) in zip(model.state_dict().items(), back.state_dict().items()):
        assert k == k2 and torch.equal(v, v2)
    assert not any(k.startswith("backbone.") for k in model.state_dict())  # frozen backbone: not saved
    cj = ved_folder / "config.json"
    original = cj.read_text()
    try:
        cj.write_text(original.replace('"model_type"', '"_edited": 1, "model_type"', 1))
        with pytest.raises(CheckpointError, match="hashed to"):
            KnowledgeGenerator.from_pretrained(tmp_path / "ck")
    finally:
        cj.write_text(original)


def test_lora_without_peft_names_the_extra(ved_folder, monkeypatch):
    import builtins

    real = builtins.__import__

    def fake(name, *a, **k):
        if name == "peft":
            raise ImportError("no peft")
        return real(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", fake)
    cfg = GenerativeVQAConfig(backbone={"kind": "vision_encoder_decoder", "path": str(ved_folder), "lora": {"r": 2}},
                              gnn={"hidden_dim": 16, "heads": 2, "num_layers": 1})
    with pytest.raises(ImportError, match=r"ravlm-graph\[lora\]"):
        KnowledgeGenerator(cfg)


def test_recipe_backbone_kinds_and_config_errors():
    assert backbone_kind({}) == "builtin"
    assert backbone_kind({"backbone": {"kind": "llava", "path": "x"}}) == "llava"
    with pytest.raises(ValueError, match="expected one of"):
        backbone_kind({"backbone": {"kind": "blip"}})
    with pytest.raises(ValueError, match="expected a local BERT/GPT-2 folder"):
        BackboneConfig(kind="vision_encoder_decoder", encoder="efficientnet_lite0")
    with pytest.raises(ValueError, match="compose a vision_encoder_decoder"):
        BackboneConfig(kind="llava", encoder="efficientnet_lite0", decoder="d")
    with pytest.raises(ValueError, match="dtype"):
        BackboneConfig(kind="llava", path="p", dtype="int8")
    with pytest.raises(ValueError, match="prompt"):
        GenerativeVQAConfig(backbone={"kind": "llava", "path": "p"}, prompt="{question} Answer:")


def test_answer_nodes_names_the_graph_nodes_in_the_answer():
    class SG:
        is_empty = False
        node_names = ["leather", "animal_skin", "boot", "shoe_leather"]

    assert answer_nodes("animal skin", SG()) == ["animal_skin"]
    assert answer_nodes("The leather boot.", SG()) == ["leather", "boot"]
    assert answer_nodes("plastic", SG()) == []
    assert answer_nodes("leather", None) == []


def test_greedy_equals_one_beam_and_beams_score_at_least_as_high(ved_folder):
    from ravlm_graph.models.hf_backbones.modeling import GenBatch
    from torch_geometric.data import Batch, Data

    cfg = GenerativeVQAConfig(backbone={"kind": "vision_encoder_decoder", "path": str(ved_folder)}, num_relations=4,
                              gnn={"hidden_dim": 16, "heads": 2, "num_layers": 1}, copy_nodes=3, name_pieces=2,
                              max_new_tokens=4)
    torch.manual_seed(0)
    model = KnowledgeGenerator(cfg).eval()
    n = 3
    datas = [Data(x=torch.randn(n, cfg.node_dim), edge_index=torch.tensor([[0, 1], [1, 2]]),
                  edge_type=torch.tensor([0, 1]), origin=torch.tensor([2, 0, 0]),
                  node_relevance=torch.rand(n), box=torch.zeros(n, 5), num_nodes=n) for _ in range(2)]
    bb = model.backbone
    ids = torch.tensor([[bb.decoder_start_token_id, 5, 6], [0, bb.decoder_start_token_id, 7]])
    batch = GenBatch(input_ids=ids, attention_mask=(ids != 0).long() | (torch.arange(3) == 2).long(),
                     pixel_values=torch.rand(2, 3, 32, 32), graph=Batch.from_data_list(datas),
                     name_ids=torch.tensor([[8, 9], [10, -1], [11, 12]] * 2))
    greedy = model.generate(batch, num_beams=1, details=True)
    beam = model.generate(batch, num_beams=3, details=True)
    assert len(greedy) == 2 and all(isinstance(g["text"], str) for g in greedy)
    for g, b in zip(greedy, beam):
        assert b["score"] >= g["score"] - 1e-6
    # greedy by hand: argmax of the next-token distribution, step by step
    out = model(GenBatch(input_ids=ids, attention_mask=batch.attention_mask, pixel_values=batch.pixel_values,
                         graph=batch.graph, name_ids=batch.name_ids))
    first = out.log_probs[:, -1].argmax(-1)
    texts = [bb.tokenizer.decode([int(t)], skip_special_tokens=True).strip() for t in first]
    for g, t, tok in zip(greedy, texts, first.tolist()):
        if tok != bb.eos_token_id:
            assert g["text"].split()[0] == t


def test_names_out_of_memory_feed_the_copy_head_only(ved_folder):
    from ravlm_graph.models.hf_backbones.modeling import GenBatch
    from torch_geometric.data import Batch, Data

    with pytest.raises(ValueError, match="names_in_memory: expected a bool"):
        GenerativeVQAConfig(backbone={"kind": "vision_encoder_decoder", "path": str(ved_folder)}, names_in_memory=1)
    n, k = 3, 2
    datas = [Data(x=torch.randn(n, 32), edge_index=torch.tensor([[0, 1], [1, 2]]), edge_type=torch.tensor([0, 1]),
                  origin=torch.tensor([2, 0, 0]), node_relevance=torch.rand(n), box=torch.zeros(n, 5), num_nodes=n)
            for _ in range(2)]
    lengths = {}
    for inside in (True, False):
        cfg = GenerativeVQAConfig(backbone={"kind": "vision_encoder_decoder", "path": str(ved_folder)},
                                  num_relations=4, gnn={"hidden_dim": 16, "heads": 2, "num_layers": 1}, copy_nodes=3,
                                  name_pieces=k, num_graph_tokens=2, names_in_memory=inside)
        torch.manual_seed(0)
        model = KnowledgeGenerator(cfg).eval()
        ids = torch.tensor([[model.backbone.decoder_start_token_id, 5]] * 2)
        batch = GenBatch(input_ids=ids, attention_mask=torch.ones_like(ids), pixel_values=torch.rand(2, 3, 32, 32),
                         graph=Batch.from_data_list(datas), name_ids=torch.tensor([[8, 9], [10, -1], [11, 12]] * 2))
        memory, memory_mask, names, names_mask, names_ids, tokens = model.encoder_memory(batch)
        lengths[inside] = memory.shape[1]
        assert names.shape[1] == 3 * k and bool(names_mask.any())  # the copy head reads the pieces either way
        out = model(batch)
        assert bool((out.copy_prob > 0).all())
        # copying puts probability on the node names' pieces: the mixed distribution differs from the LM's
        assert torch.isfinite(out.log_probs).all()
    assert lengths[True] - lengths[False] == 3 * k  # 16 image patches + 2 graph tokens (+ 6 name pieces)


def test_seed_links_describe_each_node_s_edges_to_the_seeds(ved_folder):
    from torch_geometric.data import Data

    cfg = GenerativeVQAConfig(backbone={"kind": "vision_encoder_decoder", "path": str(ved_folder)}, num_relations=4,
                              gnn={"hidden_dim": 16, "heads": 2, "num_layers": 1}, copy_nodes=3, seed_links=True)
    torch.manual_seed(0)
    model = KnowledgeGenerator(cfg)
    box = torch.rand(4, 5)
    # 0 is a seed (image); 0 -MadeOf(1)-> 1; 2 -UsedFor(3)-> 0 (reverse for 2); 1 -> 3 (no seed end)
    g = Data(edge_index=torch.tensor([[0, 2, 1], [1, 0, 3]]), edge_type=torch.tensor([1, 3, 2]),
             origin=torch.tensor([2, 0, 0, 0]), box=box, num_nodes=4)
    links = model._seed_links(g)
    seed = model.seed_box(box[0]) + model.seed_origin(torch.tensor(2))
    assert torch.allclose(links[1], model.seed_rel(torch.tensor(1)) + seed)
    assert torch.allclose(links[2], model.seed_rel(torch.tensor(3 + 4)) + seed)  # walked backwards: its own id
    assert torch.equal(links[0], torch.zeros(16)) and torch.equal(links[3], torch.zeros(16))
    plain = KnowledgeGenerator(GenerativeVQAConfig(backbone={"kind": "vision_encoder_decoder",
                                                             "path": str(ved_folder)}, num_relations=4,
                                                   gnn={"hidden_dim": 16, "heads": 2, "num_layers": 1}))
    assert plain.seed_rel is None and not any("seed_" in k for k in plain.state_dict())


def test_training_seeds_are_the_entities_the_engine_would_read():
    from ravlm_graph.engine import refer_focus
    from ravlm_graph.grounding.config import GroundingConfig
    from ravlm_graph.recipes import builtin_entities

    rec = next(r for r in load_builtin("val") if len(r.extra["objects"]) == 4
               and "bottom right" in r.question)
    ents = builtin_entities(rec)
    focus = refer_focus(rec.question, ents, rec.load_image().size, GroundingConfig(), "builtin")
    assert [e.concept for e in focus] == [o["concept"] for o in rec.extra["objects"] if o["slot"] == "bottom_right"]
    assert refer_focus("What are these things made of?", ents, (256, 256), GroundingConfig(), "builtin") == ents
