import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from ravlm_graph.utils.checkpoint import CheckpointError, read_config, read_weights
from ravlm_graph.training.loop import TrainConfig, train

from .toy import ToyModel, collate, toy_data

ROOT = Path(__file__).resolve().parents[2]


def fresh_model():
    torch.manual_seed(0)
    return ToyModel()


def test_training_reduces_loss_and_is_reproducible(tmp_path):
    a, b = fresh_model(), fresh_model()
    ra = train(a, toy_data(), collate, TrainConfig(out_dir=str(tmp_path / "a"), epochs=5, batch_size=8, lr=0.05,
                                                   progress=False))
    rb = train(b, toy_data(), collate, TrainConfig(out_dir=str(tmp_path / "b"), epochs=5, batch_size=8, lr=0.05,
                                                   progress=False))
    assert ra.losses[-1] < 0.5 * ra.losses[0]
    assert ra.losses == rb.losses
    for pa, pb in zip(a.parameters(), b.parameters()):
        assert torch.equal(pa, pb)
    assert (tmp_path / "a" / "final" / "model.safetensors").exists()
    assert json.loads((tmp_path / "a" / "history.json").read_text())[-1]["epoch"] == 5


def test_resume_continues_exactly(tmp_path):
    full = fresh_model()
    train(full, toy_data(), collate, TrainConfig(out_dir=str(tmp_path / "full"), epochs=4, batch_size=8, lr=0.05,
                                                 progress=False))
    part = fresh_model()
    cfg = dict(out_dir=str(tmp_path / "part"), batch_size=8, lr=0.05, progress=False)

    def interrupt(epoch, model):
        if epoch == 2:
            raise KeyboardInterrupt  # the run is stopped after its second checkpoint, evaluating the third epoch

    with pytest.raises(KeyboardInterrupt):
        train(part, toy_data(), collate, TrainConfig(epochs=4, **cfg), on_epoch_end=interrupt)
    resumed = fresh_model()
    res = train(resumed, toy_data(), collate, TrainConfig(epochs=4, **cfg))
    assert res.resumed_from_epoch == 2 and res.epochs_run == 2
    for pa, pb in zip(full.parameters(), resumed.parameters()):
        torch.testing.assert_close(pa, pb, rtol=0, atol=1e-6)


def test_frozen_backbone_mode(tmp_path):
    m = fresh_model()
    before = m.backbone.weight.clone()
    train(m, toy_data(), collate, TrainConfig(out_dir=str(tmp_path), epochs=1, batch_size=8, freeze_backbone=True,
                                              progress=False))
    assert torch.equal(before, m.backbone.weight)


def test_bad_configs_and_checkpoints(tmp_path):
    with pytest.raises(ValueError, match="TrainConfig.epochs: expected a positive integer, found 0"):
        TrainConfig(epochs=0)
    with pytest.raises(ValueError, match="training data is empty"):
        train(fresh_model(), [], collate, TrainConfig(out_dir=str(tmp_path)))
    m = fresh_model()
    m.save_pretrained(tmp_path / "ck")
    (tmp_path / "ck" / "pytorch_model.bin").write_bytes(b"x")
    with pytest.raises(CheckpointError, match="refusing pickled weights"):
        read_config(tmp_path / "ck", "toy", 1)
    (tmp_path / "ck" / "pytorch_model.bin").unlink()
    with pytest.raises(CheckpointError, match="format version 1; this version of ravlm_graph reads version 2"):
        read_config(tmp_path / "ck", "toy", 2)
    other = torch.nn.Linear(3, 3)
    with pytest.raises(CheckpointError, match="weights do not match config.json"):
        read_weights(tmp_path / "ck", other)


@pytest.mark.slow
def test_ddp_two_cpu_processes(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port",
                        "29531", str(ROOT / "tests" / "training" / "ddp_worker.py"), str(tmp_path)],
                       capture_output=True, text=True, env=env, timeout=180, cwd=ROOT)
    assert r.returncode == 0, r.stderr[-2000:]
    r0 = json.loads((tmp_path / "rank0.json").read_text())
    r1 = json.loads((tmp_path / "rank1.json").read_text())
    assert r0["w"] == r1["w"]  # DDP keeps the replicas identical
    assert r0["losses"] == r1["losses"] and r0["losses"][-1] < r0["losses"][0]
    assert (tmp_path / "final" / "model.safetensors").exists()


def test_best_epoch_selection_and_early_stopping(tmp_path):
    # A metric that peaks at epoch 2: the model ends with epoch 2's weights; patience 2 stops after epoch 4.
    values = [0.1, 0.9, 0.5, 0.4, 0.95]
    snapshots = {}

    def metric(epoch, model):
        snapshots[epoch + 1] = {k: v.clone() for k, v in model.state_dict().items()}
        return {"val": values[epoch]}

    m = fresh_model()
    res = train(m, toy_data(), collate, TrainConfig(out_dir=str(tmp_path), epochs=5, batch_size=8, lr=0.05,
                                                    select_metric="val", patience=2, progress=False),
                on_epoch_end=metric)
    assert (res.best_epoch, res.best_metric, res.epochs_run) == (2, 0.9, 4)
    assert [h["val"] for h in res.history] == values[:4]
    for k, v in m.state_dict().items():
        assert torch.equal(v, snapshots[2][k]), k
    best = fresh_model()
    read_weights(tmp_path / "best", best)
    for k, v in best.state_dict().items():
        assert torch.equal(v, snapshots[2][k]), k
    with pytest.raises(ValueError, match="expected the select_metric 'acc' among them"):
        train(fresh_model(), toy_data(), collate, TrainConfig(out_dir="", epochs=1, select_metric="acc",
                                                              progress=False), on_epoch_end=metric)
    with pytest.raises(ValueError, match="needs an on_epoch_end callback"):
        train(fresh_model(), toy_data(), collate, TrainConfig(out_dir="", select_metric="acc"))
    with pytest.raises(ValueError, match="early stopping needs select_metric"):
        TrainConfig(patience=2)


def test_in_memory_run_and_backbone_learning_rate(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    m = fresh_model()
    res = train(m, toy_data(), collate, TrainConfig(out_dir="", epochs=2, batch_size=8, lr=0.05, progress=False))
    assert res.out_dir == "" and list(tmp_path.iterdir()) == []
    # backbone_lr 0 < lr: with a tiny backbone rate the backbone barely moves, the head does.
    m = fresh_model()
    m.backbone_parameters = m.backbone.parameters
    before = [p.clone() for p in (m.backbone.weight, m.head.weight)]
    train(m, toy_data(), collate, TrainConfig(out_dir="", epochs=1, batch_size=8, lr=0.05, backbone_lr=1e-9,
                                              warmup_ratio=0.0, progress=False))
    assert (m.backbone.weight - before[0]).abs().max() < 1e-6 < (m.head.weight - before[1]).abs().max()
    with pytest.raises(ValueError, match="needs a model with backbone_parameters"):
        train(fresh_model(), toy_data(), collate, TrainConfig(out_dir="", backbone_lr=1e-3, progress=False))
    with pytest.raises(ValueError, match="lr_schedule: expected 'cosine' or 'constant'"):
        TrainConfig(lr_schedule="linear")
