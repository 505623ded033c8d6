"""Detectors trained through the one training loop: the image tagger and the layout-cell detector."""

import numpy as np
import pytest
import torch

from ravlm_graph.datasets.builtin import default_emoji_root
from ravlm_graph.datasets.scenes import synthetic_scenes
from ravlm_graph.grounding.detectors.layout import LayoutCellDetector
from ravlm_graph.grounding.detectors.tagger import TaggerConfig, TrainableTagger
from ravlm_graph.training import TrainConfig
from ravlm_graph.training.detectors import fit_tagger, train_layout_detector

POOL = [("1f43b.png", "bear"), ("1f680.png", "rocket"), ("1f36a.png", "cookie")]


def _images(n=16):
    rng = np.random.default_rng(0)
    images, labels = [], []
    for i in range(n):
        a = rng.integers(0, 60, (16, 16, 3)).astype(np.uint8)
        a[..., i % 2] += 150  # red or green
        images.append(a)
        labels.append({"red" if i % 2 == 0 else "green"})
    return images, labels


def test_tagger_checkpoints_are_tagger_folders_and_resume_exactly(tmp_path):
    images, labels = _images()
    cfg = TaggerConfig(("red", "green"), image_size=16, channels=(4, 8), dropout=0.0)
    kw = dict(batch_size=4, lr=1e-2, progress=False)
    full = TrainableTagger(cfg, seed=1)
    fit_tagger(full, images, labels, TrainConfig(out_dir=str(tmp_path / "full"), epochs=3, **kw))
    # every checkpoint the loop writes is a plain tagger folder
    last = TrainableTagger.from_pretrained(tmp_path / "full" / "last")
    assert np.array_equal(last.predict_proba(images), full.predict_proba(images))

    def stop(epoch, model):
        if epoch == 1:
            raise KeyboardInterrupt

    part = TrainableTagger(cfg, seed=1)
    objective_cfg = TrainConfig(out_dir=str(tmp_path / "part"), epochs=3, **kw)
    from ravlm_graph.training import detectors, loop

    with pytest.raises(KeyboardInterrupt):
        x, y = part.images_to_tensor(images), part.targets(labels)
        with torch.random.fork_rng(devices=[]):
            loop.train(detectors._TaggerObjective(part, part.model), list(range(len(images))),
                       detectors._AugmentingCollate(x, y, True), objective_cfg, on_epoch_end=stop)
    resumed = TrainableTagger(cfg, seed=1)
    res = fit_tagger(resumed, images, labels, objective_cfg)
    assert res.resumed_from_epoch == 1 and res.epochs_run == 2
    for k, v in full.model.state_dict().items():
        torch.testing.assert_close(v, resumed.model.state_dict()[k], rtol=0, atol=1e-6)


def test_exclusive_tagger_needs_one_concept_per_image():
    t = TrainableTagger(TaggerConfig(("a", "b"), image_size=16, channels=(4, 8), exclusive=True))
    with pytest.raises(ValueError, match="label set 1: an exclusive tagger needs exactly one concept per image, found 2"):
        t.targets([{"a"}, {"a", "b"}])


@pytest.mark.slow
def test_detector_learns_drawn_scenes_and_round_trips(tmp_path):
    train = list(synthetic_scenes(POOL, 200, default_emoji_root(), seed=2))
    det = train_layout_detector(train, [c for _, c in POOL], epochs=10, image_size=24, channels=(8, 16),
                                negatives_per_scene=1, seed=0, progress=False, lr=3e-3)
    test = list(synthetic_scenes(POOL, 40, default_emoji_root(), seed=99))
    found = det.detect_batch([im for im, _ in test])
    hits = total = 0
    for ents, (_, objs) in zip(found, test):
        total += len(objs)
        hits += len({c for c, _ in objs} & {e.concept for e in ents})
        assert all(e.origin == "image" and e.box is not None and e.label for e in ents)
    assert hits / total >= 0.6, f"object recall {hits}/{total}"
    det.save_pretrained(tmp_path / "det")
    again = LayoutCellDetector.from_pretrained(tmp_path / "det")
    assert [[e.concept for e in es] for es in again.detect_batch([im for im, _ in test[:5]])] == \
        [[e.concept for e in es] for es in found[:5]]
    with pytest.raises(FileNotFoundError, match="layout_detector.json"):
        LayoutCellDetector.from_pretrained(tmp_path)


