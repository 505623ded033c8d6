"""Suite-wide settings.

Tiny tensors on a shared 2-core machine run much faster on one torch thread (the
thread pool's synchronisation costs more than the work), so the suite uses one.
"""

import os
import tempfile

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
# The suite's cache (built bundled stores, node embeddings) lives in the system temp
# folder, not in the user's cache; entries are keyed by content hash, so runs share it.
os.environ.setdefault("RAVLM_CACHE", os.path.join(tempfile.gettempdir(), f"ravlm-graph-test-cache-{os.getuid()}"))

try:
    import torch
except ImportError:  # kg_ingest alone does not need torch
    torch = None
else:
    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def one_torch_thread():
    """Torch on one thread for a module of tiny models: on tiny matrices thread start-up costs
    more than it saves (and two busy cores stall it). Use with
    ``pytestmark = pytest.mark.usefixtures("one_torch_thread")``."""
    torch = pytest.importorskip("torch")
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
