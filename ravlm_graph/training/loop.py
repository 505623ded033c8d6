"""Training loop: single process or ``torchrun`` with DistributedDataParallel.

One loop for every model of the project (the knowledge-VQA model, the CommonsenseQA
scorer, the image taggers): the model's ``forward(batch)`` returns an output with a
scalar ``loss``; the model has ``save_pretrained(path)``. The loop is seeded (same seed,
same data order, same result in one process), shows a tqdm bar with the running loss,
checkpoints every epoch (the model in ``out_dir/last``; the optimizer and scheduler
state, epoch, RNG states and best epoch so far in ``out_dir/trainer_state.pt``), and
resumes from there.

An ``on_epoch_end`` callback may return metrics (say, held-out accuracy); with
``select_metric`` the loop keeps the weights of the best epoch (``out_dir/best``),
stops early after ``patience`` epochs without improvement, and ends with the best
weights loaded. With ``out_dir=""`` nothing is written (no checkpoints, no resume).

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
from ravlm_graph.utils.checkpoint import read_weights
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
        backbone_lr (float): learning rate of ``model.backbone_parameters()`` (a pretrained
            trunk fine-tuned more gently than the new layers); 0: ``lr`` for all. Default 0.
        select_metric (str): key of the dict returned by ``on_epoch_end`` (higher is better)
            that picks the best epoch, whose weights the model ends with; "" keeps the last.
        patience (int): with ``select_metric``, stop after this many epochs without a better
            value (0: never stop early). Default 0.
        lr_schedule (str): after the warm-up, ``"cosine"`` decay to 0 or ``"constant"``.
            Default ``"cosine"``.
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
    backbone_lr: float = 0.0
    select_metric: str = ""
    patience: int = 0
    lr_schedule: str = "cosine"
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
        for name in ("max_steps", "patience"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise ValueError(f"TrainConfig.{name}: expected an integer >= 0, found {v!r}")
        if not (isinstance(self.backbone_lr, (int, float)) and self.backbone_lr >= 0):
            raise ValueError(f"TrainConfig.backbone_lr: expected a number >= 0, found {self.backbone_lr!r}")
        if self.lr_schedule not in ("cosine", "constant"):
            raise ValueError(f"TrainConfig.lr_schedule: expected 'cosine' or 'constant', found {self.lr_schedule!r}")
        if self.patience and not self.select_metric:
            raise ValueError("TrainConfig.patience: early stopping needs select_metric (the metric to watch)")


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
    history: list[dict] = field(default_factory=list)
    best_epoch: int | None = None
    best_metric: float | None = None


def _lr_lambda(total: int, warmup: int, schedule: str = "cosine"):
    def f(step: int) -> float:
        if step < warmup:
            return (step + 1) / max(1, warmup)
        if schedule == "constant":
            return 1.0
        p = (step - warmup) / max(1, total - warmup)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, p)))

    return f


def train(model, train_data: Sequence[Any], collate: Callable[[list], Any], config: TrainConfig,
          on_epoch_end: Callable[[int, Any], dict | None] | None = None) -> TrainResult:
    """Train ``model`` on ``train_data`` (a sequence of examples) with ``collate``.

    Args:
        model: an ``nn.Module`` whose ``forward(batch)`` returns an object with ``loss``,
            and which has ``save_pretrained(path)`` (unless ``config.out_dir`` is "").
        train_data: indexable examples; ``collate(list_of_examples)`` builds a batch.
        config: :class:`TrainConfig`.
        on_epoch_end: called on the main process as ``on_epoch_end(epoch, model)`` with the
            model in eval mode; a returned dict is logged with the epoch (e.g. validation
            accuracy) and may hold ``config.select_metric``.
    """
    import torch
    from torch.utils.data import DataLoader, DistributedSampler

    if len(train_data) == 0:
        raise ValueError("train: the training data is empty")
    if config.select_metric and on_epoch_end is None:
        raise ValueError(f"train: select_metric={config.select_metric!r} needs an on_epoch_end callback "
                         f"that returns it")
    dist_info = init_distributed()
    seed_everything(config.seed)
    out = Path(config.out_dir) if config.out_dir else None
    if out is not None and dist_info.is_main:
        out.mkdir(parents=True, exist_ok=True)
    if config.freeze_backbone:
        if not hasattr(model, "freeze_backbone"):
            raise ValueError(f"{type(model).__name__} has no frozen-backbone mode (freeze_backbone())")
        model.freeze_backbone()
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("train: the model has no trainable parameters")
    check_trainable_dtypes(model)
    opt = torch.optim.AdamW(_param_groups(model, params, config), lr=config.lr, weight_decay=config.weight_decay)

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
    sched = torch.optim.lr_scheduler.LambdaLR(opt, _lr_lambda(total, int(config.warmup_ratio * total), config.lr_schedule))

    progress = _Progress()
    last = out / "last" if out is not None else None
    if config.resume and last is not None and (out / STATE_NAME).exists() and last.exists():
        _check_same_model(last, model)
        progress = _resume(last, model, opt, sched, gen)
        log.info("resumed from %s at epoch %d (step %d)", last, progress.epoch, progress.step)
    resumed_from = start_epoch = progress.epoch
    best_state = None  # weights of the best epoch of this process (None: in out_dir/best, or none yet)

    ddp_model = model
    if dist_info.distributed:
        from torch.nn.parallel import DistributedDataParallel as DDP

        ddp_model = DDP(model, find_unused_parameters=True)

    t0 = time.perf_counter()
    epoch = start_epoch
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
                raise FloatingPointError(f"train: non-finite loss {loss.item()} at step {progress.step}")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if config.grad_clip:
                torch.nn.utils.clip_grad_norm_(params, config.grad_clip)
            opt.step()
            sched.step()
            progress.step += 1
            run += loss.item()
            n += 1
            if bar is not None:
                bar.set_postfix(loss=f"{run / n:.4f}", lr=f"{sched.get_last_lr()[0]:.2e}")
            if config.max_steps and progress.step >= config.max_steps:
                break
        if bar is not None:
            bar.close()
        epoch_loss = run / max(1, n)
        if dist_info.distributed:
            t = torch.tensor([epoch_loss])
            torch.distributed.all_reduce(t)
            epoch_loss = t.item() / dist_info.world_size
        progress.losses.append(epoch_loss)
        progress.epoch = epoch + 1
        info = {"epoch": epoch + 1, "loss": round(epoch_loss, 5), "step": progress.step}
        stop = bool(config.max_steps and progress.step >= config.max_steps)
        if dist_info.is_main:
            if on_epoch_end is not None:
                model.eval()
                info.update(on_epoch_end(epoch, model) or {})
            if config.select_metric:
                if config.select_metric not in info:
                    raise ValueError(f"train: on_epoch_end returned {sorted(info)}, expected the "
                                     f"select_metric {config.select_metric!r} among them")
                value = float(info[config.select_metric])
                if progress.best_metric is None or value > progress.best_metric:
                    progress.best_metric, progress.best_epoch = value, epoch + 1
                    best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
                    if out is not None:
                        model.save_pretrained(out / "best")
                elif config.patience and epoch + 1 - progress.best_epoch >= config.patience:
                    log.info("no better %s for %d epochs: stopping", config.select_metric, config.patience)
                    stop = True
            progress.history.append(info)
            if last is not None:
                _checkpoint(last, model, opt, sched, gen, progress, config)
            log.info("epoch %d/%d: %s", epoch + 1, config.epochs, json.dumps(info))
        if dist_info.distributed:
            flag = torch.tensor([int(stop)])
            torch.distributed.broadcast(flag, 0)
            stop = bool(flag.item())
        if stop:
            epoch += 1
            break
    else:
        epoch = config.epochs
    if config.select_metric and progress.best_epoch is not None:
        if best_state is not None:
            model.load_state_dict(best_state)
        elif out is not None:
            read_weights(out / "best", model)  # the best epoch came before a resume
    if dist_info.is_main and out is not None:
        model.save_pretrained(out / "final")
        (out / "history.json").write_text(json.dumps(progress.history, indent=1))
    if dist_info.distributed:
        torch.distributed.barrier()
    losses = progress.losses
    return TrainResult(epochs_run=epoch - resumed_from, steps=progress.step,
                       final_loss=losses[-1] if losses else float("nan"), losses=losses,
                       seconds=time.perf_counter() - t0, out_dir=str(out) if out is not None else "",
                       resumed_from_epoch=resumed_from, history=progress.history, best_epoch=progress.best_epoch,
                       best_metric=progress.best_metric)


def check_trainable_dtypes(model) -> None:
    """Refuse float16 weights that train: AdamW's updates of float16 weights overflow to NaN
    within a step or two (float32 and bfloat16 train)."""
    import torch

    half = [n for n, p in model.named_parameters() if p.requires_grad and p.dtype == torch.float16]
    if half:
        raise ValueError(f"train: {len(half)} weights that train are float16 ({half[0]}, ...), and AdamW's updates "
                         f"of float16 weights overflow to NaN; load the backbone in 'bfloat16' or 'float32' "
                         f"(a recipe's model.backbone.dtype), or train LoRA adapters instead of backbone.train "
                         f"weights (adapters are kept in float32)")


def _param_groups(model, params: list, config: TrainConfig) -> list[dict]:
    """One AdamW group, or two when the backbone has its own learning rate."""
    if not config.backbone_lr:
        return [{"params": params}]
    if not hasattr(model, "backbone_parameters"):
        raise ValueError(f"TrainConfig.backbone_lr needs a model with backbone_parameters(); "
                         f"{type(model).__name__} has none")
    trunk = {id(p) for p in model.backbone_parameters()}
    groups = [{"params": [p for p in params if id(p) in trunk], "lr": config.backbone_lr},
              {"params": [p for p in params if id(p) not in trunk]}]
    return [g for g in groups if g["params"]]


@dataclass
class _Progress:
    """Where a run stands; saved with every checkpoint so that a resumed run continues it."""

    epoch: int = 0
    step: int = 0
    losses: list[float] = field(default_factory=list)
    history: list[dict] = field(default_factory=list)
    best_epoch: int | None = None
    best_metric: float | None = None


def _checkpoint(path: Path, model, opt, sched, gen, progress: _Progress, config) -> None:
    import torch

    model.save_pretrained(path)
    state = {"epoch": progress.epoch, "step": progress.step, "losses": progress.losses,
             "history": json.dumps(progress.history), "best_epoch": progress.best_epoch,
             "best_metric": progress.best_metric, "optimizer": opt.state_dict(),
             "scheduler": sched.state_dict(), "torch_rng": torch.get_rng_state(), "generator": gen.get_state(),
             "config": json.dumps(asdict(config))}
    # Beside the model folder, not in it: ``last`` stays a plain checkpoint of the model,
    # which loaders that refuse pickle files (the state is read with weights_only) accept.
    tmp = path.parent / (STATE_NAME + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path.parent / STATE_NAME)


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


def _resume(path: Path, model, opt, sched, gen) -> _Progress:
    import torch

    read_weights(path, model)
    # weights_only: tensors and plain containers only, no arbitrary unpickling.
    state = torch.load(path.parent / STATE_NAME, weights_only=True)
    opt.load_state_dict(state["optimizer"])
    sched.load_state_dict(state["scheduler"])
    torch.set_rng_state(state["torch_rng"])
    gen.set_state(state["generator"])
    return _Progress(epoch=int(state["epoch"]), step=int(state["step"]), losses=list(state["losses"]),
                     history=json.loads(state.get("history", "[]")), best_epoch=state.get("best_epoch"),
                     best_metric=state.get("best_metric"))
