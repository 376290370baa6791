"""The HQ-SAM trainer: only the HQ parts learn; one process, or many under ``torchrun``.

What follows the official training (``train.py`` of SysCV/sam-hq) and the paper:

- Trainable: the HQ output token, its MLP and the three fusion convolutions
  (``learnable_hq_parameters``). The image encoder runs frozen under
  ``torch.no_grad()``; the prompt encoder and SAM's decoder are frozen too, but
  gradients flow through them to the HQ token. The whole model stays in eval
  mode (TinyViT's BatchNorm keeps its statistics; the HQ parts have no
  dropout or BatchNorm, so eval mode does not change them).
- Data: the seven HQSeg-44K training sets, flip + large-scale jitter to
  1024 x 1024, one prompt per image (box, 10 points or a noisy mask).
- Output: the HQ token's logits alone (``hq_token_only=True``, as the official
  ``train.py`` calls its decoder during training), ``[B,1,256,256]``.
- Loss: BCE + Dice on 12,544 importance-sampled points, against the
  full-resolution (1024 x 1024) soft ground truth, as the official
  ``loss_masks`` (no resizing of either side).
- Optimiser: Adam, lr 1e-3, x0.1 after epoch 10 (``StepLR``), 12 epochs,
  4 images per process (the paper: 8 GPUs, 32 images per step).

Around it: ``torchrun`` / DistributedDataParallel (gloo on the CPU, NCCL on
CUDA; detected from ``WORLD_SIZE`` / ``RANK`` / ``LOCAL_RANK``), AMP on CUDA,
a checkpoint ``OUT/epoch_{k}.pth`` after every epoch (and where ``max_steps``
stops), ``resume`` from the newest, a JSON-lines loss log, a progress bar, an
optional on-disk cache of the frozen encoder outputs, and at the end one
merged checkpoint ``OUT/sam_hq_{backbone}_trained.pth``: the whole model's
``state_dict`` with the official key names, which ``build_model``,
``hqsam-edge export`` and ``segment_anything_hq`` all load.

Every random draw is a function of ``(seed, epoch, index)`` or
``(seed, step, rank)``, so a run that stops and resumes ends where an
uninterrupted run ends.
"""

from __future__ import annotations

import dataclasses
import hashlib
import inspect
import json
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .. import progress
from ..atomic import note_kept, remove_stale
from ..data.prompts import Prompt
from ..errors import CheckpointError, DataError, UsageError
from .checkpoints import (epoch_checkpoints, hq_state_dict, load_training_checkpoint, save_training_checkpoint,
                          write_merged_checkpoint)
from .distributed import (DistContext, average, barrier, check_replicas_in_sync, dist_context, init_distributed,
                          select_device)
from .features import FeatureCache, encode_frozen
from .losses import mask_losses
from .spec import TrainSpec, TrainState

LOG_FILE = "train_log.jsonl"


@dataclass(frozen=True)
class TrainResult:
    """What a run produced (``merged_checkpoint`` is None on ranks other than 0)."""

    out: Path
    merged_checkpoint: Path | None
    state: TrainState
    losses: tuple[float, ...]  # total loss per step of this run (averaged over processes)
    world_size: int

    def summary(self) -> str:
        first = f"{self.losses[0]:.4f}" if self.losses else "-"
        last = f"{np.mean(self.losses[-5:]):.4f}" if self.losses else "-"
        s = self.state
        return (f"trained {len(self.losses)} steps on {self.world_size} process(es) (now at step {s.step}, "
                f"epoch {s.epoch}, batch {s.batch_in_epoch}); loss {first} -> {last} (mean of the last 5); "
                f"wrote {self.merged_checkpoint}")


