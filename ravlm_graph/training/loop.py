"""Training loop: single process or ``torchrun`` with DistributedDataParallel.

One loop for every model of the project: the model's ``forward(batch)`` returns
an output with a scalar ``loss``; the model has ``save_pretrained(path)``. The loop
is seeded (same seed, same data order, same result in one process), shows a tqdm
bar with the running loss, checkpoints every epoch, and resumes from the last
checkpoint (model weights, optimizer and scheduler state, epoch, RNG states).

Distributed: started by ``torchrun --nproc_per_node N``, each process reads
``RANK``/``WORLD_SIZE`` from the environment, joins a gloo (CPU) or NCCL (GPU)
process group, sees its own shard of the data (DistributedSampler), and rank 0
alone writes checkpoints and logs.
"""

from __future__ import annotations

import json
import logging
import math
import os
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence
from ravlm_graph.utils.checkpoint import atomic_folder, read_weights
from ravlm_graph.utils.config import Config

log = logging.getLogger(__name__)

STATE_NAME = "trainer_state.pt"


@dataclass
class TrainConfig(Config):
    """How to train.

    Args:
        out_dir (str): where checkpoints go (``out_dir/last`` and ``out_dir/final``).
        epochs (int): passes over the training data. Default 10.
        batch_size (int): examples per step and process. Default 32.
        lr (float): peak learning rate (AdamW, linear warm-up then cosine decay). Default 3e-4.
        weight_decay (float): AdamW weight decay. Default 0.01.
        warmup_ratio (float): share of steps spent warming up. Default 0.05.
        grad_clip (float): max gradient norm; 0 disables. Default 1.0.
        seed (int): seeds python, numpy and torch. Default 0.
        freeze_backbone (bool): train only the parts the model marks as trainable in
            frozen mode (``model.freeze_backbone()``). Default False (full fine-tuning).
        resume (bool): continue from ``out_dir/last`` when it exists. Default True.
        progress (bool): tqdm progress bar. Default True.
        max_steps (int): stop after this many optimizer steps (0: no limit). Default 0.
    """

    out_dir: str = "runs/default"
    epochs: int = 10
    batch_size: int = 32
    lr: float = 3e-4
    weight_decay: float = 0.01
    warmup_ratio: float = 0.05
    grad_clip: float = 1.0
    seed: int = 0
    freeze_backbone: bool = False
    resume: bool = True
    progress: bool = True
    max_steps: int = 0
    extra: dict = field(default_factory=dict)

    def __post_init__(self):
        for name in ("epochs", "batch_size"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"TrainConfig.{name}: expected a positive integer, found {v!r}")
        if not (isinstance(self.lr, (int, float)) and self.lr > 0):
            raise ValueError(f"TrainConfig.lr: expected a positive number, found {self.lr!r}")
        if not 0 <= self.warmup_ratio < 1:
            raise ValueError(f"TrainConfig.warmup_ratio: expected a number in [0, 1), found {self.warmup_ratio!r}")
        if self.max_steps < 0:
            raise ValueError(f"TrainConfig.max_steps: expected >= 0, found {self.max_steps!r}")


def seed_everything(seed: int) -> None:
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


@dataclass
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def init_distributed() -> DistInfo:
    """Join the process group when started by torchrun; a no-op otherwise."""
    import torch
    import torch.distributed as dist

    ws = int(os.environ.get("WORLD_SIZE", "1"))
    if ws <= 1:
        return DistInfo()
    if not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        dist.init_process_group(backend=backend)
    info = DistInfo(rank=dist.get_rank(), world_size=dist.get_world_size(),
                    local_rank=int(os.environ.get("LOCAL_RANK", "0")))
    if torch.cuda.is_available():
        torch.cuda.set_device(info.local_rank)
    return info


@dataclass
class TrainResult:
    """What a training run did."""

    epochs_run: int
    steps: int
    final_loss: float
    losses: list[float]
    seconds: float
    out_dir: str
    resumed_from_epoch: int = 0


def _lr_lambda(total: int, warmup: int):
    def f(step: int) -> float:
        if step < warmup:
            return (step + 1) / max(1, warmup)
        p = (step - warmup) / max(1, total - warmup)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, p)))

    return f


