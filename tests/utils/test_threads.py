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
