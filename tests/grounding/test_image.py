"""Image grounding: load_image's gate, label -> concept, OWL-ViT/OWLv2 and CLIP detectors
on tiny models built from configs, the trainable tagger, given entities."""

from __future__ import annotations

import io
import os
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

PIL = pytest.importorskip("PIL")
torch = pytest.importorskip("torch")
from PIL import Image  # noqa: E402

from ravlm_graph.grounding.detectors.clip import ClipTagger, ClipTaggerConfig
from ravlm_graph.grounding.detectors.given import GivenEntities
from ravlm_graph.grounding.detectors.base import ImageEntityDetector
from ravlm_graph.grounding.images import InvalidImageError, load_image
from ravlm_graph.grounding.detectors.owl import OwlDetector, OwlDetectorConfig
from ravlm_graph.grounding.detectors.tagger import TaggerConfig, TrainableTagger
from ravlm_graph.grounding.labels import map_label_to_concept
from ravlm_graph.training import TrainConfig
from ravlm_graph.training.detectors import fit_tagger
from ravlm_graph.types import Entity  # noqa: E402

VOCAB = ["dog", "traffic_light", "ice cream", "red ball"]


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    """These models are tiny: a second intra-op thread only adds spin-waiting, which on a
    busy 2-core machine makes them many times slower."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


# ---------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------


def png_bytes(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height but whose pixel data is a few bytes:
    the cheap way to present a 10,000 x 10,000 image (or a decompression bomb)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit greyscale
    idat = zlib.compress(b"\x00" * 16)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def check_entities(ents, width=None, height=None, vocab=None, boxes=True):
    assert isinstance(ents, list)
    for e in ents:
        assert isinstance(e, Entity)
        assert e.origin == "image"
        assert isinstance(e.concept, str) and e.concept
        assert 0.0 <= e.score <= 1.0
        if vocab is not None:
            assert e.concept in vocab
        if boxes:
            assert e.box is not None and len(e.box) == 4
            x0, y0, x1, y1 = e.box
            assert 0.0 <= x0 <= x1 <= width and 0.0 <= y0 <= y1 <= height, e.box
        else:
            assert e.box is None
    assert [e.score for e in ents] == sorted((e.score for e in ents), reverse=True)


def same_entities(a, b, tol=1e-4):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert x.concept == y.concept and x.label == y.label
        assert x.score == pytest.approx(y.score, abs=tol)
        if x.box is None:
            assert y.box is None
        else:
            assert np.allclose(x.box, y.box, atol=1e-3)


def rand_image(w, h, seed=0):
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))


# ---------------------------------------------------------------------------------------
# Tiny Hugging Face checkpoints, built from configs (no hub access)
# ---------------------------------------------------------------------------------------


def tiny_tokenizer(max_length=16):
    """A CLIP BPE tokenizer over single byte-level characters (no merges); special tokens get
    the highest ids, as in CLIP, so EOS-pooling by argmax finds the end token."""
    from tokenizers import pre_tokenizers
    from transformers import CLIPTokenizer

    chars = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {c: i for i, c in enumerate(chars)}
    for c in chars:
        vocab[c + "</w>"] = len(vocab)
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    return CLIPTokenizer(vocab=vocab, merges=[], model_max_length=max_length)


def build_tiny(kind: str, path: Path) -> Path:
    import transformers as tf
    from transformers.models.clip import CLIPImageProcessorPil
    from transformers.models.owlv2 import Owlv2ImageProcessorPil
    from transformers.models.owlvit import OwlViTImageProcessorPil

    positions = 16 if kind.startswith("owl") else 32  # OWL-ViT's text model has 16 positions, CLIP's 77
    tok = tiny_tokenizer(positions)
    text = dict(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                num_attention_heads=4, max_position_embeddings=positions, bos_token_id=tok.bos_token_id,
                eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    vision = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                  image_size=32, patch_size=8)
    square = {"height": 32, "width": 32}
    if kind == "owlvit":
        # OWL's class head compares text embeddings with vision features projected to the
        # text width, so projection_dim must equal the text hidden size (as in the real models).
        cfg = tf.OwlViTConfig(text_config=text, vision_config=vision, projection_dim=32)
        model_cls = tf.OwlViTForObjectDetection
        proc = tf.OwlViTProcessor(image_processor=OwlViTImageProcessorPil(size=square, crop_size=square), tokenizer=tok)
    elif kind == "owlv2":
        cfg = tf.Owlv2Config(text_config=text, vision_config=vision, projection_dim=32)
        model_cls = tf.Owlv2ForObjectDetection
        proc = tf.Owlv2Processor(image_processor=Owlv2ImageProcessorPil(size=square), tokenizer=tok)
    else:
        cfg, model_cls = tf.CLIPConfig(text_config=text, vision_config=vision, projection_dim=32), tf.CLIPModel
        proc = tf.CLIPProcessor(image_processor=CLIPImageProcessorPil(size={"shortest_edge": 32}, crop_size=square),
                                tokenizer=tok)
    torch.manual_seed(0)
    model = model_cls(cfg).eval()
    if kind.startswith("owl"):
        # A random box head throws boxes anywhere (mostly off the image); make it predict
        # the patch-grid prior, boxes a little larger than a patch so neighbours overlap.
        with torch.no_grad():
            model.box_head.dense2.weight.zero_()
            model.box_head.dense2.bias.copy_(torch.tensor([0.0, 0.0, 0.5, 0.5]))
    model.save_pretrained(path)
    proc.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def hf_dirs(tmp_path_factory):
    pytest.importorskip("transformers")
    root = tmp_path_factory.mktemp("hf")
    return {k: build_tiny(k, root / k) for k in ("owlvit", "owlv2", "clip")}


@pytest.fixture(scope="module")
def tiny_kg():
    from kg_ingest import GraphBuilder, RelationConfig

    b = GraphBuilder(RelationConfig())
    for r, h, t in [("IsA", "dog", "animal"), ("AtLocation", "traffic_light", "street"),
                    ("IsA", "ice_cream", "dessert"), ("UsedFor", "glasses", "seeing"),
                    ("IsA", "red_ball", "toy")]:
        b.add(r, h, t, 1.0)
    return b.build()


# ---------------------------------------------------------------------------------------
# load_image
# ---------------------------------------------------------------------------------------


def test_import_is_cheap():
    code = ("import sys, ravlm_graph.grounding.images; "
            "print(sorted(m for m in ('torch', 'transformers', 'PIL') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_load_image_accepts_path_bytes_pil_array(tmp_path):
    img = rand_image(20, 12)
    p = tmp_path / "x.png"
    img.save(p)
    ref = np.asarray(img)
    for x in (p, str(p), p.read_bytes(), io.BytesIO(p.read_bytes()), img, ref):
        out = load_image(x)
        assert out.mode == "RGB" and out.size == (20, 12)
        assert np.array_equal(np.asarray(out), ref)
    # (C, H, W), float in [0, 1], greyscale, uint16, bool, torch tensor
    assert np.array_equal(np.asarray(load_image(ref.transpose(2, 0, 1))), ref)
    assert np.array_equal(np.asarray(load_image(ref / 255.0)), ref)
    assert np.asarray(load_image(np.full((9, 9), 7, np.uint8)))[0, 0].tolist() == [7, 7, 7]
    assert np.asarray(load_image(np.full((9, 9, 3), 65535, np.uint16)))[0, 0].tolist() == [255, 255, 255]
    assert np.asarray(load_image(np.ones((9, 9), bool)))[0, 0].tolist() == [255, 255, 255]
    assert np.array_equal(np.asarray(load_image(torch.from_numpy(ref.copy()))), ref)


@pytest.mark.parametrize("mode, expect", [
    ("P", [200, 10, 10]),
    ("LA", [255, 255, 255]),       # fully transparent -> white background
    ("RGBA", [255, 255, 255]),
    ("CMYK", None),
    ("L", [99, 99, 99]),
    ("1", [255, 255, 255]),
    ("I;16", [128, 128, 128]),     # 16-bit scaled, not clipped
    ("I", [128, 128, 128]),
    ("F", [128, 128, 128]),
    ("YCbCr", None),
])
def test_load_image_modes_become_rgb(tmp_path, mode, expect):
    if mode == "P":
        img = Image.new("RGB", (10, 10), (200, 10, 10)).convert("P", palette=Image.ADAPTIVE)
    elif mode == "LA":
        img = Image.new("LA", (10, 10), (30, 0))
    elif mode == "RGBA":
        img = Image.new("RGBA", (10, 10), (0, 0, 0, 0))
    elif mode == "L":
        img = Image.new("L", (10, 10), 99)
    elif mode == "1":
        img = Image.new("1", (10, 10), 1)
    elif mode == "I;16":
        img = Image.fromarray(np.full((10, 10), 128 * 257, np.uint16))
        p = tmp_path / "deep.png"
        img.save(p)  # a real 16-bit PNG, read back from disk
        img = p
    elif mode == "I":
        img = Image.fromarray(np.full((10, 10), 128 * 257, np.int32), mode="I")
    elif mode == "F":
        img = Image.fromarray(np.full((10, 10), 0.5, np.float32), mode="F")
    else:
        img = Image.new(mode, (10, 10))
    out = load_image(img)
    assert out.mode == "RGB" and out.size == (10, 10)
    if expect is not None:
        assert np.asarray(out)[5, 5].tolist() == pytest.approx(expect, abs=2)


def test_load_image_palette_with_transparency_and_cmyk_jpeg(tmp_path):
    img = Image.new("P", (10, 10), 0)
    img.putpalette([0, 0, 0] * 256)
    img.info["transparency"] = 0
    assert np.asarray(load_image(img))[0, 0].tolist() == [255, 255, 255]
    p = tmp_path / "cmyk.jpg"
    Image.new("CMYK", (16, 16), (0, 255, 255, 0)).save(p)
    out = load_image(p)
    assert out.mode == "RGB" and out.size == (16, 16)


def test_load_image_rejects_corrupt_and_non_images(tmp_path):
    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes(b"\x89PNG\r\n\x1a\n" + os.urandom(64))
    with pytest.raises(InvalidImageError, match=r"corrupt\.png: cannot decode image"):
        load_image(corrupt)
    txt = tmp_path / "notes.txt"
    txt.write_text("this is not an image\n")
    with pytest.raises(ValueError, match=r"notes\.txt: cannot decode image: not a recognised image format"):
        load_image(txt)
    truncated = tmp_path / "cut.png"
    truncated.write_bytes(png_bytes(rand_image(64, 64))[:200])
    with pytest.raises(InvalidImageError, match=r"cut\.png: cannot decode image"):
        load_image(truncated)
    with pytest.raises(InvalidImageError, match=r"<bytes>: cannot decode image"):
        load_image(b"GIF89a garbage")
    with pytest.raises(FileNotFoundError, match="missing.png"):
        load_image(tmp_path / "missing.png")
    with pytest.raises(InvalidImageError, match="directory"):
        load_image(tmp_path)
    with pytest.raises(TypeError, match="found int"):
        load_image(42)


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")  # PIL warns on open, we refuse
def test_load_image_size_limits(tmp_path):
    tiny = tmp_path / "one.png"
    Image.new("RGB", (1, 1)).save(tiny)
    with pytest.raises(InvalidImageError, match=r"one\.png: image too small: expected at least 8x8 pixels, found 1x1"):
        load_image(tiny)
    with pytest.raises(InvalidImageError, match="found 1x1"):
        load_image(np.zeros((1, 1, 3), np.uint8))
    huge = tmp_path / "huge.png"
    huge.write_bytes(png_header_only(10_000, 10_000))
    with pytest.raises(InvalidImageError,
                       match=r"huge\.png: image too large: expected at most 8192 pixels per side, found 10000x10000"):
        load_image(huge)
    # Past our limit, PIL's decompression-bomb guard still refuses it before decoding.
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(png_header_only(50_000, 50_000))
    with pytest.raises(InvalidImageError, match=r"bomb\.png: image too large"):
        load_image(bomb, max_side=100_000)
    # The limit is configurable; a wide strip is checked from a PIL image as well.
    strip = Image.new("L", (9000, 8))
    with pytest.raises(InvalidImageError, match=r"found 9000x8 \(resize it so that neither side exceeds 8192 pixels\)"):
        load_image(strip)
    assert load_image(strip, max_side=9000).size == (9000, 8)
    # A 48-megapixel phone photo's side (8064 x 6048) is within the default.
    assert load_image(Image.new("L", (8064, 8))).size == (8064, 8)
    with pytest.raises(ValueError, match="min_side"):
        load_image(strip, min_side=0)


def _phone_photo(path, orientation: int = 6) -> None:
    """A 'phone photo' stored sideways: the camera wrote the pixels turned a quarter to the left
    and an EXIF orientation tag 6 that turns them back. Seen upright it is 40 x 20 px with a
    red left half and a blue right half."""
    upright = np.zeros((20, 40, 3), np.uint8)
    upright[:, :20] = (255, 0, 0)
    upright[:, 20:] = (0, 0, 255)
    stored = Image.fromarray(upright).transpose(Image.Transpose.ROTATE_90)  # 20 x 40, as on disk
    exif = Image.Exif()
    exif[0x0112] = orientation
    stored.save(path, exif=exif.tobytes())


def test_load_image_exif_orientation_for_paths_and_opened_pil_images(tmp_path):
    from PIL import ImageOps

    p = tmp_path / "phone.png"
    _phone_photo(p)

    def upright(im) -> bool:
        a = np.asarray(im)
        return im.size == (40, 20) and a[10, 5].tolist() == [255, 0, 0] and a[10, 35].tolist() == [0, 0, 255]

    assert upright(load_image(p)) and upright(load_image(p.read_bytes()))
    # What Image.open returns is read the way the path is (boxes in the orientation seen) ...
    assert upright(load_image(Image.open(p)))
    # ... and an image turned already (by exif_transpose, in place or not) is not turned twice.
    assert upright(load_image(ImageOps.exif_transpose(Image.open(p))))
    im = Image.open(p)
    ImageOps.exif_transpose(im, in_place=True)
    assert upright(load_image(im))
    # An image made in memory carries no orientation of its own.
    stored = Image.open(p).convert("RGB")
    assert load_image(stored).size == (20, 40)


def test_load_image_warns_which_frame_of_an_animated_file(tmp_path):
    from ravlm_graph.grounding.language import InputWarning

    first, second = Image.new("RGB", (16, 16), (0, 128, 0)), Image.new("RGB", (16, 16), (200, 0, 0))
    gif, tiff, single = tmp_path / "anim.gif", tmp_path / "pages.tiff", tmp_path / "one.gif"
    first.save(gif, save_all=True, append_images=[second], duration=100, loop=0)
    first.save(tiff, save_all=True, append_images=[second])
    first.save(single)
    for p in (gif, tiff):
        with pytest.warns(InputWarning, match=rf"{p.name}: an image of 2 frames or pages; only the first is read"):
            out = load_image(p)
        assert np.asarray(out)[8, 8].tolist() == pytest.approx([0, 128, 0], abs=8)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_image(single)
        seeked = Image.open(gif)
        seeked.seek(1)  # a PIL image is read at the frame it was sought to, without a warning
        assert np.asarray(load_image(seeked))[8, 8].tolist() == pytest.approx([200, 0, 0], abs=8)


def test_load_image_half_precision_and_meta_tensors():
    chw = torch.full((3, 9, 9), 0.25)  # exact in bfloat16 and float16
    for t in (chw.bfloat16(), chw.half()):
        assert np.asarray(load_image(t))[4, 4].tolist() == [64, 64, 64]
    with pytest.raises(InvalidImageError, match="<torch.Tensor>: a tensor on the 'meta' device holds no values"):
        load_image(torch.empty(3, 9, 9, device="meta"))


def test_load_image_rejects_bad_arrays():
    with pytest.raises(InvalidImageError, match=r"expected an array of shape"):
        load_image(np.zeros((4, 9, 9, 3), np.uint8))
    with pytest.raises(InvalidImageError, match=r"float pixel values in \[0, 1\]"):
        load_image(np.full((9, 9, 3), 2.0))
    with pytest.raises(InvalidImageError, match="NaN"):
        load_image(np.full((9, 9, 3), np.nan))
    with pytest.raises(InvalidImageError, match=r"integer pixel values in \[0, 255\]"):
        load_image(np.full((9, 9, 3), 300, np.int64))


# ---------------------------------------------------------------------------------------
# label -> concept
# ---------------------------------------------------------------------------------------


def test_map_label_to_concept_without_kg():
    assert map_label_to_concept("Traffic Lights") == "traffic_light"
    assert map_label_to_concept("a dog") == "dog"
    assert map_label_to_concept("  The Ice-Cream. ") == "ice_cream"
    assert map_label_to_concept("traffic_lights") == "traffic_light"
    assert map_label_to_concept("children") == "child"
    assert map_label_to_concept("bus") == "bus"
    assert map_label_to_concept("glasses") == "glasses"  # a lemma of its own: kept
    assert map_label_to_concept("an") == "an"  # only an article: kept as is
    with pytest.raises(ValueError, match="non-blank label"):
        map_label_to_concept("  ")
    with pytest.raises(TypeError, match="found int"):
        map_label_to_concept(3)


def test_map_label_to_concept_with_kg(tiny_kg):
    assert map_label_to_concept("Dogs", tiny_kg) == "dog"
    assert map_label_to_concept("the traffic lights", tiny_kg) == "traffic_light"
    assert map_label_to_concept("Glasses", tiny_kg) == "glasses"
    assert map_label_to_concept("ice cream", tiny_kg) == "ice_cream"
    assert map_label_to_concept("zebras", tiny_kg) == "zebra"  # not in the graph: normalised label


# ---------------------------------------------------------------------------------------
# OWL-ViT / OWLv2
# ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def owl(hf_dirs):
    return {k: OwlDetector.from_pretrained(hf_dirs[k], VOCAB, threshold=0.0, max_detections=100)
            for k in ("owlvit", "owlv2")}


@pytest.mark.parametrize("kind", ["owlvit", "owlv2"])
def test_owl_outputs(owl, kind):
    det = owl[kind]
    assert isinstance(det, ImageEntityDetector)
    assert det.concepts == ["dog", "traffic_light", "ice_cream", "red_ball"]
    for w, h in [(32, 32), (48, 24), (20, 60)]:
        ents = det.detect(rand_image(w, h, seed=w))
        assert ents
        check_entities(ents, w, h, vocab=set(det.concepts))
        assert all(e.label in VOCAB and map_label_to_concept(e.label) == e.concept for e in ents)
    assert det._query_embeds is not None
    cached = det._query_embeds
    det.detect(rand_image(32, 32))
    assert det._query_embeds is cached  # vocabulary embedded once


@pytest.mark.parametrize("kind", ["owlvit", "owlv2"])
def test_owl_batch_matches_single(owl, kind):
    det = owl[kind]
    imgs = [rand_image(32, 32, 1), rand_image(40, 24, 2), rand_image(24, 40, 3)]
    batch = det.detect_batch(imgs)
    for im, ents in zip(imgs, batch):
        same_entities(ents, det.detect(im))


@pytest.mark.parametrize("kind", ["owlvit", "owlv2"])
def test_owl_agrees_with_transformers_forward(hf_dirs, kind):
    """Our cached-query path gives the same scores and boxes as the model's own forward +
    post-processing (square image: OWLv2's padding is then a no-op)."""
    from transformers import AutoProcessor, Owlv2ForObjectDetection, OwlViTForObjectDetection

    det = OwlDetector.from_pretrained(hf_dirs[kind], VOCAB, threshold=0.0, nms_iou=1.0, max_detections=1000)
    model_cls = OwlViTForObjectDetection if kind == "owlvit" else Owlv2ForObjectDetection
    model = model_cls.from_pretrained(hf_dirs[kind]).eval()
    proc = AutoProcessor.from_pretrained(hf_dirs[kind])
    img = rand_image(40, 40, 7)
    texts = [[t.replace("_", " ") for t in VOCAB]]
    with torch.inference_mode():
        outputs = model(**proc(text=texts, images=img, return_tensors="pt"))
    ref = proc.image_processor.post_process_object_detection(outputs, threshold=0.0, target_sizes=[(40, 40)])[0]
    ours = det.detect(img)
    # We drop boxes that lie wholly outside the image (empty once clipped).
    clipped = ref["boxes"].clamp(0, 40)
    inside = (clipped[:, 2] > clipped[:, 0]) & (clipped[:, 3] > clipped[:, 1])
    assert len(ours) == int(inside.sum()) > 0
    ref = {k: v[inside] for k, v in ref.items()}
    order = torch.argsort(ref["scores"], descending=True)
    assert np.allclose([e.score for e in ours], ref["scores"][order].numpy(), atol=1e-5)
    ref_boxes = ref["boxes"][order].clamp(0, 40).numpy()
    assert np.allclose([e.box for e in ours], ref_boxes, atol=1e-3)
    assert [e.label for e in ours] == [VOCAB[i] for i in ref["labels"][order].tolist()]


def test_owl_threshold_nms_and_mapping(hf_dirs, tiny_kg):
    loose = OwlDetector.from_pretrained(hf_dirs["owlvit"], VOCAB, threshold=0.0, nms_iou=1.0, max_detections=1000)
    strict = OwlDetector.from_pretrained(hf_dirs["owlvit"], VOCAB, threshold=0.0, nms_iou=0.3, max_detections=1000)
    img = rand_image(32, 32, 5)
    all_boxes, kept = loose.detect(img), strict.detect(img)
    assert 0 < len(kept) <= len(all_boxes) <= 16  # 4x4 patches, one box each
    for c in set(e.concept for e in kept):  # no two kept boxes of one concept overlap much
        bs = torch.tensor([e.box for e in kept if e.concept == c])
        for i in range(len(bs)):
            for j in range(i + 1, len(bs)):
                lt = torch.maximum(bs[i, :2], bs[j, :2])
                rb = torch.minimum(bs[i, 2:], bs[j, 2:])
                inter = (rb - lt).clamp(min=0).prod()
                area = lambda b: (b[2] - b[0]) * (b[3] - b[1])  # noqa: E731
                assert inter / (area(bs[i]) + area(bs[j]) - inter) <= 0.3 + 1e-6
    ranked = sorted(e.score for e in all_boxes)
    mid = ranked[len(ranked) // 2]
    high = OwlDetector.from_pretrained(hf_dirs["owlvit"], VOCAB, threshold=mid, nms_iou=1.0, max_detections=1000)
    assert all(e.score >= mid for e in high.detect(img))
    assert len(high.detect(img)) == len(ranked) - len(ranked) // 2
    top3 = OwlDetector.from_pretrained(hf_dirs["owlvit"], VOCAB, threshold=0.0, max_detections=3)
    assert len(top3.detect(img)) == 3
    # A mapping label -> concept, through the KG.
    det = OwlDetector.from_pretrained(hf_dirs["owlvit"],
                                      {"a photo of dogs": "Dogs", "traffic lights": "traffic lights"},
                                      kg=tiny_kg, threshold=0.0, prompt="{}")
    assert det.concepts == ["dog", "traffic_light"] and det.labels == ["a photo of dogs", "traffic lights"]
    assert {e.concept for e in det.detect(img)} <= {"dog", "traffic_light"}


def test_owl_postprocess_nms_clipping_and_scaling(owl):
    """Hand-made patch outputs: per-concept NMS, clipping, boxes outside dropped, and the
    relative -> pixel scaling of OWL-ViT (stretch) and OWLv2 (pad to a square)."""
    det = OwlDetector(owl["owlvit"].model, owl["owlvit"].processor, ["a", "b"], ["a", "b"],
                      OwlDetectorConfig(threshold=0.2, nms_iou=0.5))
    # cx, cy, w, h relative to the image
    boxes = torch.tensor([[0.5, 0.5, 0.4, 0.4],    # a, 0.9
                          [0.52, 0.5, 0.4, 0.4],   # a, 0.8: overlaps the first -> suppressed
                          [0.5, 0.5, 0.4, 0.4],    # b, 0.7: other concept -> kept
                          [0.95, 0.5, 0.3, 0.2],   # a, 0.6: sticks out on the right -> clipped
                          [1.5, 1.5, 0.2, 0.2],    # a, 0.95: wholly outside -> dropped
                          [0.2, 0.2, 0.1, 0.1]])   # a, 0.1: below threshold
    scores = torch.tensor([0.9, 0.8, 0.7, 0.6, 0.95, 0.1])
    labels = torch.tensor([0, 0, 1, 0, 0, 0])
    got = det._postprocess(scores, labels, boxes, 100, 50)
    assert [(e.concept, round(e.score, 2)) for e in got] == [("a", 0.9), ("b", 0.7), ("a", 0.6)]
    assert got[0].box == pytest.approx((30.0, 15.0, 70.0, 35.0))
    assert got[2].box == pytest.approx((80.0, 20.0, 100.0, 30.0))
    det._pad_to_square = True  # OWLv2: coordinates are relative to the padded 100 x 100 square
    got = det._postprocess(scores, labels, boxes, 100, 50)
    assert got[0].box == pytest.approx((30.0, 30.0, 70.0, 50.0))  # clipped at the image's bottom


def test_owl_bad_input(hf_dirs, owl, tmp_path):
    with pytest.raises(ValueError, match="expected an OWL-ViT or OWLv2 checkpoint .* found model_type 'clip'"):
        OwlDetector.from_pretrained(hf_dirs["clip"], VOCAB)
    with pytest.raises(FileNotFoundError, match="never downloaded"):
        OwlDetector.from_pretrained(tmp_path / "google--owlvit", VOCAB)
    with pytest.raises(ValueError, match="threshold in"):
        OwlDetector.from_pretrained(hf_dirs["owlvit"], VOCAB, threshold=2.0)
    with pytest.raises(TypeError, match="unknown OwlDetectorConfig option"):
        OwlDetector.from_pretrained(hf_dirs["owlvit"], VOCAB, treshold=0.2)
    with pytest.raises(ValueError, match="appears more than once"):
        OwlDetector.from_pretrained(hf_dirs["owlvit"], ["dog", "dog"])
    with pytest.raises(ValueError, match="containing"):
        OwlDetectorConfig(prompt="a photo")
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\xff\xd8\xff garbage")
    det = owl["owlvit"]
    with pytest.raises(InvalidImageError, match=r"image 1: .*bad\.jpg: cannot decode image"):
        det.detect_batch([rand_image(32, 32), bad])
    res = det.detect_batch([rand_image(32, 32), bad, np.zeros((1, 1, 3), np.uint8)], on_error="empty")
    assert len(res) == 3 and res[0] and res[1] == [] and res[2] == []


# ---------------------------------------------------------------------------------------
# CLIP
# ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def clip(hf_dirs):
    return ClipTagger.from_pretrained(hf_dirs["clip"], VOCAB, top_k=3)


def test_clip_outputs_and_cache(clip, monkeypatch):
    img = rand_image(48, 32)
    ents = clip.detect(img)
    check_entities(ents, boxes=False, vocab=set(clip.concepts))
    assert len(ents) == 3
    probs = clip.scores([img, rand_image(32, 32, 3)])
    assert probs.shape == (2, 4)
    assert torch.allclose(probs.sum(-1), torch.ones(2), atol=1e-5)
    assert [e.score for e in ents] == pytest.approx(sorted(probs[0].tolist(), reverse=True)[:3], abs=1e-6)
    calls = []
    orig = clip.model.get_text_features
    monkeypatch.setattr(clip.model, "get_text_features", lambda *a, **k: calls.append(1) or orig(*a, **k))
    clip.detect(img)
    clip.detect_batch([img, img])
    assert calls == []  # text embeddings computed once and cached


def test_clip_batch_matches_single_and_forward(clip, hf_dirs):
    from transformers import AutoProcessor, CLIPModel

    imgs = [rand_image(32, 32, 11), rand_image(64, 40, 12)]
    for im, ents in zip(imgs, clip.detect_batch(imgs)):
        same_entities(ents, clip.detect(im), tol=1e-5)
    model = CLIPModel.from_pretrained(hf_dirs["clip"]).eval()
    proc = AutoProcessor.from_pretrained(hf_dirs["clip"])
    texts = [f"a photo of a {c.replace('_', ' ')}." for c in VOCAB]
    with torch.inference_mode():
        out = model(**proc(text=texts, images=imgs, return_tensors="pt", padding=True))
    assert torch.allclose(out.logits_per_image.softmax(-1), clip.scores(imgs), atol=1e-5)


def test_clip_options_and_errors(hf_dirs, tiny_kg):
    tagger = ClipTagger.from_pretrained(hf_dirs["clip"], ["Dogs", "ice cream"], kg=tiny_kg,
                                        prompt=("a photo of a {}.", "{}"), top_k=10, min_score=0.0)
    ents = tagger.detect(rand_image(32, 32))
    assert sorted(e.concept for e in ents) == ["dog", "ice_cream"]
    assert sum(e.score for e in ents) == pytest.approx(1.0, abs=1e-5)
    sure = ClipTagger.from_pretrained(hf_dirs["clip"], VOCAB, top_k=4, min_score=0.99)
    assert all(e.score >= 0.99 for e in sure.detect(rand_image(32, 32)))
    with pytest.raises(ValueError, match="expected a CLIP checkpoint .* found model_type 'owlvit'"):
        ClipTagger.from_pretrained(hf_dirs["owlvit"], VOCAB)
    with pytest.raises(ValueError, match="top_k >= 1"):
        ClipTaggerConfig(top_k=0)
    with pytest.raises(ValueError, match="at least one concept"):
        ClipTagger.from_pretrained(hf_dirs["clip"], [])


# ---------------------------------------------------------------------------------------
# Trainable tagger
# ---------------------------------------------------------------------------------------

COLOURS = {"red": (220, 30, 30), "blue": (30, 30, 220)}


def shapes_dataset(n=32, seed=0):
    """16-px images: a red or blue square or disc on grey; labels = {colour, shape}."""
    rng = np.random.default_rng(seed)
    images, labels = [], []
    yy, xx = np.mgrid[:16, :16]
    for i in range(n):
        colour = "red" if i % 2 == 0 else "blue"
        shape = "square" if (i // 2) % 2 == 0 else "disc"
        a = np.full((16, 16, 3), 128, np.uint8)
        cx, cy, r = rng.integers(5, 11), rng.integers(5, 11), 4
        if shape == "square":
            mask = (abs(xx - cx) <= r) & (abs(yy - cy) <= r)
        else:
            mask = (xx - cx) ** 2 + (yy - cy) ** 2 <= r * r
        a[mask] = COLOURS[colour]
        images.append(a)
        labels.append({colour, shape})
    return images, labels


EPOCHS = 20
TAGGER_CFG = TaggerConfig(("red", "blue", "square", "disc"), image_size=16, channels=(8, 16), dropout=0.0)


def fit_cfg(**kw):
    """In-memory training settings of the tagger tests (constant rate, no warm-up, no gradient clipping)."""
    base = dict(out_dir="", epochs=1, batch_size=8, lr=1e-3, weight_decay=1e-4, warmup_ratio=0.0, grad_clip=0.0,
                lr_schedule="constant", progress=False)
    return TrainConfig(**{**base, **kw})


@pytest.fixture(scope="module")
def trained():
    images, labels = shapes_dataset()
    tagger = TrainableTagger(TAGGER_CFG, seed=0)
    result = fit_tagger(tagger, images, labels, fit_cfg(epochs=EPOCHS, lr=1e-2, seed=0))
    return tagger, result, images, labels


def test_tagger_training_reduces_loss_and_is_reproducible(trained):
    tagger, result, images, labels = trained
    assert result.epochs_run == EPOCHS and len(result.losses) == EPOCHS and result.steps == EPOCHS * 4
    assert result.losses[-1] < 0.5 * result.losses[0]
    # Same seed, same run (dropout on, so its RNG is exercised too); the global RNG is left alone.
    state = torch.get_rng_state()
    cfg = TaggerConfig(TAGGER_CFG.concepts, image_size=16, channels=(8, 16), dropout=0.5)
    a, b = TrainableTagger(cfg, seed=3), TrainableTagger(cfg, seed=3)
    ra = fit_tagger(a, images, labels, fit_cfg(epochs=2, seed=1))
    rb = fit_tagger(b, images, labels, fit_cfg(epochs=2, seed=1))
    assert torch.equal(torch.get_rng_state(), state)
    assert ra.losses == rb.losses
    for k, v in a.model.state_dict().items():
        assert torch.equal(v, b.model.state_dict()[k]), k
    rc = fit_tagger(TrainableTagger(cfg, seed=3), images, labels, fit_cfg(epochs=2, seed=2))
    assert rc.losses != ra.losses
    # It has learnt the colours of the training images.
    probs = tagger.predict_proba(images)
    red = np.array(["red" in lab for lab in labels])
    assert (probs[:, 0] > probs[:, 1]).tolist() == red.tolist()


def test_tagger_outputs_batch_and_roundtrip(trained, tmp_path):
    tagger, _, images, _ = trained
    ents = tagger.detect(images[0])
    check_entities(ents, boxes=False, vocab=set(TAGGER_CFG.concepts))
    assert all(e.score >= 0.5 for e in ents)
    batch = tagger.detect_batch(images[:5])
    for im, b in zip(images[:5], batch):
        same_entities(b, tagger.detect(im), tol=1e-5)
    path = tagger.save_pretrained(tmp_path / "tagger")
    assert sorted(f.name for f in path.iterdir()) == ["config.json", "model.safetensors"]
    loaded = TrainableTagger.from_pretrained(path)
    assert loaded.config == tagger.config
    assert np.array_equal(loaded.predict_proba(images), tagger.predict_proba(images))
    assert loaded.detect_batch(images[:5]) == batch
    top1 = TrainableTagger(TaggerConfig(TAGGER_CFG.concepts, image_size=16, channels=(8, 16), threshold=0.0, top_k=1))
    assert len(top1.detect(images[0])) == 1


def test_tagger_checkpoint_errors(trained, tmp_path):
    tagger, _, _, _ = trained
    path = tagger.save_pretrained(tmp_path / "t")
    (path / "pytorch_model.bin").write_bytes(b"not really a pickle")
    with pytest.raises(ValueError, match=r"refusing .*pickled weights \['pytorch_model.bin'\]"):
        TrainableTagger.from_pretrained(path)
    (path / "pytorch_model.bin").unlink()
    (path / "model.safetensors").rename(path / "model.pt")
    with pytest.raises(ValueError, match=r"refusing pickled weights \['model.pt'\]"):
        TrainableTagger.from_pretrained(path)
    (path / "model.pt").rename(path / "model.safetensors")
    (path / "config.json").write_text('{"format": "something-else"}')
    with pytest.raises(ValueError, match="expected a 'ravlm-image-tagger' checkpoint"):
        TrainableTagger.from_pretrained(path)
    with pytest.raises(FileNotFoundError):
        TrainableTagger.from_pretrained(tmp_path / "nope")
    other = TrainableTagger(TaggerConfig(("a", "b"), image_size=16, channels=(8, 16)))
    p2 = other.save_pretrained(tmp_path / "other")
    tagger.save_pretrained(tmp_path / "mine")
    (tmp_path / "mine" / "model.safetensors").write_bytes((p2 / "model.safetensors").read_bytes())
    with pytest.raises(ValueError, match="weights do not match config.json"):
        TrainableTagger.from_pretrained(tmp_path / "mine")


def test_tagger_bad_input():
    with pytest.raises(ValueError, match=r"label set 1: concept 'green' is not in the tagger's vocabulary"):
        fit_tagger(TrainableTagger(TAGGER_CFG), [np.zeros((16, 16, 3), np.uint8)] * 2, [{"red"}, {"green"}], fit_cfg())
    with pytest.raises(ValueError, match="2 images but 1 label sets"):
        fit_tagger(TrainableTagger(TAGGER_CFG), [np.zeros((16, 16, 3), np.uint8)] * 2, [{"red"}], fit_cfg())
    with pytest.raises(InvalidImageError, match="image 1: .*too small"):
        fit_tagger(TrainableTagger(TAGGER_CFG), [np.zeros((16, 16, 3), np.uint8), np.zeros((2, 2), np.uint8)],
                   [{"red"}, {"blue"}], fit_cfg())
    with pytest.raises(ValueError, match="too small for 2 stages"):
        TaggerConfig(("a",), image_size=2, channels=(4, 4))
    with pytest.raises(ValueError, match="unique"):
        TaggerConfig(("a", "a"))


# ---------------------------------------------------------------------------------------
# Given entities
# ---------------------------------------------------------------------------------------


def test_given_entities_from_record_and_annotations(tiny_kg):
    from ravlm_graph.types import Entity as RecordEntity
    from ravlm_graph.types import VQARecord

    rec = VQARecord(qid="1", question="What is the dog near?", dataset="fvqa", split="train",
                    entities=(RecordEntity("Dogs", 1.0, "image"), RecordEntity("traffic_light", 1.0, "image"),
                              RecordEntity("street", 1.0, "question")),
                    extra={"boxes": {"Dogs": [1, 2, 10, 12]}})
    ents = GivenEntities(tiny_kg).detect(rec)
    assert [(e.concept, e.origin, e.box, e.score, e.label) for e in ents] == [
        ("dog", "image", (1.0, 2.0, 10.0, 12.0), 1.0, "Dogs"),
        ("traffic_light", "image", None, 1.0, "traffic_light"),
    ]
    anns = ["a cat", ("Dog", (0, 0, 5, 5)), {"name": "red balls", "bbox": [2, 3, 4, 5], "score": 0.5},
            {"names": ["Tree"], "x": 1, "y": 1, "w": 2, "h": 3}, {"category": "person"}, "a cat"]
    got = GivenEntities().detect(anns)
    assert [(e.concept, e.box, e.score) for e in got] == [
        ("cat", None, 1.0), ("dog", (0.0, 0.0, 5.0, 5.0), 1.0), ("red_ball", (2.0, 3.0, 6.0, 8.0), 0.5),
        ("tree", (1.0, 1.0, 3.0, 4.0), 1.0), ("person", None, 1.0)]
    assert GivenEntities().detect_batch([["cat"], []]) == [GivenEntities().detect(["cat"]), []]
    with pytest.raises(ValueError, match=r"annotations\[0\]: expected a box of 4 finite numbers"):
        GivenEntities().detect([("dog", (1, 2, 3))])
    with pytest.raises(ValueError, match=r"annotations\[0\]: expected x0 <= x1"):
        GivenEntities().detect([("dog", (5, 5, 1, 1))])
    with pytest.raises(ValueError, match=r"annotations\[1\]: expected a non-empty object name"):
        GivenEntities().detect(["dog", {"box": [0, 0, 1, 1]}])
    with pytest.raises(ValueError, match=r"annotations\[0\]: expected a score in \[0, 1\], found 2.0"):
        GivenEntities().detect([{"name": "dog", "score": 2}])
    with pytest.raises(TypeError, match="found str"):
        GivenEntities().detect("dog")
