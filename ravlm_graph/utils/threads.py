"""The number of torch CPU threads a command runs with."""

from __future__ import annotations

import os
import sys

__all__ = ["set_threads"]


def set_threads(n: int) -> None:
    """``torch.set_num_threads(n)``; when torch is not imported yet, ``OMP_NUM_THREADS=n``
    instead, which torch reads when it is imported (a command that never needs torch, such
    as ``ravlm retrieve``, does not pay for importing it).

    One question through the built-in model is a few milliseconds of small matrix products:
    a second thread gains nothing, and on a busy machine its pool's spinning and waking
    cost more CPU time than the work (measured on 2 cores at load 7-9: 0.05 CPU-s per
    answer with 1 thread, 0.1-1.3 CPU-s with 2). The shipped engines' answers on the
    built-in val questions were bitwise the same with 1 and 2 threads.
    """
    if n < 1:
        raise ValueError(f"threads: expected an integer >= 1, found {n}")
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(int(n))
    else:
        os.environ["OMP_NUM_THREADS"] = str(int(n))