# -- the trainable path -------------------------------------------------------
class HQHead(nn.Module):
    """The part of the model gradients flow through: feature fusion + prompt decoding.

    ``forward(image_embeddings [B,256,64,64], early_feature [B,C,64,64],
    prompts: B x Prompt)`` -> HQ-token logits ``[B,1,256,256]``, one decoder
    call per image (``Sam.decode`` takes P prompts of one image).
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, image_embeddings: torch.Tensor, early_feature: torch.Tensor,
                prompts: list[Prompt]) -> torch.Tensor:
        hq_features = self.model.mask_decoder.fuse_features(image_embeddings, early_feature)
        logits = []
        for i, p in enumerate(prompts):
            masks, _ = self.model.decode(
                image_embeddings[i : i + 1], hq_features[i : i + 1], p.point_coords[None], p.point_labels[None],
                p.mask_input[None], p.has_mask_input.reshape(1), multimask_output=False, hq_token_only=True,
            )
            logits.append(masks)
        return torch.cat(logits)


def freeze_all_but_hq(model: nn.Module) -> list[nn.Parameter]:
    """``requires_grad`` only on the HQ parameters; returns them. The model stays in eval mode."""
    from ..model.build import learnable_hq_parameters

    model.requires_grad_(False)
    params = learnable_hq_parameters(model)
    if not params:
        raise UsageError("this model has no HQ parts to train (build it with variant='hq')")
    for p in params:
        p.requires_grad_(True)
    return params


# -- data -----------------------------------------------------------------------
def epoch_batches(n: int, epoch: int, spec: TrainSpec, ctx: DistContext) -> list[list[int]]:
    """This rank's batches of sample indices for ``epoch`` (DistributedSampler order, last partial batch dropped)."""
    from torch.utils.data.distributed import DistributedSampler

    sampler = DistributedSampler(range(n), num_replicas=ctx.world_size, rank=ctx.rank, shuffle=True, seed=spec.seed)
    sampler.set_epoch(epoch)
    order = list(sampler)
    bs = spec.batch_size
    return [order[i : i + bs] for i in range(0, len(order) - bs + 1, bs)]


def _step_generator(spec: TrainSpec, step: int, ctx: DistContext) -> torch.Generator:
    seed = int(np.random.SeedSequence([spec.seed, step, ctx.rank]).generate_state(1)[0])
    return torch.Generator().manual_seed(seed)


def _log(ctx: DistContext, message: str) -> None:
    if ctx.is_main:
        print(message, file=sys.stderr, flush=True)


# -- the loop -------------------------------------------------------------------
def train(spec: TrainSpec) -> TrainResult:
    """Train the HQ parts as ``spec`` says; under torchrun, every process calls this."""
    ctx = dist_context()
    device = select_device(ctx, spec.device)
    init_distributed(ctx, device)
    try:
        with progress.reporting(progress.current() if ctx.is_main else None):  # one process reports
            return _train(spec, ctx, device)
    except BaseException:
        note_kept(f"kept the checkpoints in {spec.out} (continue with --resume)")
        raise
    finally:
        if ctx.distributed:
            import torch.distributed as dist

            if dist.is_initialized():
                dist.destroy_process_group()


def _build(spec: TrainSpec, device: torch.device) -> nn.Module:
    from ..model import build_model

    torch.manual_seed(spec.seed)  # the HQ parts' initialisation when starting from plain SAM
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*HQ parts of the model are untrained.*")
        model = build_model(spec.backbone, "hq", spec.checkpoint)
    return model.to(device).eval()


@dataclass
class _Run:
    """What one training run holds: the model and its trainable head, the optimiser and its schedule."""

    model: nn.Module
    net: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler
    use_amp: bool
    state: TrainState


def _resume_point(spec: TrainSpec, ctx: DistContext) -> tuple[dict | None, Path | None]:
    """The training checkpoint to continue from (``--resume``), or None; refuses to overwrite one."""
    out = Path(spec.out)
    existing = epoch_checkpoints(out)
    if existing and not spec.resume:
        raise UsageError(f"{out} already holds training checkpoints ({existing[-1].name}); "
                         "pass --resume to continue, or choose another --out")
    if spec.resume and existing:
        return load_training_checkpoint(existing[-1], spec, ctx), existing[-1]
    if spec.resume:
        _log(ctx, f"no checkpoint in {out} yet: starting from scratch")
    return None, None


def _wrap(net: nn.Module, ctx: DistContext, device: torch.device) -> nn.Module:
    """DistributedDataParallel around the head under torchrun."""
    if not ctx.distributed:
        return net
    from torch.nn.parallel import DistributedDataParallel

    # every process loaded the same checkpoint: no buffer syncing on each forward
    no_sync = ({"forward_sync_buffers": False}
               if "forward_sync_buffers" in inspect.signature(DistributedDataParallel).parameters
               else {"broadcast_buffers": False})
    return DistributedDataParallel(net, device_ids=[device.index] if device.type == "cuda" else None, **no_sync)


