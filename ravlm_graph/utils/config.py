"""Component configurations: one dataclass per component, validated on construction.

Each config round-trips through :meth:`to_dict` / :meth:`from_dict` (JSON-safe) so it
can be written as ``config.json`` next to a checkpoint.
"""

from __future__ import annotations

from dataclasses import fields
from typing import Any, Mapping


def _from_dict(cls, data: Mapping[str, Any]):
    names = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ValueError(f"{cls.__name__}: unknown fields {unknown}; expected some of {sorted(names)}")
    kwargs = {k: (tuple(v) if isinstance(v, list) else v) for k, v in data.items()}
    return cls(**kwargs)


def _check_range(owner: str, name: str, value, lo=None, hi=None, kind=(int, float)) -> None:
    if isinstance(value, bool) or not isinstance(value, kind):
        raise ValueError(f"{owner}.{name}: expected a number, found {value!r}")
    if lo is not None and value < lo:
        raise ValueError(f"{owner}.{name}: expected a value >= {lo}, found {value!r}")
    if hi is not None and value > hi:
        raise ValueError(f"{owner}.{name}: expected a value <= {hi}, found {value!r}")
