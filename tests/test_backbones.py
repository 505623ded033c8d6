"""Hugging Face backbones: tiny LLaVA and ViT+GPT-2 models built from configs, saved to a
temporary folder and loaded back through the adapters (offline)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("tokenizers")
from PIL import Image  # noqa: E402

from ravlm_graph.models.hf_backbones.modeling import BackboneConfig, BackboneOutput, LlavaKGBackbone, VisionEncoderDecoderKGBackbone, load_backbone
from ravlm_graph.nn.fusion.base import GraphTokens  # noqa: E402

WORDS = ("what is the color of a an apple banana sky red yellow blue green it used for eating cat dog "
         "animal fruit answer can you do with this made from tree water").split()
N_PATCHES = 16  # (32 / 8) ** 2 image tokens per image (CLS dropped)
T = 3  # graph tokens per question
NODE_DIM = 8


def _tokenizer(extra_specials: tuple[str, ...]):
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    specials = ["<pad>", "<unk>", "<s>", "</s>", *extra_specials]
    vocab = {w: i for i, w in enumerate(specials + WORDS)}
    tk = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(tokenizer_object=tk, unk_token="<unk>", pad_token="<pad>", bos_token="<s>",
                                   eos_token="</s>", additional_special_tokens=list(extra_specials))


def _graph(tokens, mask=None):
    """GraphTokens as ravlm_graph.fusion defines them."""
    b, t, _ = tokens.shape
    if mask is None:
        mask = torch.ones(b, t, dtype=torch.bool)
    node_index = torch.arange(t).expand(b, t).masked_fill(~mask, -1)
    return GraphTokens(tokens=tokens, mask=mask, node_index=node_index)


def _images(n, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [Image.fromarray((torch.rand(20, 24, 3, generator=g) * 255).byte().numpy()) for _ in range(n)]


#: tiny matrices: one torch thread (tests/conftest.py)
pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def llava_dir(tmp_path_factory) -> Path:
    from transformers import (CLIPImageProcessorPil, CLIPVisionConfig, LlamaConfig, LlavaConfig,
                              LlavaForConditionalGeneration, LlavaProcessor)

    tok = _tokenizer(("<image>",))
    image_id = tok.convert_tokens_to_ids("<image>")
    cfg = LlavaConfig(
        vision_config=CLIPVisionConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                       intermediate_size=37, image_size=32, patch_size=8),
        text_config=LlamaConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                intermediate_size=37, max_position_embeddings=128, pad_token_id=0,
                                bos_token_id=2, eos_token_id=3),
        image_token_index=image_id, image_seq_length=N_PATCHES, vision_feature_layer=-1,
        vision_feature_select_strategy="default")
    torch.manual_seed(0)
    model = LlavaForConditionalGeneration(cfg)
    ip = CLIPImageProcessorPil(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    proc = LlavaProcessor(image_processor=ip, tokenizer=tok, patch_size=8, vision_feature_select_strategy="default",
                          image_token="<image>", num_additional_image_tokens=1)
    path = tmp_path_factory.mktemp("llava")
    model.save_pretrained(path)
    proc.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def ved_dir(tmp_path_factory) -> Path:
    from transformers import (GPT2Config, ViTConfig, ViTImageProcessorPil, VisionEncoderDecoderConfig,
                              VisionEncoderDecoderModel)

    tok = _tokenizer(())
    enc = ViTConfig(hidden_size=24, num_hidden_layers=2, num_attention_heads=2, intermediate_size=37,
                    image_size=32, patch_size=8)
    dec = GPT2Config(vocab_size=len(tok), n_embd=32, n_layer=2, n_head=2, n_positions=64, add_cross_attention=True,
                     bos_token_id=2, eos_token_id=3, pad_token_id=0)
    cfg = VisionEncoderDecoderConfig(encoder=enc, decoder=dec, decoder_start_token_id=2, pad_token_id=0,
                                     eos_token_id=3)
    torch.manual_seed(0)
    model = VisionEncoderDecoderModel(config=cfg)
    path = tmp_path_factory.mktemp("ved")
    model.save_pretrained(path)
    tok.save_pretrained(path)
    ViTImageProcessorPil(size={"height": 32, "width": 32}).save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def llava(llava_dir) -> LlavaKGBackbone:
    return LlavaKGBackbone.from_pretrained(llava_dir, BackboneConfig(kind="llava", path=str(llava_dir)))


@pytest.fixture(scope="module")
def ved(ved_dir) -> VisionEncoderDecoderKGBackbone:
    return load_backbone(BackboneConfig(kind="vision_encoder_decoder", path=str(ved_dir)))


PROMPTS = ["<image> what is it used for ? <kg> answer", "<image> <kg> what color is the fruit"]
ANSWERS = ["eating", "yellow"]


def _graph_for(bb, b=2, seed=1, mask=None):
    g = torch.Generator().manual_seed(seed)
    return _graph(torch.randn(b, T, bb.hidden_size if isinstance(bb, LlavaKGBackbone) else bb.encoder_hidden_size,
                              generator=g), mask)


# --------------------------------------------------------------------------- config


def test_config_validation():
    cfg = BackboneConfig(kind="llava", path="/models/x")
    assert BackboneConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match=r"kind: expected one of \['llava', 'vision_encoder_decoder'\], found 'blip'"):
        BackboneConfig(kind="blip", path="x")
    with pytest.raises(ValueError, match="path: expected a local model folder"):
        BackboneConfig(path="")
    with pytest.raises(ValueError, match="kg_token: expected a non-empty string"):
        BackboneConfig(path="x", kg_token="< kg >")
    with pytest.raises(ValueError, match="freeze: expected a bool"):
        BackboneConfig(path="x", freeze="yes")
    with pytest.raises(ValueError, match="max_length: expected an int >= 1, found 0"):
        BackboneConfig(path="x", max_length=0)
    with pytest.raises(ValueError, match="unknown fields"):
        BackboneConfig.from_dict({"path": "x", "precision": "bf16"})


# --------------------------------------------------------------------------- LLaVA


def test_llava_load_adds_kg_token(llava, llava_dir):
    saved = json.loads((llava_dir / "config.json").read_text())
    old_vocab = saved["text_config"]["vocab_size"]
    assert llava.kg_token_id == old_vocab  # appended after the saved vocabulary
    assert len(llava.tokenizer) == old_vocab + 1
    assert llava.model.get_input_embeddings().weight.shape == (old_vocab + 1, 32)
    assert llava.model.get_output_embeddings().weight.shape[0] == old_vocab + 1
    assert llava.hidden_size == 32 and llava.num_image_tokens == N_PATCHES
    assert all(not p.requires_grad for p in llava.parameters())  # freeze=True by default
    assert "LlavaKGBackbone" in repr(llava)


def test_llava_prepare_inputs(llava):
    batch = llava.prepare_inputs(PROMPTS, _images(2), answers=ANSWERS)
    assert batch.pixel_values.shape == (2, 3, 32, 32)
    assert ((batch.input_ids == llava.image_token_id).sum(1) == N_PATCHES).all()
    assert ((batch.input_ids == llava.kg_token_id).sum(1) == 1).all()
    # labels only on the answer (+ EOS), left padding is masked
    tok = llava.tokenizer
    for row, answer in enumerate(ANSWERS):
        supervised = batch.labels[row][batch.labels[row] != -100].tolist()
        assert supervised == [tok.convert_tokens_to_ids(answer), tok.eos_token_id]
    assert batch.attention_mask[1, 0] == 0 or batch.attention_mask[0, 0] == 0


def test_graph_tokens_land_at_kg_position(llava):
    batch = llava.prepare_inputs(PROMPTS, _images(2))
    graph = _graph_for(llava)
    seen = {}

    def hook(module, args, kwargs):
        seen["h"] = (args[0] if args else kwargs["hidden_states"]).detach().clone()

    layer0 = llava.model.model.language_model.layers[0]
    handle = layer0.register_forward_pre_hook(hook, with_kwargs=True)
    try:
        out = llava.forward_batch(batch, graph)
    finally:
        handle.remove()
    h = seen["h"]  # (B, L', D), what the LM's first layer receives
    L = batch.input_ids.shape[1]
    assert h.shape == (2, L - 1 + T, 32) and out.logits.shape[:2] == (2, L - 1 + T)
    for b in range(2):
        kg_at = int((batch.input_ids[b] == llava.kg_token_id).nonzero())
        assert out.graph_positions[b].tolist() == list(range(kg_at, kg_at + T))
        torch.testing.assert_close(h[b, kg_at:kg_at + T], graph.tokens[b])
        # text before the placeholder is untouched, text after is shifted by T - 1
        emb = llava.model.get_input_embeddings()(batch.input_ids[b])
        ids = batch.input_ids[b]
        for i in ((ids != llava.image_token_id) & (ids != llava.kg_token_id)).nonzero().squeeze(1).tolist():
            torch.testing.assert_close(h[b, i if i < kg_at else i - 1 + T], emb[i])
    # image features sit at the image placeholders
    feats = llava.model.get_image_features(pixel_values=batch.pixel_values).pooler_output
    img_pos = (batch.input_ids[0] == llava.image_token_id).nonzero().squeeze(1)
    torch.testing.assert_close(h[0, img_pos], feats[0])
    assert out.hidden_states_last.shape == (2, L - 1 + T, 32)


def test_padded_graph_tokens_go_left_and_last_slot_is_last_token(llava):
    batch = llava.prepare_inputs(PROMPTS, _images(2))
    mask = torch.tensor([[True, False, False], [True, True, True]])
    graph = _graph_for(llava, mask=mask)
    inj = llava.build_inputs_embeds(batch.input_ids, batch.pixel_values, graph, batch.attention_mask)
    emb = llava.model.get_input_embeddings()(batch.input_ids)
    # every masked slot (left text padding, padded graph tokens) is on the left
    for b in range(2):
        m = inj.attention_mask[b].tolist()
        assert m == sorted(m)
        assert inj.attention_mask[b, inj.graph_positions[b]].tolist() == mask[b].long().tolist()
        real = inj.graph_positions[b][mask[b]]
        torch.testing.assert_close(inj.inputs_embeds[b, real], graph.tokens[b][mask[b]])
        kg_at = int((batch.input_ids[b] == llava.kg_token_id).nonzero())
        # the real graph tokens sit between the text before and after <kg>
        assert int(inj.text_positions[b, kg_at - 1]) == int(real[0]) - 1
        assert int(inj.text_positions[b, kg_at + 1]) == int(real[-1]) + 1
        torch.testing.assert_close(inj.inputs_embeds[b, -1], emb[b, -1])
        assert int(inj.position_ids[b, -1]) == int(inj.attention_mask[b].sum()) - 1


def test_llava_loss_is_shifted_for_graph_tokens(llava):
    batch = llava.prepare_inputs(PROMPTS, _images(2), answers=ANSWERS)
    graph = _graph_for(llava)
    out = llava.forward_batch(batch, graph)
    assert isinstance(out, BackboneOutput) and out.loss.dim() == 0 and torch.isfinite(out.loss)
    inj = llava.build_inputs_embeds(batch.input_ids, batch.pixel_values, graph, batch.attention_mask)
    losses = []
    for b in range(2):
        for i in (batch.labels[b] != -100).nonzero().squeeze(1).tolist():
            j = int(inj.text_positions[b, i])
            losses.append(torch.nn.functional.cross_entropy(out.logits[b, j - 1], batch.labels[b, i]))
    torch.testing.assert_close(out.loss, torch.stack(losses).mean(), rtol=1e-5, atol=1e-5)


def test_llava_frozen_gradients_reach_graph_projection_only(llava):
    batch = llava.prepare_inputs(PROMPTS, _images(2), answers=ANSWERS)
    proj = torch.nn.Linear(NODE_DIM, llava.hidden_size)
    nodes = torch.randn(2, T, NODE_DIM)
    out = llava.forward_batch(batch, _graph(proj(nodes)))
    out.loss.backward()
    assert proj.weight.grad is not None and proj.weight.grad.abs().sum() > 0
    assert all(p.grad is None and not p.requires_grad for p in llava.parameters())


def test_llava_unfrozen_backbone_gets_gradients(llava_dir):
    bb = load_backbone(BackboneConfig(kind="llava", path=str(llava_dir), freeze=False))
    assert isinstance(bb, LlavaKGBackbone) and all(p.requires_grad for p in bb.parameters())
    batch = bb.prepare_inputs(PROMPTS[:1], _images(1), answers=ANSWERS[:1])
    bb.forward_batch(batch, _graph_for(bb, b=1)).loss.backward()
    assert bb.model.lm_head.weight.grad is not None


def test_graph_tokens_change_logits_and_masked_ones_do_not(llava):
    batch = llava.prepare_inputs(PROMPTS, _images(2))
    mask = torch.tensor([[True, True, False], [True, True, True]])
    g1 = _graph_for(llava, seed=1, mask=mask)
    with torch.no_grad():
        a = llava.forward_batch(batch, g1).logits
        changed = g1.tokens.clone()
        changed[0, 0] += 1.0
        b = llava.forward_batch(batch, _graph(changed, mask)).logits
        padded = g1.tokens.clone()
        padded[0, 2] = 100.0  # a masked graph token: nobody may read it
        c = llava.forward_batch(batch, _graph(padded, mask)).logits
    assert not torch.allclose(a[0, -1], b[0, -1])
    torch.testing.assert_close(a[1], b[1])  # the other question is untouched
    pos = llava.forward_batch(batch, g1).graph_positions[0, 2]
    keep = torch.arange(a.shape[1]) != pos
    torch.testing.assert_close(a[0, keep], c[0, keep], rtol=1e-5, atol=1e-5)


def test_left_padding_gives_the_same_logits_as_a_batch_of_one(llava):
    images = _images(2)
    graph = _graph_for(llava)
    both = llava.prepare_inputs(PROMPTS, images)
    with torch.no_grad():
        batched = llava.forward_batch(both, graph).logits[:, -1]
        for b in range(2):
            one = llava.prepare_inputs(PROMPTS[b:b + 1], images[b:b + 1])
            g = _graph(graph.tokens[b:b + 1])
            torch.testing.assert_close(llava.forward_batch(one, g).logits[0, -1], batched[b], rtol=1e-4, atol=1e-4)


def test_llava_generate_returns_strings(llava):
    batch = llava.prepare_inputs(PROMPTS, _images(2))
    graph = _graph_for(llava, mask=torch.tensor([[True, False, False], [True, True, True]]))
    answers = llava.generate_batch(batch, graph, max_new_tokens=3)
    assert isinstance(answers, list) and len(answers) == 2 and all(isinstance(a, str) for a in answers)
    # generate is greedy decoding continued from the injected sequence
    inj = llava.build_inputs_embeds(batch.input_ids, batch.pixel_values, graph, batch.attention_mask)
    embeds, mask, lm, steps = inj.inputs_embeds, inj.attention_mask, llava.model, []
    with torch.no_grad():
        for _ in range(3):
            pos = (mask.cumsum(-1) - 1).clamp(min=0)
            logits = lm(inputs_embeds=embeds, attention_mask=mask, position_ids=pos).logits[:, -1]
            logits[:, [llava.kg_token_id, llava.image_token_id]] = float("-inf")
            nxt = logits.argmax(-1)
            steps.append(nxt)
            embeds = torch.cat([embeds, lm.get_input_embeddings()(nxt)[:, None]], dim=1)
            mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1)
    ids = torch.stack(steps, 1).tolist()
    eos = llava.tokenizer.eos_token_id
    expected = [llava.tokenizer.decode(r[:r.index(eos)] if eos in r else r, skip_special_tokens=True).strip()
                for r in ids]
    assert answers == expected


def test_llava_save_load_round_trip(llava, tmp_path):
    batch = llava.prepare_inputs(PROMPTS, _images(2))
    graph = _graph_for(llava)
    with torch.no_grad():
        before = llava.forward_batch(batch, graph).logits
    llava.save_pretrained(tmp_path / "adapted")
    again = LlavaKGBackbone.from_pretrained(tmp_path / "adapted")
    assert again.kg_token_id == llava.kg_token_id and len(again.tokenizer) == len(llava.tokenizer)
    with torch.no_grad():
        after = again.forward_batch(again.prepare_inputs(PROMPTS, _images(2)), graph).logits
    torch.testing.assert_close(after, before, rtol=0, atol=0)


def test_llava_bad_inputs(llava, llava_dir, ved_dir, tmp_path):
    with pytest.raises(FileNotFoundError, match="no such model folder"):
        LlavaKGBackbone.from_pretrained(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="expected a Hugging Face model folder with config.json"):
        LlavaKGBackbone.from_pretrained(tmp_path / "empty")
    with pytest.raises(ValueError, match=r"expected a LLaVA-style model .* found model_type 'vision-encoder-decoder'"):
        load_backbone(BackboneConfig(kind="llava", path=str(ved_dir)))
    with pytest.raises(ValueError, match="kind: expected 'llava' for this backbone, found 'vision_encoder_decoder'"):
        LlavaKGBackbone.from_pretrained(llava_dir, BackboneConfig(kind="vision_encoder_decoder", path="x"))
    with pytest.raises(ValueError, match=r"prompt 0: expected exactly one '<kg>' placeholder, found 0"):
        llava.prepare_inputs(["<image> what is it"], _images(1))
    with pytest.raises(ValueError, match=r"prompt 1: expected exactly one '<kg>' placeholder, found 2"):
        llava.prepare_inputs([PROMPTS[0], "<image> <kg> what <kg>"], _images(2))
    with pytest.raises(ValueError, match=r"expected exactly one '<image>' image placeholder, found 0"):
        llava.prepare_inputs(["what is it <kg>"], _images(1))
    with pytest.raises(ValueError, match="expected as many images as prompts .* found 1 images and 2 prompts"):
        llava.prepare_inputs(PROMPTS, _images(1))
    batch = llava.prepare_inputs(PROMPTS, _images(2))
    graph = _graph_for(llava)
    with pytest.raises(ValueError, match="expected as many images as questions .* found 1 images and 2 questions"):
        llava.forward(batch.input_ids, batch.pixel_values[:1], graph)
    no_kg = batch.input_ids.masked_fill(batch.input_ids == llava.kg_token_id, 5)
    with pytest.raises(ValueError, match=r"input_ids row 0: expected exactly one '<kg>' placeholder .* found 0"):
        llava.forward(no_kg, batch.pixel_values, graph)
    short = batch.input_ids.clone()
    short[0, (short[0] == llava.image_token_id).nonzero()[0]] = 5
    with pytest.raises(ValueError, match=f"row 0: expected {N_PATCHES} image placeholder tokens .* found {N_PATCHES - 1}"):
        llava.forward(short, batch.pixel_values, graph)
    with pytest.raises(ValueError, match=r"pixel_values: expected 32x32 images \(vision_config.image_size\), found 16x16"):
        llava.forward(batch.input_ids, batch.pixel_values[..., :16, :16], graph)
    with pytest.raises(ValueError, match="expected width hidden_size=32 .* found 7"):
        llava.forward(batch.input_ids, batch.pixel_values, _graph(torch.randn(2, T, 7)))
    with pytest.raises(ValueError, match="graph_tokens: expected a batch of 2 .* found 1"):
        llava.forward(batch.input_ids, batch.pixel_values, _graph(torch.randn(1, T, 32)))
    with pytest.raises(ValueError, match="labels: expected shape"):
        llava.forward(batch.input_ids, batch.pixel_values, graph, labels=batch.input_ids[:, 1:])
    with pytest.raises(ValueError, match="expected at least one supervised token"):
        llava.forward(batch.input_ids, batch.pixel_values, graph, labels=torch.full_like(batch.input_ids, -100),
                      attention_mask=batch.attention_mask)
    strict = LlavaKGBackbone(llava.model, llava.tokenizer, llava.image_processor, llava.processor,
                             BackboneConfig(path=str(llava_dir), max_length=4), image_token_id=llava.image_token_id,
                             kg_token_id=llava.kg_token_id)
    with pytest.raises(ValueError, match="prompt 0: expected at most max_length=4 tokens, found 8"):
        strict.prepare_inputs(PROMPTS[:1], _images(1))
    with pytest.raises(ValueError, match="question 0: expected at most max_length=4 tokens, found 8"):
        strict.forward(batch.input_ids[:1], batch.pixel_values[:1], _graph_for(llava, b=1))


# --------------------------------------------------------------------------- VisionEncoderDecoder


def test_ved_memory_holds_patches_then_graph(ved):
    assert ved.encoder_hidden_size == 24 and ved.hidden_size == 32
    batch = ved.prepare_inputs(["what is it used for", "what color <kg> is it"], _images(2), answers=ANSWERS)
    mask = torch.tensor([[True, False, False], [True, True, True]])
    graph = _graph_for(ved, mask=mask)
    memory, memory_mask, positions = ved.build_encoder_memory(batch.pixel_values, graph)
    P = N_PATCHES + 1  # ViT keeps its CLS token
    assert memory.shape == (2, P + T, 32) and memory_mask.shape == (2, P + T)
    assert memory_mask[0].tolist() == [1] * P + [1, 0, 0] and memory_mask[1].sum() == P + T
    assert positions.tolist() == [list(range(P, P + T))] * 2
    torch.testing.assert_close(memory[:, P:], ved.model.enc_to_dec_proj(graph.tokens))
    # the <kg> placeholder is dropped from a VED question; labels only on the answer
    assert ved.tokenizer.unk_token_id not in batch.input_ids[1].tolist()
    tok = ved.tokenizer
    assert batch.labels[0][batch.labels[0] != -100].tolist() == [tok.convert_tokens_to_ids("eating"), tok.eos_token_id]


def test_ved_forward_loss_gradients_and_graph_effect(ved):
    batch = ved.prepare_inputs(["what is it used for", "what color is it"], _images(2), answers=ANSWERS)
    proj = torch.nn.Linear(NODE_DIM, ved.encoder_hidden_size)
    nodes = torch.randn(2, T, NODE_DIM)
    mask = torch.tensor([[True, True, False], [True, True, True]])
    out = ved.forward_batch(batch, _graph(proj(nodes), mask))
    assert out.loss.dim() == 0 and torch.isfinite(out.loss)
    assert out.logits.shape == (*batch.input_ids.shape, len(ved.tokenizer))
    assert out.hidden_states_last.shape == (*batch.input_ids.shape, 32)
    out.loss.backward()
    assert proj.weight.grad is not None and proj.weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in ved.parameters())
    with torch.no_grad():
        base = proj(nodes)
        changed = base.clone()
        changed[0, 0] += 1.0
        masked = base.clone()
        masked[0, 2] = 100.0
        a = ved.forward_batch(batch, _graph(base, mask)).logits
        b = ved.forward_batch(batch, _graph(changed, mask)).logits
        c = ved.forward_batch(batch, _graph(masked, mask)).logits
    assert not torch.allclose(a[0], b[0])
    torch.testing.assert_close(a[1], b[1])
    torch.testing.assert_close(a, c, rtol=1e-5, atol=1e-5)  # the masked graph token is not read
    # labels alone: decoder inputs are the labels shifted right
    labels = torch.tensor([[7, 8, 3]])
    out2 = ved.forward(batch.pixel_values[:1], _graph(base[:1]), labels=labels)
    assert torch.isfinite(out2.loss)


def test_ved_generate_and_round_trip(ved, tmp_path):
    images = _images(2)
    graph = _graph_for(ved)
    batch = ved.prepare_inputs(["what is it used for", "what color"], images)
    answers = ved.generate_batch(batch, graph, max_new_tokens=3)
    assert len(answers) == 2 and all(isinstance(a, str) for a in answers)
    plain = ved.generate(batch.pixel_values, graph, max_new_tokens=2)
    assert len(plain) == 2 and all(isinstance(a, str) for a in plain)
    with torch.no_grad():
        before = ved.forward_batch(batch, graph).logits
    ved.save_pretrained(tmp_path / "ved2")
    again = VisionEncoderDecoderKGBackbone.from_pretrained(tmp_path / "ved2")
    with torch.no_grad():
        after = again.forward_batch(again.prepare_inputs(["what is it used for", "what color"], images), graph).logits
    torch.testing.assert_close(after, before, rtol=0, atol=0)


def test_ved_bad_inputs(ved, ved_dir, llava_dir, tmp_path):
    with pytest.raises(FileNotFoundError, match="no such model folder"):
        load_backbone(BackboneConfig(kind="vision_encoder_decoder", path=str(tmp_path / "nope")))
    with pytest.raises(ValueError, match="expected model_type 'vision-encoder-decoder', found 'llava'"):
        VisionEncoderDecoderKGBackbone.from_pretrained(llava_dir)
    with pytest.raises(ValueError, match="expected as many images as questions .* found 3 images and 2 questions"):
        ved.prepare_inputs(["what", "what is it"], _images(3))
    batch = ved.prepare_inputs(["what", "what is it"], _images(2))
    with pytest.raises(ValueError, match="expected width encoder_hidden_size=24 .* found 32"):
        ved.forward_batch(batch, _graph(torch.randn(2, T, 32)))
    with pytest.raises(ValueError, match="expected as many images as questions .* found 1 images and 2 questions"):
        ved.forward(batch.pixel_values[:1], _graph_for(ved), decoder_input_ids=batch.input_ids)
    with pytest.raises(ValueError, match="expected decoder_input_ids or labels"):
        ved.forward(batch.pixel_values, _graph_for(ved))
    strict = VisionEncoderDecoderKGBackbone(ved.model, ved.tokenizer, ved.image_processor, ved.processor,
                                            BackboneConfig(kind="vision_encoder_decoder", path=str(ved_dir),
                                                           max_length=3))
    with pytest.raises(ValueError, match="question 1: expected at most max_length=3 tokens, found 4"):
        strict.prepare_inputs(["what", "what is it"], _images(2))
    with pytest.raises(TypeError, match="expected a ravlm_graph.fusion.GraphTokens"):
        ved.forward_batch(batch, torch.randn(2, T, 24))


def _greedy_ved(bb, batch, graph, steps):
    """Reference: greedy decoding by repeated full forwards (no cache)."""
    ids, mask, out = batch.input_ids, batch.attention_mask, []
    with torch.no_grad():
        for _ in range(steps):
            nxt = bb.forward(batch.pixel_values, graph, decoder_input_ids=ids,
                             decoder_attention_mask=mask).logits[:, -1].argmax(-1)
            out.append(nxt)
            ids = torch.cat([ids, nxt[:, None]], dim=1)
            mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1)
    eos = bb.tokenizer.eos_token_id
    rows = torch.stack(out, 1).tolist()
    return [bb.tokenizer.decode(r[:r.index(eos)] if eos in r else r, skip_special_tokens=True).strip() for r in rows]


def test_ved_generate_is_greedy_with_gpt2_and_bert_decoders(ved, tmp_path):
    from transformers import BertConfig, ViTConfig, ViTImageProcessorPil, VisionEncoderDecoderConfig, \
        VisionEncoderDecoderModel

    tok = _tokenizer(())
    enc = ViTConfig(hidden_size=24, num_hidden_layers=1, num_attention_heads=2, intermediate_size=37,
                    image_size=32, patch_size=8)
    dec = BertConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=37, is_decoder=True, add_cross_attention=True, pad_token_id=0)
    torch.manual_seed(1)
    model = VisionEncoderDecoderModel(config=VisionEncoderDecoderConfig(
        encoder=enc, decoder=dec, decoder_start_token_id=2, pad_token_id=0, eos_token_id=3))
    model.save_pretrained(tmp_path / "bert")
    tok.save_pretrained(tmp_path / "bert")
    ViTImageProcessorPil(size={"height": 32, "width": 32}).save_pretrained(tmp_path / "bert")
    bert = VisionEncoderDecoderKGBackbone.from_pretrained(tmp_path / "bert")
    mask = torch.tensor([[True, True, False], [True, True, True]])
    for bb in (ved, bert):
        batch = bb.prepare_inputs(["what is it used for", "what color"], _images(2))
        graph = _graph_for(bb, mask=mask)
        # BERT decoders need an encoder-decoder cache in generate (see VisionEncoderDecoderKGBackbone.generate)
        assert bb.generate_batch(batch, graph, max_new_tokens=4) == _greedy_ved(bb, batch, graph, 4)