def _start(spec: TrainSpec, ctx: DistContext, device: torch.device) -> _Run:
    """The model, optimiser, schedule and counters: fresh, or from the checkpoint ``--resume`` names."""
    from torch.optim.lr_scheduler import StepLR

    ckpt, path = _resume_point(spec, ctx)
    model = _build(spec, device)
    params = freeze_all_but_hq(model)
    state = TrainState()
    if ckpt is not None:
        if set(ckpt["hq_state_dict"]) != set(hq_state_dict(model)):
            raise CheckpointError(f"{path} does not hold this model's HQ parameters; start a new --out")
        model.load_state_dict(ckpt["hq_state_dict"], strict=False)
        state = TrainState(ckpt["next_epoch"], ckpt["batch_in_epoch"], ckpt["step"])
        _log(ctx, f"resuming from {path} at epoch {state.epoch}, batch {state.batch_in_epoch}, step {state.step}")
    optimizer = torch.optim.Adam(params, lr=spec.lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0)
    scheduler = StepLR(optimizer, step_size=spec.lr_drop_epoch, gamma=spec.lr_gamma)
    use_amp = spec.amp and device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    if ckpt is not None:
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        if use_amp and ckpt["scaler"]:
            scaler.load_state_dict(ckpt["scaler"])
    return _Run(model, _wrap(HQHead(model), ctx, device), optimizer, scheduler, scaler, use_amp, state)


def _feature_cache(spec: TrainSpec, samples) -> FeatureCache | None:
    if not spec.cache_features:
        return None
    from ..digest import sha256_file

    key = {"backbone": spec.backbone, "checkpoint_sha256": sha256_file(spec.checkpoint),
           "images": hashlib.sha256("\n".join(str(s.image) for s in samples).encode()).hexdigest(),
           "augment": dataclasses.asdict(spec.augment), "seed": spec.seed}
    return FeatureCache(spec.cache_features, key)


def _epoch(run: _Run, spec: TrainSpec, ctx: DistContext, device: torch.device, loader, batches_per_epoch: int,
           cache: FeatureCache | None, losses: list[float]) -> list[float]:
    """Every batch of ``loader``: one step each, logged; the epoch's losses."""
    state, epoch = run.state, run.state.epoch
    log_file = Path(spec.out) / LOG_FILE
    t0 = time.time()
    epoch_losses = []
    with progress.stage(f"train: epoch {epoch + 1}/{spec.epochs}", total=batches_per_epoch, unit="step",
                        initial=state.batch_in_epoch) as bar:
        for batch in loader:
            _one_step(run, spec, ctx, device, batch, cache, losses, epoch_losses, log_file, t0, bar)
    return epoch_losses


def _one_step(run: _Run, spec: TrainSpec, ctx: DistContext, device: torch.device, batch: dict,
              cache: FeatureCache | None, losses: list[float], epoch_losses: list[float], log_file: Path, t0: float,
              bar: progress.Stage) -> None:
    """One optimiser step, its losses averaged over the processes, logged (the main process)."""
    state, epoch = run.state, run.state.epoch
    values = train_step(run.model, run.net, batch, run.optimizer, run.scaler, spec, device, cache,
                        _step_generator(spec, state.step, ctx), run.use_amp)
    state.step += 1
    state.batch_in_epoch += 1
    loss_mask, loss_dice = average([values["loss_mask"], values["loss_dice"]], ctx)
    losses.append(loss_mask + loss_dice)
    epoch_losses.append(loss_mask + loss_dice)
    if ctx.is_main:
        record = {"epoch": epoch, "step": state.step, "lr": run.optimizer.param_groups[0]["lr"],
                  "loss": loss_mask + loss_dice, "loss_mask": loss_mask, "loss_dice": loss_dice,
                  "world_size": ctx.world_size, "seconds": round(time.time() - t0, 3)}
        with open(log_file, "a") as f:
            f.write(json.dumps(record) + "\n")
        bar.advance(detail=f"loss {loss_mask + loss_dice:.4f}")


