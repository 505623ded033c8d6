"""Checkpoint folders: atomic writes, and the one loader that checks a weights file before reading it."""

import json
import os
import struct

import pytest

torch = pytest.importorskip("torch")

from ravlm_graph.utils import checkpoint as ck  # noqa: E402
from ravlm_graph.utils.checkpoint import (CheckpointError, CheckpointNotFoundError, atomic_folder,  # noqa: E402
                                         load_safetensors, read_config, read_weights, write_checkpoint)


def _module():
    torch.manual_seed(0)
    m = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4))
    return m


def test_round_trip_and_format_checks(tmp_path):
    m = _module()
    write_checkpoint(tmp_path / "ck", {"width": 4}, m.state_dict(), extra_json={"extra.json": [1]},
                     format_name="demo", format_version=2)
    cfg = read_config(tmp_path / "ck", "demo", (1, 2))
    assert cfg == {"width": 4, "format": "demo", "format_version": 2}
    m2 = _module()
    with torch.no_grad():
        for p in m2.parameters():
            p.add_(1.0)
    read_weights(tmp_path / "ck", m2)
    for k, v in m.state_dict().items():
        assert torch.equal(v, m2.state_dict()[k]), k
    with pytest.raises(CheckpointError, match=r"format version 2; this version of ravlm_graph reads version 1"):
        read_config(tmp_path / "ck", "demo", 1)
    with pytest.raises(CheckpointError, match=r"expected a 'other' checkpoint, found format 'demo'"):
        read_config(tmp_path / "ck", "other", 2)
    with pytest.raises(CheckpointNotFoundError, match="no such checkpoint folder"):
        read_config(tmp_path / "nope", "demo", 2)


def test_float16_weights_are_cast_back_and_integer_dtypes_must_match(tmp_path):
    from safetensors.torch import save_file

    m = _module()
    state = {k: (v.half() if v.is_floating_point() else v) for k, v in m.state_dict().items()}
    save_file(state, str(tmp_path / "half.safetensors"))
    out = load_safetensors(tmp_path / "half.safetensors", m.state_dict())
    assert out["0.weight"].dtype == torch.float32
    torch.testing.assert_close(out["0.weight"], m.state_dict()["0.weight"], atol=1e-3, rtol=1e-3)
    # a weight stored as integers: refused from the header, before any tensor is read
    bad = dict(state, **{"0.weight": torch.zeros(4, 3, dtype=torch.int32)})
    save_file(bad, str(tmp_path / "int.safetensors"))
    with pytest.raises(CheckpointError, match=r"dtype mismatch for 0.weight: checkpoint I32, model torch.float32"):
        load_safetensors(tmp_path / "int.safetensors", m.state_dict())
    # the BatchNorm step counter is an integer buffer: floats there are refused too
    bad = dict(state, **{"1.num_batches_tracked": torch.zeros((), dtype=torch.float32)})
    save_file(bad, str(tmp_path / "f.safetensors"))
    with pytest.raises(CheckpointError, match=r"dtype mismatch for 1.num_batches_tracked"):
        load_safetensors(tmp_path / "f.safetensors", m.state_dict())
    bad = dict(state, **{"0.weight": torch.zeros(5, 3)})
    save_file(bad, str(tmp_path / "shape.safetensors"))
    with pytest.raises(CheckpointError, match=r"shape mismatch for 0.weight: checkpoint \(5, 3\), model \(4, 3\)"):
        load_safetensors(tmp_path / "shape.safetensors", m.state_dict())


def test_a_header_that_lies_fails_before_allocation(tmp_path):
    m = _module()
    want = m.state_dict()
    # a header announcing a huge tensor the file does not hold
    header = {k: {"dtype": "F32", "shape": list(v.shape), "data_offsets": [0, 4 * v.numel()]} for k, v in want.items()}
    header["0.weight"] = {"dtype": "F32", "shape": [4, 3 * 10 ** 9], "data_offsets": [0, 48 * 10 ** 9]}
    raw = json.dumps(header).encode()
    p = tmp_path / "lie.safetensors"
    p.write_bytes(struct.pack("<Q", len(raw)) + raw + b"\0" * 64)
    with pytest.raises(CheckpointError, match=r"tensor '0.weight': shape \[4, 3000000000\] F32 does not match"):
        load_safetensors(p, want)
    p.write_bytes(struct.pack("<Q", 10 ** 12) + b"{}")
    with pytest.raises(CheckpointError, match="not a safetensors file"):
        load_safetensors(p, want)
    with pytest.raises(CheckpointError, match="only .safetensors weight files are loaded"):
        load_safetensors(tmp_path / "model.bin", want)


def test_pickled_weights_are_refused(tmp_path):
    write_checkpoint(tmp_path / "ck", {}, _module().state_dict(), format_name="demo")
    (tmp_path / "ck" / "pytorch_model.bin").write_bytes(b"\x80\x04not run")
    with pytest.raises(CheckpointError, match=r"refusing pickled weights \['pytorch_model.bin'\]"):
        read_config(tmp_path / "ck", "demo", 1)


def test_atomic_folder_replaces_whole_or_not_at_all(tmp_path, monkeypatch):
    target = tmp_path / "out"
    with atomic_folder(target) as tmp:
        (tmp / "a.txt").write_text("one")
    assert (target / "a.txt").read_text() == "one"
    # an error while writing: the old folder stays, no temporary folder is left behind
    with pytest.raises(RuntimeError):
        with atomic_folder(target) as tmp:
            (tmp / "a.txt").write_text("two")
            raise RuntimeError("disk full")
    assert (target / "a.txt").read_text() == "one"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    # the final rename fails: the old folder is put back
    real = os.replace
    calls = []

    def flaky(src, dst):
        calls.append((src, dst))
        if len(calls) == 2:
            raise OSError("rename failed")
        return real(src, dst)

    monkeypatch.setattr(ck.os, "replace", flaky)
    with pytest.raises(OSError, match="rename failed"):
        with atomic_folder(target) as tmp:
            (tmp / "a.txt").write_text("three")
    monkeypatch.setattr(ck.os, "replace", real)
    assert (target / "a.txt").read_text() == "one"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_skip_init_builds_without_random_init_and_restores_it():
    from ravlm_graph.utils.checkpoint import skip_init

    init_fns = {n: getattr(torch.nn.init, n) for n in ("uniform_", "normal_", "kaiming_uniform_", "ones_")}
    state = torch.get_rng_state()
    with skip_init():
        m = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.LayerNorm(4), torch.nn.Embedding(5, 4))
        assert torch.nn.init.normal_ is not init_fns["normal_"]
    # nothing drawn from the global generator, and the init functions are back
    assert torch.equal(torch.get_rng_state(), state)
    assert {n: getattr(torch.nn.init, n) for n in init_fns} == init_fns
    ref = _module()
    with skip_init():
        m = _module()
    m.load_state_dict(ref.state_dict(), strict=True)
    x = torch.randn(2, 3)
    assert torch.equal(m.eval()(x), ref.eval()(x))
    # restored even when the block raises
    with pytest.raises(RuntimeError), skip_init():
        raise RuntimeError("boom")
    assert torch.nn.init.uniform_ is init_fns["uniform_"]
