"""Name -> implementation tables for the pluggable kinds (GNN, fusion, retrieval method,
detector, backbone).

An entry is either the object itself or a ``"module:attribute"`` string, resolved on first
use: a registry of detectors can then name the ones that need transformers or OpenCV
without importing them until one is asked for.
"""

from __future__ import annotations

import importlib
from typing import Any, Callable, Iterator

__all__ = ["Registry"]


class Registry:
    """A table of named implementations of one kind.

    Args:
        kind (str): what the entries are, for error messages (``"detector"``).

    Example::

        DETECTORS = Registry("detector")
        DETECTORS.register("given", GivenEntities)
        DETECTORS.register("owl", "ravlm_graph.grounding.detectors.owl:OwlDetector")
        DETECTORS.get("owl")  # the class, imported now
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, Any] = {}

    def register(self, name: str, target: Any = None) -> Any:
        """Add ``name``; used as ``register(name, obj)`` or as a decorator ``@register(name)``."""
        if not isinstance(name, str) or not name:
            raise ValueError(f"{self.kind} registry: expected a non-empty name, found {name!r}")
        if name in self._entries:
            raise ValueError(f"{self.kind} registry: {name!r} is already registered")
        if target is None:
            def deco(obj: Callable) -> Callable:
                self._entries[name] = obj
                return obj
            return deco
        self._entries[name] = target
        return target

    def unregister(self, name: str) -> None:
        """Remove ``name`` (for tests and plug-ins that replace an entry)."""
        self._entries.pop(name, None)

    def get(self, name: str) -> Any:
        """The implementation registered as ``name``.

        Raises:
            ValueError: ``name`` is not registered (the message lists the known names).
        """
        try:
            entry = self._entries[name]
        except (KeyError, TypeError):
            raise ValueError(f"unknown {self.kind} {name!r}; expected one of {self.names()}") from None
        if isinstance(entry, str):
            module, _, attr = entry.partition(":")
            entry = getattr(importlib.import_module(module), attr)
            self._entries[name] = entry
        return entry

    def name_of(self, obj: Any) -> str | None:
        """The name under which ``obj`` (or its class) is registered, or None.

        String entries are compared by their ``"module:attribute"`` text, so nothing is
        imported to answer.
        """
        target = obj if isinstance(obj, type) else type(obj)
        spelled = f"{target.__module__}:{target.__qualname__}"
        for name, entry in self._entries.items():
            if entry is target or entry == spelled:
                return name
        return None

    def names(self) -> tuple[str, ...]:
        """The registered names, sorted."""
        return tuple(sorted(self._entries))

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {list(self.names())})"
