"""Suite-wide settings.

Tiny tensors on a shared 2-core machine run much faster on one torch thread (the
thread pool's synchronisation costs more than the work), so the suite uses one.
"""

import os
import tempfile

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
