"""``bench_inference.py --floor``: its probes take parts out of an engine and put them back."""

from __future__ import annotations

import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from bench_inference import PROBES, _Probe  # noqa: E402


def _engine():
    fallback, layers = object(), nn.ModuleList([nn.Linear(2, 2)])
    det = SimpleNamespace(fallback=fallback)
    return SimpleNamespace(detector=det, model=SimpleNamespace(gnn=SimpleNamespace(layers=layers))), fallback, layers


@pytest.mark.parametrize("probe", PROBES)
def test_probe_takes_out_what_it_names_and_restores_it(probe):
    eng, fallback, layers = _engine()
    with _Probe(eng, probe):
        assert (eng.detector.fallback is None) == ("no fallback" in probe)
        assert (len(eng.model.gnn.layers) == 0) == ("no message passing" in probe)
    assert eng.detector.fallback is fallback and eng.model.gnn.layers is layers


def test_probe_restores_after_an_error():
    eng, fallback, layers = _engine()
    with pytest.raises(RuntimeError):
        with _Probe(eng, PROBES[-1]):
            raise RuntimeError("mid-run")
    assert eng.detector.fallback is fallback and eng.model.gnn.layers is layers


def test_probe_on_an_engine_without_detector_or_gnn():
    eng = SimpleNamespace(detector=None, model=SimpleNamespace())
    with _Probe(eng, PROBES[-1]):
        pass
    assert eng.detector is None


def test_probe_leaves_a_detector_without_fallback_as_it_was():
    det = SimpleNamespace(threshold=0.5)
    eng = SimpleNamespace(detector=det, model=SimpleNamespace())
    with _Probe(eng, "no fallback"):
        assert not hasattr(det, "fallback")
    assert vars(det) == {"threshold": 0.5}