def _end_epoch(run: _Run, spec: TrainSpec, ctx: DistContext, batches_per_epoch: int, epoch_losses: list[float],
               cache: FeatureCache | None) -> None:
    """Step the schedule after a whole epoch; save ``epoch_{k}.pth`` (a whole or a stopped epoch)."""
    state, epoch = run.state, run.state.epoch
    complete = state.batch_in_epoch >= batches_per_epoch
    if complete:
        run.scheduler.step()
        state.epoch, state.batch_in_epoch = epoch + 1, 0
    if ctx.is_main:
        save_training_checkpoint(Path(spec.out) / f"epoch_{epoch}.pth", run.model, run.optimizer, run.scheduler,
                                 run.scaler, state, epoch, complete, spec, ctx)
        mean = float(np.mean(epoch_losses)) if epoch_losses else float("nan")
        _log(ctx, f"epoch {epoch} {'done' if complete else 'stopped'} at step {state.step}: "
                  f"mean loss {mean:.4f} over {len(epoch_losses)} steps"
                  + (f", feature cache {cache.hits} hits / {cache.misses} misses" if cache else ""))
    barrier(ctx)


def _train(spec: TrainSpec, ctx: DistContext, device: torch.device) -> TrainResult:
    from torch.utils.data import DataLoader

    from ..data.hqseg import HQSegTrainSet, collate_train, list_split

    out = Path(spec.out)
    samples = [s for ss in list_split(spec.data, spec.datasets, "train").values() for s in ss]
    batches_per_epoch = len(epoch_batches(len(samples), 0, spec, ctx))
    if batches_per_epoch == 0:
        raise DataError(f"{len(samples)} training images make no full batch of {spec.batch_size} on each of "
                        f"{ctx.world_size} process(es); lower --batch-size")
    run = _start(spec, ctx, device)
    cache = _feature_cache(spec, samples)
    dataset = HQSegTrainSet(samples, augment=spec.augment, prompts=spec.prompts, seed=spec.seed,
                            fixed_augmentation=cache is not None)
    if ctx.is_main:
        out.mkdir(parents=True, exist_ok=True)
        remove_stale(out)  # what a killed run left
    barrier(ctx)
    losses: list[float] = []
    _log(ctx, f"training {spec.backbone}: {len(samples)} images, {batches_per_epoch} steps/epoch x "
              f"{spec.epochs} epochs, batch {spec.batch_size} x {ctx.world_size} process(es) on {device}")
    state = run.state
    while state.epoch < spec.epochs and (spec.max_steps is None or state.step < spec.max_steps):
        dataset.set_epoch(state.epoch)
        batches = epoch_batches(len(samples), state.epoch, spec, ctx)[state.batch_in_epoch :]
        if spec.max_steps is not None:
            batches = batches[: spec.max_steps - state.step]
        loader = DataLoader(dataset, batch_sampler=batches, num_workers=spec.workers, collate_fn=collate_train,
                            pin_memory=device.type == "cuda")
        epoch_losses = _epoch(run, spec, ctx, device, loader, batches_per_epoch, cache, losses)
        _end_epoch(run, spec, ctx, batches_per_epoch, epoch_losses, cache)
    check_replicas_in_sync(run.model, ctx)
    merged = write_merged_checkpoint(run.model, out / spec.merged_name) if ctx.is_main else None
    barrier(ctx)
    return TrainResult(out, merged, state, tuple(losses), ctx.world_size)


def train_step(model: nn.Module, net: nn.Module, batch: dict, optimizer, scaler, spec: TrainSpec,
               device: torch.device, cache: FeatureCache | None, generator: torch.Generator,
               use_amp: bool) -> dict[str, float]:
    """One optimiser step on a collated batch; returns the (local) loss values."""
    image = batch["image"].to(device, non_blocking=True)
    target = batch["target"].to(device, non_blocking=True)
    prompts = [p.to(device) for p in batch["prompts"]]
    with torch.autocast(device.type, dtype=torch.float16, enabled=use_amp):
        image_embeddings, early = encode_frozen(model, image, batch["index"].tolist(), cache)
        logits = net(image_embeddings, early, prompts)
    losses = mask_losses(logits, target, spec.loss, generator)
    loss = losses["loss_mask"] + losses["loss_dice"]
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    scaler.step(optimizer)
    scaler.update()
    return {k: float(v.detach()) for k, v in losses.items()}