def train(model, train_data: Sequence[Any], collate: Callable[[list], Any], config: TrainConfig,
          on_epoch_end: Callable[[int, Any], dict | None] | None = None) -> TrainResult:
    """Train ``model`` on ``train_data`` (a sequence of examples) with ``collate``.

    Args:
        model: an ``nn.Module`` whose ``forward(batch)`` returns an object with ``loss``,
            and which has ``save_pretrained(path)``.
        train_data: indexable examples; ``collate(list_of_examples)`` builds a batch.
        config: :class:`TrainConfig`.
        on_epoch_end: called on the main process as ``on_epoch_end(epoch, model)``; a
            returned dict is logged with the epoch (e.g. validation accuracy).
    """
    import torch
    from torch.utils.data import DataLoader, DistributedSampler

    if len(train_data) == 0:
        raise ValueError("train: the training data is empty")
    dist_info = init_distributed()
    seed_everything(config.seed)
    out = Path(config.out_dir)
    if dist_info.is_main:
        out.mkdir(parents=True, exist_ok=True)
    if config.freeze_backbone:
        if not hasattr(model, "freeze_backbone"):
            raise ValueError(f"{type(model).__name__} has no frozen-backbone mode (freeze_backbone())")
        model.freeze_backbone()
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("train: the model has no trainable parameters")
    opt = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)

    gen = torch.Generator().manual_seed(config.seed)
    if dist_info.distributed:
        sampler = DistributedSampler(train_data, num_replicas=dist_info.world_size, rank=dist_info.rank,
                                     shuffle=True, seed=config.seed)
        loader = DataLoader(train_data, batch_size=config.batch_size, sampler=sampler, collate_fn=collate)
    else:
        sampler = None
        loader = DataLoader(train_data, batch_size=config.batch_size, shuffle=True, generator=gen,
                            collate_fn=collate)
    steps_per_epoch = len(loader)
    total = steps_per_epoch * config.epochs
    if config.max_steps:
        total = min(total, config.max_steps)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, _lr_lambda(total, int(config.warmup_ratio * total)))

    start_epoch, step, losses = 0, 0, []
    last = out / "last"
    if config.resume and (last / STATE_NAME).exists():
        _check_same_model(last, model)
        start_epoch, step, losses = _resume(last, model, opt, sched, gen)
        log.info("resumed from %s at epoch %d (step %d)", last, start_epoch, step)
    resumed_from = start_epoch

    ddp_model = model
    if dist_info.distributed:
        from torch.nn.parallel import DistributedDataParallel as DDP

        ddp_model = DDP(model, find_unused_parameters=True)

    t0 = time.perf_counter()
    epoch = start_epoch
    history: list[dict] = []
    for epoch in range(start_epoch, config.epochs):
        if sampler is not None:
            sampler.set_epoch(epoch)
        model.train()
        bar = None
        it = loader
        if config.progress and dist_info.is_main:
            from tqdm import tqdm

            bar = it = tqdm(loader, desc=f"epoch {epoch + 1}/{config.epochs}", dynamic_ncols=True, leave=False)
        run, n = 0.0, 0
        for batch in it:
            out_ = ddp_model(batch)
            loss = out_.loss
            if not torch.isfinite(loss):
                raise FloatingPointError(f"train: non-finite loss {loss.item()} at step {step}")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if config.grad_clip:
                torch.nn.utils.clip_grad_norm_(params, config.grad_clip)
            opt.step()
            sched.step()
            step += 1
            run += loss.item()
            n += 1
            if bar is not None:
                bar.set_postfix(loss=f"{run / n:.4f}", lr=f"{sched.get_last_lr()[0]:.2e}")
            if config.max_steps and step >= config.max_steps:
                break
        if bar is not None:
            bar.close()
        epoch_loss = run / max(1, n)
        if dist_info.distributed:
            t = torch.tensor([epoch_loss])
            torch.distributed.all_reduce(t)
            epoch_loss = t.item() / dist_info.world_size
        losses.append(epoch_loss)
        info = {"epoch": epoch + 1, "loss": round(epoch_loss, 5), "step": step}
        if dist_info.is_main:
            _checkpoint(last, model, opt, sched, gen, epoch + 1, step, losses, config)
            if on_epoch_end is not None:
                model.eval()
                extra = on_epoch_end(epoch, model) or {}
                info.update(extra)
            history.append(info)
            log.info("epoch %d/%d: %s", epoch + 1, config.epochs, json.dumps(info))
        if config.max_steps and step >= config.max_steps:
            epoch += 1
            break
    else:
        epoch = config.epochs
    if dist_info.is_main:
        model.save_pretrained(out / "final")
        (out / "history.json").write_text(json.dumps(history, indent=1))
    if dist_info.distributed:
        torch.distributed.barrier()
    return TrainResult(epochs_run=epoch - resumed_from, steps=step, final_loss=losses[-1] if losses else float("nan"),
                       losses=losses, seconds=time.perf_counter() - t0, out_dir=str(out),
                       resumed_from_epoch=resumed_from)


def _checkpoint(path: Path, model, opt, sched, gen, epoch: int, step: int, losses: list[float], config) -> None:
    import torch

    state = {"epoch": epoch, "step": step, "losses": losses, "optimizer": opt.state_dict(),
             "scheduler": sched.state_dict(), "torch_rng": torch.get_rng_state(), "generator": gen.get_state(),
             "config": json.dumps(asdict(config))}
    # Weights and trainer state replace the previous checkpoint together, or not at all.
    with atomic_folder(path) as tmp:
        model.save_pretrained(tmp)
        torch.save(state, tmp / STATE_NAME)


def _check_same_model(path: Path, model) -> None:
    """Refuse to resume a checkpoint of a differently configured model."""
    to_dict = getattr(getattr(model, "config", None), "to_dict", None)
    cp = path / "config.json"
    if to_dict is None or not cp.exists():
        return
    saved = {k: v for k, v in json.loads(cp.read_text()).items() if k not in ("format", "format_version")}
    now = json.loads(json.dumps(to_dict()))
    diff = sorted(k for k in set(saved) | set(now) if saved.get(k) != now.get(k))
    if diff:
        raise ValueError(f"{path}: the checkpoint to resume was made with another model configuration "
                         f"(differs in {diff[:5]}); use a new out_dir or resume=False")


def _resume(path: Path, model, opt, sched, gen):
    import torch


    read_weights(path, model)
    # weights_only: tensors and plain containers only, no arbitrary unpickling.
    state = torch.load(path / STATE_NAME, weights_only=True)
    opt.load_state_dict(state["optimizer"])
    sched.load_state_dict(state["scheduler"])
    torch.set_rng_state(state["torch_rng"])
    gen.set_state(state["generator"])
    return int(state["epoch"]), int(state["step"]), list(state["losses"])
