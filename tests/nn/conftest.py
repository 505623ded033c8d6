"""The layer tests run torch on one thread: their tensors are tiny, and intra-op threads only
add contention (scatter_add_ got ~30x slower on a busy 2-core machine)."""

import pytest

torch = pytest.importorskip("torch")


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