@pytest.mark.slow
def test_cell_net_detector_learns_drawn_scenes(tmp_path):
    train = list(synthetic_scenes(POOL, 300, default_emoji_root(), seed=1))
    det = train_layout_detector(train, [c for _, c in POOL], scorer="cell_net", epochs=25, image_size=64,
                                channels=(8, 16, 16, 32), blocks=(0, 1, 0, 1), hidden=32, batch_size=32, lr=3e-3,
                                seed=0, progress=False, layout_choice="joint")
    test = list(synthetic_scenes(POOL, 40, default_emoji_root(), seed=99))
    found = det.detect_batch([im for im, _ in test])
    hits = sum(len({c for c, _ in objs} & {e.concept for e in ents}) for ents, (_, objs) in zip(found, test))
    total = sum(len(objs) for _, objs in test)
    assert hits / total >= 0.8, f"object recall {hits}/{total}"
    assert sum(len(ents) == len(objs) for ents, (_, objs) in zip(found, test)) >= 0.8 * len(test)
    det.save_pretrained(tmp_path / "det")
    again = LayoutCellDetector.from_pretrained(tmp_path / "det")
    assert again.cell_net and again.layout_choice == "joint"
    assert [[e.concept for e in es] for es in again.detect_batch([im for im, _ in test[:5]])] == \
        [[e.concept for e in es] for es in found[:5]]


def test_cell_net_fine_tunes_from_a_saved_detector_of_the_same_shape(tmp_path):
    train = list(synthetic_scenes(POOL, 24, default_emoji_root(), seed=3))
    kw = dict(scorer="cell_net", image_size=64, channels=(4, 8, 8, 8), blocks=(0, 0, 0, 1), hidden=8, batch_size=8,
              seed=0, progress=False)
    first = train_layout_detector(train, [c for _, c in POOL], epochs=2, lr=3e-3, **kw)
    first.save_pretrained(tmp_path / "first")
    tuned = train_layout_detector(train, [c for _, c in POOL], epochs=1, lr=1e-12, init_from=str(tmp_path / "first"),
                                  **{**kw, "seed": 7})
    ours, theirs = tuned.tagger.model.state_dict(), first.tagger.model.state_dict()
    moved = [k for k in ours if ours[k].is_floating_point() and not torch.allclose(ours[k], theirs[k], atol=1e-6)]
    # a rate of 1e-12 leaves the weights where the saved detector had them (only BatchNorm statistics move)
    assert all("running" in k for k in moved), moved
    fresh = train_layout_detector(train, [c for _, c in POOL], epochs=1, lr=1e-12, **{**kw, "seed": 7})
    conv = next(k for k, v in theirs.items() if v.dim() == 4)
    assert not torch.allclose(fresh.tagger.model.state_dict()[conv], theirs[conv])  # without init_from: new weights
    assert tuned.fallback is None
    # a detector with a fallback: the first network is fine-tuned, the fallback kept as it was
    LayoutCellDetector(first.tagger, fallback=fresh, fallback_below=0.4).save_pretrained(tmp_path / "pair")
    again = train_layout_detector(train, [c for _, c in POOL], epochs=1, lr=1e-12, init_from=str(tmp_path / "pair"),
                                  **{**kw, "seed": 7})
    assert again.fallback is not None and again.fallback_below == 0.4
    fb = fresh.tagger.model.state_dict()
    assert all(torch.equal(v, fb[k]) for k, v in again.fallback.tagger.model.state_dict().items())
    with pytest.raises(ValueError, match="differs in hidden"):
        train_layout_detector(train, [c for _, c in POOL], epochs=1, init_from=str(tmp_path / "first"),
                              **{**kw, "hidden": 16})
    with pytest.raises(ValueError, match="differs in concepts"):
        train_layout_detector(train, [c for _, c in POOL[:2]] + ["owl"], epochs=1, init_from=str(tmp_path / "first"),
                              **kw)
