import pytest

torch = pytest.importorskip("torch")

from ravlm_graph.utils.threads import set_threads  # noqa: E402


def test_set_threads_sets_torch_and_refuses_zero():
    n = torch.get_num_threads()
    try:
        set_threads(2)
        assert torch.get_num_threads() == 2
        set_threads(1)
        assert torch.get_num_threads() == 1
        with pytest.raises(ValueError, match="threads: expected an integer >= 1, found 0"):
            set_threads(0)
    finally:
        torch.set_num_threads(n)


def test_threads_before_torch_is_imported_reach_torch_when_it_is():
    import os
    import subprocess
    import sys

    code = ("import sys; from ravlm_graph.utils.threads import set_threads; set_threads(1); "
            "assert 'torch' not in sys.modules; import torch; print(torch.get_num_threads())")
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
    assert out.stdout.strip() == "1"
