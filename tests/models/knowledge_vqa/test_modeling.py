"""The built-in model and the inference pipeline, with a tiny trunk and a 6-node KG."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from kg_ingest import GraphBuilder, RelationConfig
from ravlm_graph.utils.checkpoint import CheckpointError
from ravlm_graph.retrieval.config import RetrievalConfig
from ravlm_graph.retrieval.embeddings import NodeEmbeddings
from ravlm_graph.types import Entity
from ravlm_graph.models.knowledge_vqa.configuration import KnowledgeVQAConfig
from ravlm_graph.nn.fusion import FUSIONS
from ravlm_graph.models.knowledge_vqa.modeling import KnowledgeVQAModel, answer_distribution, fact_loss
from ravlm_graph.nn.fusion.pointer import FactScores
from ravlm_graph.engine import EngineConfig, KnowledgeVQA
from ravlm_graph.retrieval.retriever import SubgraphRetriever
from ravlm_graph.models.knowledge_vqa.processing import FeatureBuilder, collate

WORDS = ["what", "is", "the", "object", "used", "for", "?", "which", "of", "these", "can", "apple", "eating",
         "fruit", "banana", "kitchen", "market", "peel", ";", "a", "an", "yes", "no"]


from tests.fakes import HashEncoder


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from transformers import BertConfig, BertModel, BertTokenizer

    d = tmp_path_factory.mktemp("trunk")
    vocab = ["[PAD]", "[unused0]", "[unused1]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + WORDS
    (d / "vocab.txt").write_text("\n".join(vocab) + "\n")
    tok = BertTokenizer(str(d / "vocab.txt"))
    torch.manual_seed(0)
    trunk = BertModel(BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                 intermediate_size=37, max_position_embeddings=128))
    b = GraphBuilder(RelationConfig())
    for r, h, t in [("UsedFor", "apple", "eating"), ("IsA", "apple", "fruit"), ("IsA", "banana", "fruit"),
                    ("AtLocation", "fruit", "market"), ("RelatedTo", "kitchen", "apple"), ("HasA", "banana", "peel")]:
        b.add(r, h, t)
    kg = b.build()
    enc = HashEncoder()
    retriever = SubgraphRetriever(kg, RetrievalConfig(budget=6), embeddings=NodeEmbeddings(kg, enc), encoder=enc)
    return tok, trunk, kg, retriever


def make_model(tiny, fusion="graph_tokens", vocab=("yes", "no", "fruit"), **extra):
    tok, trunk, kg, _ = tiny
    cfg = KnowledgeVQAConfig(**{"answer_vocab": list(vocab), "fusion": fusion, "gnn_hidden": 32, "gnn_layers": 1,
                                "node_dim": 16, "num_relations": kg.num_relations, "num_graph_tokens": 4,
                                "image_size": 16, "vision_channels": [8, 16], "vision_grid": 2,
                                "train_text_layers": 1, "max_question_tokens": 16, "max_text_tokens": 64,
                                "dropout": 0.0, **extra})
    torch.manual_seed(0)
    return KnowledgeVQAModel(cfg, trunk=trunk, tokenizer=tok)


def image():
    return Image.new("RGB", (16, 16), (200, 30, 30))


def examples(tiny, model, answers=("eating",)):
    fb = FeatureBuilder(model.config, model.tokenizer, tiny[3] if model.config.uses_graph else None)
    ents = [Entity("apple", 1.0, "image", box=(0, 0, 8, 16)), Entity("banana", 1.0, "image", box=(8, 0, 16, 16))]
    return [fb.build(image(), "what is the object used for?", ents, answers),
            fb.build(image(), "which of these can peel?", ents[1:], ("banana",))]


@pytest.mark.parametrize("fusion", FUSIONS.names())
def test_forward_every_fusion(tiny, fusion):
    m = make_model(tiny, fusion)
    exs = examples(tiny, m)
    b = collate(exs, m.config)
    out = m(b)
    assert out.vocab_logits.shape == (2, 3) and torch.isfinite(out.loss)
    out.loss.backward()
    if fusion == "none":
        assert out.pointer_logits is None and float(out.copy_prob.abs().sum()) == 0.0
    else:
        assert out.pointer_logits.shape[0] == 2 and bool(out.node_mask.any())
        assert exs[0].node_targets, "the answer node must be in the subgraph"
    kind = FUSIONS.get(fusion)
    assert hasattr(m, "gnn") == kind.uses_gnn
    if kind.uses_gnn:
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in m.gnn.parameters())
    # what the text holds is asked of the kind
    assert (m.kg_id in exs[0].input_ids) == kind.graph_placeholder
    assert (m.img_id in exs[0].input_ids) == kind.image_in_trunk
    assert any(p.grad is not None for p in m.fusion.parameters()) or not list(m.fusion.parameters())


def test_seed_relation_keys_and_verify_head(tiny):
    m = make_model(tiny, seed_relation_keys=True, verify_head=True)
    exs = examples(tiny, m, answers=("yes",))
    b = collate(exs, m.config)
    links = m._seed_links(b.graph, 2, b.node_target_dense.shape[1])
    i = exs[0].node_names.index("eating")  # linked to the seed apple by UsedFor
    assert links[0, i].abs().sum() > 0
    out = m(b)
    out.loss.backward()
    assert m.verify_scale.grad is not None and m.seed_rel_emb.weight.grad.abs().sum() > 0
    # The verification bonus moves only the "yes" logit.
    m.eval()
    with torch.no_grad():
        before = m(b).vocab_logits
        m.verify_scale.data.fill_(2.0)
        after = m(b).vocab_logits
    changed = (after - before).abs().sum(0) > 0
    assert changed.tolist() == [True, False, False]  # vocabulary: yes, no, fruit


def test_fact_scorer_support_targets_and_training(tiny, tmp_path):
    m = make_model(tiny, fact_scorer=True)
    fb = FeatureBuilder(m.config, m.tokenizer, tiny[3])
    ents = [Entity("apple", 1.0, "image"), Entity("banana", 1.0, "image")]
    ex = fb.build(image(), "what is the object used for?", ents, ("eating",), fact=("apple", "UsedFor", "eating"))
    kg = tiny[2]
    assert ex.support == (ex.node_names.index("apple"), ex.node_names.index("eating"), kg.relation_id("UsedFor"), 1)
    ex2 = fb.build(image(), "which of these can peel?", ents, ("banana",), fact=("banana", "NoSuchRelation", "peel"))
    assert ex2.support == (ex2.node_names.index("banana"), ex2.node_names.index("peel"), -1, 0)
    assert fb.build(image(), "what is the object used for?", ents, ("eating",)).support == (-1, -1, -1, -1)
    b = collate([ex, ex2], m.config)
    assert b.support_target.tolist() == [list(ex.support), list(ex2.support)]
    assert collate([ex, ex2], m.config, with_targets=False).support_target is None
    assert collate([ex, ex2], make_model(tiny).config).support_target is None  # no fact scorer, no targets
    out = m(b)
    assert isinstance(out.facts, FactScores) and out.facts.relation_logits.shape == (2, m.config.num_relations)
    # the fact scores reach the pointer: with the scorer's side bias moved, the pointer logits move
    with torch.no_grad():
        m.eval()
        before = m(b).pointer_logits
        m.fact_scorer.side.bias.add_(torch.tensor([0.0, 3.0]))
        after = m(b).pointer_logits
        m.fact_scorer.side.bias.sub_(torch.tensor([0.0, 3.0]))
    assert not torch.allclose(before[torch.isfinite(before)], after[torch.isfinite(after)])
    # the auxiliary losses are part of the loss, and training on them finds the gold fact
    m.train()
    plain = m.config.replace(fact_loss_weight=0.0)
    m.config = plain
    l0 = float(m(b).loss.detach())
    m.config = plain.replace(fact_loss_weight=0.5)
    assert float(m(b).loss.detach()) > l0
    opt = torch.optim.Adam([p for p in m.parameters() if p.requires_grad], lr=3e-3)
    for _ in range(40):
        out = m(b)
        opt.zero_grad()
        out.loss.backward()
        opt.step()
    m.eval()
    with torch.no_grad():
        f = m(b).facts
    ptr = [0, len(ex.node_names)]
    first = f.fact_graph == 0
    best = int(f.edge_logits.masked_fill(~first, float("-inf")).argmax())
    assert {int(f.fact_seed[best]), int(f.fact_other[best])} == {ex.support[0] + ptr[0], ex.support[1] + ptr[0]}
    assert f.side_logits.argmax(-1).tolist() == [1, 0]
    # saved and loaded with its fact scorer; old configs (without the option) build none
    m.save_pretrained(tmp_path / "m")
    m2 = KnowledgeVQAModel.from_pretrained(tmp_path / "m", trunk=tiny[1], tokenizer=tiny[0])
    assert m2.config.fact_scorer and torch.equal(m2.fact_scorer.rel.weight, m.fact_scorer.rel.weight)
    assert not hasattr(make_model(tiny), "fact_scorer")


def test_fact_features_are_the_question_similarity_and_the_named_concepts(tiny):
    m = make_model(tiny, fact_scorer=True, fact_features=True)
    exs = examples(tiny, m)
    ex = exs[0]
    qv = tiny[3].embed_question("what is the object used for?")
    np.testing.assert_allclose(ex.question_sim, ex.node_x.astype(np.float32) @ qv, rtol=1e-5, atol=1e-6)
    assert examples(tiny, make_model(tiny, fact_scorer=True))[0].question_sim is None  # computed only when read
    b = collate(exs, m.config, with_targets=False)
    assert b.node_question_sim.shape == (len(exs[0].node_names) + len(exs[1].node_names),)
    m.eval()
    with torch.no_grad():
        base = m(b).pointer_logits
        m.fact_scorer.feat_direct.weight.fill_(1.0)
        moved = m(b).pointer_logits
    assert not torch.equal(base, moved)
    with pytest.raises(ValueError, match="fact_features: the fact scorer's node features need fact_scorer=True"):
        make_model(tiny, fact_features=True)


def test_fact_loss_by_hand():
    """One example, three facts; the second joins the gold ends by the gold relation (walked backwards)."""
    R = 4
    facts = FactScores(edge_logits=torch.tensor([1.0, 2.0, 0.5]), fact_seed=torch.tensor([0, 0, 0]),
                       fact_other=torch.tensor([1, 2, 2]), fact_relation=torch.tensor([1, 3 + R, 1]),
                       fact_graph=torch.tensor([0, 0, 0]), node_logits=torch.zeros(3),
                       side_logits=torch.tensor([[0.0, 1.0]]), relation_logits=torch.tensor([[0.0, 0.0, 0.0, 2.0]]))
    support = torch.tensor([[2, 0, 3, 1]])  # visual end 2, other end 0: the fact is stored 0 -> 2 or 2 -> 0
    got = fact_loss(facts, support, torch.zeros(3, dtype=torch.long), 1)
    want = (torch.nn.functional.cross_entropy(facts.relation_logits, torch.tensor([3]))
            + torch.nn.functional.cross_entropy(facts.side_logits, torch.tensor([1]))
            - torch.log_softmax(facts.edge_logits, 0)[1])
    torch.testing.assert_close(got, want)
    # unknown relation: any fact joining the two ends is gold; unknown ends: no fact term
    got = fact_loss(facts, torch.tensor([[2, 0, -1, -1]]), torch.zeros(3, dtype=torch.long), 1)
    torch.testing.assert_close(got, -torch.log(torch.softmax(facts.edge_logits, 0)[1:].sum()))
    assert float(fact_loss(facts, torch.tensor([[-1, -1, -1, -1]]), torch.zeros(3, dtype=torch.long), 1)) == 0.0


def test_graph_tokens_carry_entity_origin_and_boxes(tiny):
    m = make_model(tiny)
    ex = examples(tiny, m)[0]
    i = ex.node_names.index("apple")
    assert ex.origin[i] in (2, 3)  # image (or image + question)
    assert ex.box[i].tolist() == pytest.approx([0.25, 0.5, 0.5, 1.0, 1.0])
    assert ex.input_ids.count(m.kg_id) == 1 and ex.input_ids.count(m.img_id) == 1


def test_copies_an_answer_never_in_the_vocabulary(tiny):
    """'eating' is not an answer of the vocabulary; only the pointer over graph nodes can give it."""
    m = make_model(tiny, vocab=("yes", "no", "fruit"))
    exs = examples(tiny, m)
    assert "eating" not in m.config.answer_vocab
    opt = torch.optim.Adam([p for p in m.parameters() if p.requires_grad], lr=3e-3)
    m.train()
    for _ in range(60):
        out = m(collate(exs, m.config))
        opt.zero_grad()
        out.loss.backward()
        opt.step()
    m.eval()
    b = collate(exs, m.config, with_targets=False)
    with torch.no_grad():
        d = answer_distribution(m(b), m.config.answer_vocab, b.node_names)
    assert max(d[0], key=d[0].get) == "eating"
    assert max(d[1], key=d[1].get) == "banana"


def test_save_load_round_trip_and_bad_checkpoints(tiny, tmp_path):
    tok, trunk, _, _ = tiny
    m = make_model(tiny)
    m.eval()
    m.save_pretrained(tmp_path / "ck")
    m2 = KnowledgeVQAModel.from_pretrained(tmp_path / "ck", trunk=trunk, tokenizer=tok)
    b = collate(examples(tiny, m), m.config, with_targets=False)
    with torch.no_grad():
        assert torch.equal(m(b).vocab_logits, m2(b).vocab_logits)
    cfg = json.loads((tmp_path / "ck" / "config.json").read_text())
    cfg["format_version"] = 99
    (tmp_path / "ck" / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match="format version 99"):
        KnowledgeVQAModel.from_pretrained(tmp_path / "ck", trunk=trunk, tokenizer=tok)
    m.save_pretrained(tmp_path / "ck2")
    cfg = json.loads((tmp_path / "ck2" / "config.json").read_text())
    cfg["answer_vocab"] = ["yes", "no", "fruit", "extra"]
    (tmp_path / "ck2" / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match="shape mismatch for vocab_head"):
        KnowledgeVQAModel.from_pretrained(tmp_path / "ck2", trunk=trunk, tokenizer=tok)
    (tmp_path / "ck2" / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match="missing model.safetensors"):
        KnowledgeVQAModel.from_pretrained(tmp_path / "ck2", trunk=trunk, tokenizer=tok)
    with pytest.raises(ValueError, match="fusion: expected one of"):
        KnowledgeVQAConfig(fusion="magic")


def test_pipeline_answers_with_evidence(tiny):
    _, _, kg, retriever = tiny
    m = make_model(tiny)
    engine = KnowledgeVQA(m, EngineConfig(kg="unused", retrieval=retriever.config, detector=None), kg=kg,
                          retriever=retriever)
    ents = [Entity("apple", 0.9, "image", box=(0, 0, 8, 16))]
    a = engine.answer(image(), "what is the object used for?", entities=ents)
    d = a.to_dict()
    assert {"answer", "entities", "facts", "subgraph_size"} <= set(d)
    assert d["subgraph_size"] == a.subgraph.num_nodes > 0
    assert {"concept": "apple", "origin": "image", "score": 0.9, "box": [0, 0, 8, 16], "label": None,
            "referred": True} in d["entities"]  # "the object": the one image entity
    assert abs(sum(p for _, p in a.candidates) - 1.0) < 1.0  # a probability distribution's top entries
    assert a.facts and all(isinstance(f, str) for f in a.facts)
    with pytest.raises(ValueError, match="2 images but 1 questions"):
        engine.answer_batch([image(), image()], ["what?"], [[], []])
    with pytest.raises(ValueError, match="question 0 is empty"):
        engine.answer(image(), "  ", entities=ents)
    with pytest.raises(ValueError, match="the model takes at most 16"):
        engine.answer(image(), "what " * 40, entities=ents)
    # Without a detector and without entities, only the question is grounded.
    q_only = engine.answer(image(), "which of these can peel?")
    assert all(e.origin == "question" for e in q_only.entities)
    assert "peel" in [e.concept for e in q_only.entities]
    empty = engine.answer(image(), "what is the object used for?")  # no concept of the KG in it
    assert empty.subgraph_size == 0 and empty.subgraph.reason and empty.copy_prob == 0.0


def test_seed_link_mlp_keys_depend_on_where_the_seed_is(tiny):
    m = make_model(tiny, seed_relation_keys=True, seed_link_mlp=True)
    fb = FeatureBuilder(m.config, m.tokenizer, tiny[3])
    q = "what is the object used for?"
    left = fb.build(image(), q, [Entity("apple", 1.0, "image", box=(0, 0, 8, 16))], ("eating",))
    right = fb.build(image(), q, [Entity("apple", 1.0, "image", box=(8, 0, 16, 16))], ("eating",))
    b = collate([left, right], m.config)
    links = m._seed_links(b.graph, 2, b.node_target_dense.shape[1])
    i, j = left.node_names.index("eating"), right.node_names.index("eating")
    assert not torch.allclose(links[0, i], links[1, j])  # same relation, other position
    m(b).loss.backward()
    assert m.seed_link[0].weight.grad.abs().sum() > 0 and m.seed_pos[0].weight.grad.abs().sum() > 0
    assert not hasattr(make_model(tiny, seed_relation_keys=True), "seed_link")


def test_scratch_trunk_is_reinitialised_fully_trained_and_saved(tiny, tmp_path):
    import copy

    tok, trunk, kg, retriever = tiny
    with pytest.raises(ValueError, match="trunk_init"):
        KnowledgeVQAConfig(trunk_init="random")
    own = copy.deepcopy(trunk)
    torch.manual_seed(1)
    m = KnowledgeVQAModel(KnowledgeVQAConfig(**{**make_model(tiny).config.to_dict(), "trunk_init": "scratch"}),
                          trunk=own, tokenizer=tok)
    w0 = trunk.embeddings.word_embeddings.weight
    assert not torch.allclose(m.trunk.embeddings.word_embeddings.weight, w0)
    assert all(p.requires_grad for p in m.trunk.parameters())
    m.eval()
    m.save_pretrained(tmp_path / "ck")
    # Loading starts again from the pretrained trunk; the saved trunk weights must replace it.
    m2 = KnowledgeVQAModel.from_pretrained(tmp_path / "ck", trunk=copy.deepcopy(trunk), tokenizer=tok)
    b = collate(examples(tiny, m), m.config, with_targets=False)
    with torch.no_grad():
        assert torch.equal(m(b).vocab_logits, m2(b).vocab_logits)


def test_entity_text_puts_the_image_entities_and_their_places_in_the_text(tiny):
    from ravlm_graph.models.knowledge_vqa.processing import entity_phrase, position_words

    assert position_words((0, 0, 10, 10), 100, 100) == "top left"
    assert position_words((40, 0, 60, 100), 100, 100) == "middle"
    assert position_words((70, 40, 100, 60), 100, 100) == "right"
    assert position_words((0, 70, 100, 100), 100, 100) == "bottom"
    ents = [Entity("apple", 1.0, "image", box=(0, 0, 8, 16)), Entity("banana", 1.0, "image"),
            Entity("fruit", 1.0, "question")]
    assert entity_phrase(ents, 16, 16) == "left : apple ; banana ;"
    plain = make_model(tiny)
    with_text = make_model(tiny, entity_text=True)
    a, b = examples(tiny, plain)[0], examples(tiny, with_text)[0]
    ids = with_text.tokenizer.convert_tokens_to_ids(["apple", "banana"])
    assert all(i in b.input_ids for i in ids) and not any(i in a.input_ids for i in ids)
    assert len(b.input_ids) > len(a.input_ids)
    out = with_text(collate([b], with_text.config))
    assert torch.isfinite(out.loss)


def test_xattn_reads_graph_tokens_through_gated_adapters(tiny):
    import copy

    tok, trunk, _, _ = tiny
    cfg = make_model(tiny, fusion="xattn").config
    m = KnowledgeVQAModel(cfg, trunk=copy.deepcopy(trunk), tokenizer=tok)  # own trunk: hooks stay on it
    m.eval()
    exs = examples(tiny, m)
    assert m.kg_id not in exs[0].input_ids  # no <kg> placeholder: graph tokens go through the adapters
    b = collate(exs, m.config)
    with torch.no_grad():
        at_init = m(b).vocab_logits
        m.fusion.adapters[0].attn_gate.data.fill_(0.5)
        opened = m(b).vocab_logits
        m.fusion.adapters[0].attn_gate.data.fill_(0.0)
    # An opened gate lets the graph tokens change the answer (at 0 each adapter is the
    # identity, see tests/test_fusion.py).
    ids = b.input_ids
    assert not torch.allclose(at_init, opened)
    m.train()
    out = m(b)
    out.loss.backward()
    assert m.fusion.adapters[0].attn_gate.grad is not None and m.fusion.adapters[-1].ff_gate.grad is not None
    assert m.fusion._memory is None  # cleared after each forward pass
    # Outside the model's forward, the hooked trunk behaves as before.
    m.eval()
    trunk.eval()
    with torch.no_grad():
        emb = m.trunk.get_input_embeddings()(ids)
        h1 = m.trunk(inputs_embeds=emb).last_hidden_state
        h2 = trunk(inputs_embeds=emb).last_hidden_state
    assert torch.allclose(h1, h2, atol=1e-5)


def test_format_1_checkpoints_still_load(tiny, tmp_path):
    """Format 1 kept the fusion weights at the top (projector., xattn., classic.); they move under fusion."""
    import copy

    from safetensors.torch import load_file, save_file

    tok, trunk, _, _ = tiny
    for fusion, old in (("graph_tokens", "projector."), ("xattn", "xattn."), ("concat", "classic.")):
        m = KnowledgeVQAModel(make_model(tiny, fusion).config, trunk=copy.deepcopy(trunk), tokenizer=tok).eval()
        m.save_pretrained(tmp_path / fusion)
        f = tmp_path / fusion / "model.safetensors"
        new = {"fusion.projector.": "projector.", "fusion.adapters.": "xattn.", "fusion.combine.": "classic."}
        state = {}
        for k, v in load_file(str(f)).items():
            for a, b in new.items():
                if k.startswith(a):
                    k = b + k[len(a):]
            state[k] = v
        assert any(k.startswith(old) for k in state)
        save_file(state, str(f))
        cfg = json.loads((tmp_path / fusion / "config.json").read_text())
        cfg["format_version"] = 1
        (tmp_path / fusion / "config.json").write_text(json.dumps(cfg))
        m2 = KnowledgeVQAModel.from_pretrained(tmp_path / fusion, trunk=copy.deepcopy(trunk), tokenizer=tok)
        b = collate(examples(tiny, m), m.config, with_targets=False)
        with torch.no_grad():
            assert torch.equal(m(b).vocab_logits, m2(b).vocab_logits), fusion


def test_config_values_are_range_checked_before_anything_is_built(tiny, tmp_path):
    tok, trunk, _, _ = tiny
    with pytest.raises(ValueError, match=r"KnowledgeVQAConfig.gnn_hidden: expected an integer <= 16384, found 1000000"):
        KnowledgeVQAConfig(gnn_hidden=1000000)
    m = make_model(tiny)
    m.save_pretrained(tmp_path / "ck")
    cfg = json.loads((tmp_path / "ck" / "config.json").read_text())
    cfg["gnn_hidden"] = 1000000
    (tmp_path / "ck" / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match=r"ck/config.json: KnowledgeVQAConfig.gnn_hidden: expected an integer "
                                              r"<= 16384, found 1000000"):
        KnowledgeVQAModel.from_pretrained(tmp_path / "ck", trunk=trunk, tokenizer=tok)


def test_weights_stored_with_another_dtype_are_refused(tiny, tmp_path):
    from safetensors.torch import load_file, save_file

    tok, trunk, _, _ = tiny
    make_model(tiny).save_pretrained(tmp_path / "ck")
    f = tmp_path / "ck" / "model.safetensors"
    state = load_file(str(f))
    state["vocab_head.weight"] = state["vocab_head.weight"].to(torch.int32)
    save_file(state, str(f))
    with pytest.raises(CheckpointError, match=r"dtype mismatch for vocab_head.weight: checkpoint I32"):
        KnowledgeVQAModel.from_pretrained(tmp_path / "ck", trunk=trunk, tokenizer=tok)


def test_a_text_backbone_with_pickled_weights_is_refused(tmp_path):
    from ravlm_graph.models.knowledge_vqa.modeling import load_text_backbone

    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "pytorch_model.bin").write_bytes(b"\x80\x04not run")
    with pytest.raises(CheckpointError, match=r"refusing pickled weights \['pytorch_model.bin'\] in this text "
                                              r"backbone folder"):
        load_text_backbone(str(tmp_path))
    (tmp_path / "pytorch_model.bin").unlink()
    with pytest.raises(CheckpointError, match=r"expected the weights as model.safetensors"):
        load_text_backbone(str(tmp_path))


def test_engine_folders_of_format_1_load_and_the_budget_is_the_retrieval_budget(tiny, tmp_path, monkeypatch):
    from ravlm_graph.engine import read_engine_config

    _, _, kg, retriever = tiny
    m = make_model(tiny)
    engine = KnowledgeVQA(m, EngineConfig(kg="unused", retrieval=retriever.config, detector=None), kg=kg,
                          retriever=retriever)
    engine.save_pretrained(tmp_path / "e")
    saved = json.loads((tmp_path / "e" / "engine.json").read_text())
    assert saved["format_version"] == 2 and "budget" not in saved and saved["retrieval"]["budget"] == 6
    # format 1: a top-level budget that overrode retrieval.budget
    old = dict(saved, format_version=1, budget=3, retrieval=dict(saved["retrieval"], budget=200))
    (tmp_path / "e" / "engine.json").write_text(json.dumps(old))
    ecfg = read_engine_config(tmp_path / "e" / "engine.json")
    assert ecfg.retrieval.budget == 3 and ecfg.budget == 3
    (tmp_path / "e" / "engine.json").write_text(json.dumps(dict(saved, format_version=7)))
    with pytest.raises(CheckpointError, match=r"engine format version 7; this version of ravlm_graph reads 2"):
        read_engine_config(tmp_path / "e" / "engine.json")
    # the VQA path honours the retrieval budget
    small = SubgraphRetriever(kg, RetrievalConfig(budget=2), embeddings=retriever.embeddings,
                              encoder=retriever.encoder)
    e2 = KnowledgeVQA(m, EngineConfig(kg="unused", retrieval=small.config, detector=None), kg=kg, retriever=small)
    a = e2.answer(image(), "what is the object used for?", entities=[Entity("apple", 1.0, "image")])
    assert a.subgraph_size == 2
    with pytest.raises(ValueError, match="the retriever's config differs from engine_config.retrieval"):
        KnowledgeVQA(m, EngineConfig(kg="unused", detector=None), kg=kg, retriever=small)


def test_pretrained_vision_encoder_is_frozen_imagenet_and_not_saved(tiny, tmp_path):
    """``vision_encoder="efficientnet_lite0"``: the packaged ImageNet network reads the image,
    frozen (eval mode even while the model trains, no gradient), only its projection trains,
    and its weights are read from the package again on load instead of being saved."""
    from safetensors import safe_open

    from ravlm_graph.grounding.vision.efficientnet_lite import load_efficientnet_lite0
    from ravlm_graph.models.knowledge_vqa.modeling import PretrainedSceneEncoder

    tok, trunk, _, _ = tiny
    with pytest.raises(ValueError, match="vision_encoder: expected one of"):
        KnowledgeVQAConfig(vision_encoder="resnet")
    with pytest.raises(ValueError, match="too small for EfficientNet-lite0"):
        KnowledgeVQAConfig(vision_encoder="efficientnet_lite0", image_size=16)
    m = make_model(tiny, vision_encoder="efficientnet_lite0", image_size=64)
    assert isinstance(m.vision, PretrainedSceneEncoder)
    ref = load_efficientnet_lite0(classifier=False)
    probe = torch.rand(2, 3, 64, 64) * 4 - 2
    with torch.no_grad():  # the packaged network, its batch norms folded into the convolutions
        assert torch.allclose(m.vision.backbone.forward_features(probe), ref.forward_features(probe), atol=1e-4)
    assert not any(isinstance(x, torch.nn.BatchNorm2d) for x in m.vision.backbone.modules())
    assert not any(p.requires_grad for p in m.vision.backbone.parameters())
    m.train()
    assert not m.vision.backbone.training and m.vision.proj.training
    exs = examples(tiny, m)
    b = collate(exs, m.config)
    assert b.pixel_values.shape[-1] == 64
    out = m(b)
    out.loss.backward()
    assert m.vision.proj.weight.grad is not None and m.vision.proj.weight.grad.abs().sum() > 0
    frozen = [p.clone() for p in m.vision.backbone.parameters()]
    torch.optim.SGD([p for p in m.parameters() if p.requires_grad], lr=0.1).step()
    assert all(torch.equal(a, p) for a, p in zip(frozen, m.vision.backbone.parameters()))
    # Different images give different tokens (the network does read them).
    px = torch.stack([torch.zeros(3, 64, 64), torch.ones(3, 64, 64)])
    with torch.no_grad():
        t = m.vision(px)
    assert t.shape == (2, 4, m.dim) and not torch.allclose(t[0], t[1])
    m.eval()
    m.save_pretrained(tmp_path / "ck")
    with safe_open(str(tmp_path / "ck" / "model.safetensors"), "pt") as f:
        keys = list(f.keys())
    assert "vision.proj.weight" in keys and not any(k.startswith("vision.backbone.") for k in keys)
    m2 = KnowledgeVQAModel.from_pretrained(tmp_path / "ck", trunk=trunk, tokenizer=tok)
    b = collate(exs, m.config, with_targets=False)
    with torch.no_grad():
        assert torch.equal(m(b).vocab_logits, m2(b).vocab_logits)


def test_engine_runs_the_shared_image_network_once_for_detector_and_model(tiny, monkeypatch):
    """A cell-network detector over the frozen EfficientNet-lite0 (``backbone``) and a model whose
    image encoder is the same network at the same size share one copy and one pass per batch;
    the answers are those of the unshared path (the detector and the model each running it)."""
    from ravlm_graph.grounding.detectors.cellnet import CellNet, CellNetConfig
    from ravlm_graph.grounding.detectors.layout import NONE, LayoutCellDetector, default_layouts
    from ravlm_graph.grounding.vision.efficientnet_lite import EfficientNetLite

    _, _, kg, retriever = tiny
    m = make_model(tiny, vision_encoder="efficientnet_lite0", image_size=64).eval()
    net = CellNet(CellNetConfig(concepts=("apple", "banana", NONE), layouts=default_layouts(), image_size=64,
                                channels=(4, 4, 8, 8), hidden=8, backbone="efficientnet_lite0"), seed=1)
    det = LayoutCellDetector(net, min_score=0.0, layout_choice="head")
    own = det.backbone
    det.prepare_for_inference()
    engine = KnowledgeVQA(m, EngineConfig(kg="unused", retrieval=retriever.config, detector=None), kg=kg,
                          retriever=retriever, detector=det)
    assert engine._shared_vision and det.backbone is m.vision.backbone and det.backbone is not own
    assert net._inference_model.backbone is m.vision.backbone
    calls = []
    for name in ("forward_maps", "forward_features"):
        orig = getattr(EfficientNetLite, name)
        monkeypatch.setattr(EfficientNetLite, name,
                            lambda self, *a, _o=orig, _n=name, **k: calls.append(_n) or _o(self, *a, **k))
    ims = [Image.new("RGB", (80, 64), (200, 30, 30)), Image.new("RGB", (64, 64), (240, 220, 40))]
    qs = ["what is the object used for?", "is the thing a fruit?"]
    shared = engine.answer_batch(ims, qs)
    assert calls == ["forward_maps"]
    seen = [{e.concept for e in a.entities if e.origin == "image"} for a in shared]
    assert all(s and s <= {"apple", "banana"} for s in seen)
    calls.clear()
    engine._shared_vision = False
    alone = engine.answer_batch(ims, qs)
    assert calls == ["forward_maps", "forward_features"]  # the detector's pass, then the model's
    for a, b in zip(shared, alone):
        assert a.answer == b.answer and [e.concept for e in a.entities] == [e.concept for e in b.entities]
        assert a.score == pytest.approx(b.score, abs=1e-5)
    # a detector swapped in afterwards is run on its own
    engine._shared_vision = True
    engine.detector = LayoutCellDetector(CellNet(CellNetConfig(concepts=("apple", "banana", NONE),
                                                               layouts=default_layouts(), image_size=64,
                                                               channels=(4, 4, 8, 8), hidden=8), seed=1))
    calls.clear()
    assert len(engine.answer_batch(ims, qs)) == 2 and calls == ["forward_features"]
    # not shared: another image size, or a detector without the network
    m2 = make_model(tiny, vision_encoder="efficientnet_lite0", image_size=96)
    assert not KnowledgeVQA(m2, EngineConfig(kg="unused", retrieval=retriever.config, detector=None), kg=kg,
                            retriever=retriever, detector=det)._shared_vision


def test_engine_encodes_a_batchs_questions_at_once_for_retrieval(tiny, monkeypatch):
    """The engine embeds all questions of a batch in one call and hands each vector to
    retrieval, which then does not embed the question again; the answers are the same."""
    _, _, kg, retriever = tiny
    m = make_model(tiny).eval()
    engine = KnowledgeVQA(m, EngineConfig(kg="unused", retrieval=retriever.config, detector=None), kg=kg,
                          retriever=retriever)
    assert retriever.needs_question_vector
    batches, singles = [], []
    orig_batch = type(retriever).embed_questions
    monkeypatch.setattr(type(retriever), "embed_questions",
                        lambda self, qs: batches.append(list(qs)) or orig_batch(self, qs))
    monkeypatch.setattr(type(retriever), "embed_question",
                        lambda self, q: singles.append(q) or orig_batch(self, [q])[0])
    qs = ["what is the object used for?", " which of these can peel? "]
    ents = [[Entity("apple", 1.0, "image")], [Entity("banana", 1.0, "image")]]
    retriever.clear_cache()
    batched = engine.answer_batch([image(), image()], qs, ents)
    assert batches == [["what is the object used for?", "which of these can peel?"]] and singles == []
    batches.clear()
    retriever.clear_cache()
    monkeypatch.setattr(type(retriever), "needs_question_vector", property(lambda self: False))
    alone = engine.answer_batch([image(), image()], qs, ents)
    assert batches == [] and len(singles) == 2  # retrieval embedded each question itself
    for a, b in zip(batched, alone):
        assert a.answer == b.answer and a.subgraph_size == b.subgraph_size
        assert a.score == pytest.approx(b.score, abs=1e-6)


def test_a_graph_module_without_message_passing(tiny, tmp_path):
    """gnn_layers=0: node states are the projected node features (with origin and relevance);
    the model trains, saves and loads, and a negative count is refused."""
    m = make_model(tiny, gnn_layers=0, seed_relation_keys=True, verify_head=True)
    assert len(m.gnn.layers) == 0
    b = collate(examples(tiny, m), m.config)
    out = m(b)
    out.loss.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in m.gnn.input_proj.parameters())
    m.save_pretrained(tmp_path / "ck")
    tok, trunk, _, _ = tiny
    m2 = KnowledgeVQAModel.from_pretrained(tmp_path / "ck", trunk=trunk, tokenizer=tok).eval()
    m.eval()
    b = collate(examples(tiny, m), m.config, with_targets=False)
    with torch.no_grad():
        assert torch.equal(m(b).pointer_logits, m2(b).pointer_logits)
    with pytest.raises(ValueError, match=r"KnowledgeVQAConfig.gnn_layers: expected an integer >= 0, found -1"):
        KnowledgeVQAConfig(gnn_layers=-1)


def test_inference_graph_tokens_apply_in_eval_mode_and_survive_saving(tiny, tmp_path):
    """A model trained with 4 graph tokens that answers with 2: eval mode reads the first 2 of
    the same choice, training mode still 4; the setting is saved with the config."""
    m = make_model(tiny, inference_graph_tokens=2)
    b = collate(examples(tiny, m), m.config, with_targets=False)
    m.train()
    with torch.no_grad():
        torch.manual_seed(0)
        trained = m(b)
    assert trained.graph_token_nodes.shape[1] == 4
    m.eval()
    with torch.no_grad():
        few = m(b)
    assert few.graph_token_nodes.shape[1] == 2
    assert torch.equal(few.graph_token_nodes, trained.graph_token_nodes[:, :2])
    m.fusion.projector.inference_tokens = None
    with torch.no_grad():
        four = m(b)
    assert four.graph_token_nodes.shape[1] == 4
    assert not torch.allclose(four.vocab_logits, few.vocab_logits)  # the trunk did read the tokens
    m.fusion.projector.inference_tokens = 2
    m.save_pretrained(tmp_path / "m")
    m2 = KnowledgeVQAModel.from_pretrained(tmp_path / "m", trunk=tiny[1], tokenizer=tiny[0])
    assert m2.config.inference_graph_tokens == 2 and m2.fusion.projector.inference_tokens == 2
    m2.eval()
    with torch.no_grad():
        torch.testing.assert_close(m2(b).vocab_logits, few.vocab_logits)
    with pytest.raises(ValueError, match="inference_graph_tokens"):
        make_model(tiny, inference_graph_tokens=0)
