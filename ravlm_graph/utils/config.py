"""The base of every config dataclass, and the range checks they validate with.

A component's config is a dataclass deriving from :class:`Config`::

    @dataclass(frozen=True)
    class GNNConfig(Config):
        hidden_dim: int = 256

        def validate(self) -> None:
            check_int("GNNConfig", "hidden_dim", self.hidden_dim, 1, 65536)

It gets :meth:`Config.from_dict` (unknown keys are an error naming them and the known
ones; JSON lists become tuples where the field is a tuple), :meth:`Config.to_dict`
(JSON-safe), :meth:`Config.replace` (a validated copy) and :meth:`Config.validate`, run on
construction. A subclass with its own ``__post_init__`` validates there instead.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping, TypeVar

__all__ = ["Config", "check_bool", "check_choice", "check_fraction", "check_int", "check_range"]

C = TypeVar("C", bound="Config")


class Config:
    """Mixin base of the config dataclasses: ``from_dict``/``to_dict``/``replace``/``validate``."""

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise ``ValueError`` naming the field, what was expected and what was found."""

    def to_dict(self) -> dict[str, Any]:
        """The fields as a JSON-safe dict (tuples become lists)."""
        return _jsonable(dataclasses.asdict(self))

    @classmethod
    def from_dict(cls: type[C], data: Mapping[str, Any], where: str | None = None) -> C:
        """Build from a mapping (a parsed ``config.json`` or a recipe section).

        Args:
            data: field -> value; a key that is not a field is an error.
            where: what the data came from, for error messages (default: the class name).

        Raises:
            ValueError: not a mapping, unknown keys, or a value the config refuses.
        """
        owner = where or cls.__name__
        if not isinstance(data, Mapping):
            raise ValueError(f"{owner}: expected a JSON object of {cls.__name__} fields, "
                             f"found {type(data).__name__}")
        fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
        unknown = sorted(set(data) - set(fields))
        if unknown:
            raise ValueError(f"{owner}: unknown fields {unknown}; expected some of {sorted(fields)}")
        missing = sorted(n for n, f in fields.items() if n not in data and f.default is dataclasses.MISSING
                         and f.default_factory is dataclasses.MISSING)
        if missing:
            raise ValueError(f"{owner}: missing required fields {missing}")
        kwargs = {}
        for k, v in data.items():
            if isinstance(v, list) and "tuple" in str(fields[k].type):
                v = tuple(v)
            kwargs[k] = v
        try:
            return cls(**kwargs)
        except ValueError as e:
            if where and not str(e).startswith(where):
                raise type(e)(f"{where}: {e}") from e  # the same kind of error, with its source
            raise

    def replace(self: C, **changes: Any) -> C:
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)


def _jsonable(v: Any) -> Any:
    if isinstance(v, dict):
        return {k: _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    return v


def check_range(owner: str, name: str, value: Any, lo: float | None = None, hi: float | None = None,
                kind: type | tuple[type, ...] = (int, float)) -> None:
    """``owner.name`` must be a number of ``kind`` (never a bool) in ``[lo, hi]``."""
    if isinstance(value, bool) or not isinstance(value, kind):
        raise ValueError(f"{owner}.{name}: expected a number, found {value!r}")
    if lo is not None and value < lo:
        raise ValueError(f"{owner}.{name}: expected a value >= {lo}, found {value!r}")
    if hi is not None and value > hi:
        raise ValueError(f"{owner}.{name}: expected a value <= {hi}, found {value!r}")


def check_int(owner: str, name: str, value: Any, lo: int | None = None, hi: int | None = None) -> None:
    """``owner.name`` must be an integer in ``[lo, hi]`` (a bound may be None)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{owner}.{name}: expected an integer, found {value!r}")
    if lo is not None and value < lo:
        raise ValueError(f"{owner}.{name}: expected an integer >= {lo}, found {value!r}")
    if hi is not None and value > hi:
        raise ValueError(f"{owner}.{name}: expected an integer <= {hi}, found {value!r}")


def check_fraction(owner: str, name: str, value: Any) -> None:
    """``owner.name`` must be a number in [0, 1) (a dropout rate)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value < 1.0:
        raise ValueError(f"{owner}.{name}: expected a number in [0, 1), found {value!r}")


def check_bool(owner: str, name: str, value: Any) -> None:
    if not isinstance(value, bool):
        raise ValueError(f"{owner}.{name}: expected a bool, found {value!r}")


def check_choice(owner: str, name: str, value: Any, choices) -> None:
    """``owner.name`` must be one of ``choices`` (a sequence or a Registry)."""
    names = tuple(choices.names()) if hasattr(choices, "names") else tuple(choices)
    if value not in names:
        raise ValueError(f"{owner}.{name}: expected one of {names}, found {value!r}")


# Older spelling, kept for the modules that import it.
_check_range = check_range
