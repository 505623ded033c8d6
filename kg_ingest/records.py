"""The record types that flow from parsers to the builder, and ingest statistics."""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from typing import NamedTuple


class Assertion(NamedTuple):
    """One parsed edge, before it reaches the store.

    ``relation`` is the source's relation name (``IsA``, ``/r/IsA``, ``atlocation``);
    ``head``/``tail`` are normalised concept names (``ice_cream``); ``line`` is the
    1-based input line (0 when the source has no lines, e.g. Turtle).
    """

    relation: str
    head: str
    tail: str
    weight: float = 1.0
    surface: str | None = None
    line: int = 0


@dataclass
class IngestStats:
    """What one ingest did; printed as the end summary and saved in the store's metadata."""

    source: str = ""
    lines_read: int = 0
    records: int = 0  # records that reached the builder
    kept: int = 0  # edges stored after merging parallel edges (incl. inverses)
    merged_parallel: int = 0
    skipped: Counter = field(default_factory=Counter)
    malformed_samples: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)  # input read but partly ignored (trailing gzip data)
    max_samples: int = 5
    started: float = field(default_factory=time.perf_counter)
    seconds: float = 0.0
    peak_rss_mb: float = 0.0

    def malformed(self, reason: str, message: str) -> None:
        self.skipped["malformed: " + reason] += 1
        if len(self.malformed_samples) < self.max_samples:
            self.malformed_samples.append(message)

    @property
    def n_malformed(self) -> int:
        return sum(v for k, v in self.skipped.items() if k.startswith("malformed"))

    def to_dict(self) -> dict:
        return {
            "source": self.source,
            "lines_read": self.lines_read,
            "records": self.records,
            "kept_edges": self.kept,
            "merged_parallel": self.merged_parallel,
            "skipped": dict(sorted(self.skipped.items())),
            "malformed_samples": list(self.malformed_samples),
            "warnings": list(self.warnings),
            "seconds": round(self.seconds, 3),
            "peak_rss_mb": round(self.peak_rss_mb, 1),
        }
