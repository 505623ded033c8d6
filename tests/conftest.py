"""Suite-wide settings.

Tiny tensors on a shared 2-core machine run much faster on one torch thread (the
thread pool's synchronisation costs more than the work), so the suite uses one.
"""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

try:
    import torch
except ImportError:  # kg_ingest alone does not need torch
    torch = None
else:
    torch.set_num_threads(1)
