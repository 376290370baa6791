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
import os
import re
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..atomic import write_text
from ..data.augment import AugmentSpec
from ..data.prompts import Prompt, PromptSpec
from ..errors import CheckpointError, DataError, UsageError
from .losses import LossSpec, mask_losses

CHECKPOINT_FORMAT = "hqsam-edge-train/1"
LOG_FILE = "train_log.jsonl"
_EPOCH_FILE = re.compile(r"^epoch_(\d+)\.pth$")


@dataclass(frozen=True)
class TrainSpec:
    """Everything ``hqsam-edge train`` decides; the defaults are the paper's.

    ``checkpoint``: a plain SAM / MobileSAM checkpoint (the HQ parts start from
    a seeded random initialisation, as the paper) or an HQ-SAM one (fine-tune).
    ``batch_size`` is per process. ``max_steps`` stops early (smoke runs).
    ``datasets``: names of training sets (empty: all seven).

    ``cache_features``: a folder for the frozen encoder outputs (fp16, one
    file per training image, about 3.5 MiB for ``vit_tiny`` and 12 MiB for
    ``vit_h``). Augmentation changes every epoch, so cached features are
    only valid if it does not: with a cache each image keeps one fixed
    flip/LSJ draw for the whole run (prompts still change every epoch). That
    trades augmentation variety for epochs that skip the encoder; leave it
    off to train as the paper.
    """

    backbone: str
    checkpoint: str
    data: str
    out: str
    epochs: int = 12
    max_steps: int | None = None
    batch_size: int = 4
    lr: float = 1e-3
    lr_drop_epoch: int = 10
    lr_gamma: float = 0.1
    datasets: tuple[str, ...] = ()
    resume: bool = False
    seed: int = 42
    workers: int = 2
    amp: bool = True  # mixed precision on CUDA; ignored on the CPU
    device: str | None = None  # default: cuda:LOCAL_RANK if CUDA is present, else cpu
    cache_features: str | None = None
    augment: AugmentSpec = field(default_factory=AugmentSpec)
    prompts: PromptSpec = field(default_factory=PromptSpec)
    loss: LossSpec = field(default_factory=LossSpec)
    progress: bool = True

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "lr_drop_epoch"):
            if getattr(self, name) < 1:
                raise UsageError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}")
        if self.max_steps is not None and self.max_steps < 1:
            raise UsageError(f"--max-steps must be at least 1, got {self.max_steps}")
        if not self.lr > 0:
            raise UsageError(f"--lr must be positive, got {self.lr}")
        if self.workers < 0:
            raise UsageError(f"--workers must be 0 or more, got {self.workers}")

    @property
    def merged_name(self) -> str:
        return f"sam_hq_{self.backbone}_trained.pth"


@dataclass
class TrainState:
    """Where training stands: ``epoch`` to run next, batches of it already done, optimiser steps in all."""

    epoch: int = 0
    batch_in_epoch: int = 0
    step: int = 0


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


# -- distributed --------------------------------------------------------------
@dataclass(frozen=True)
class DistContext:
    """This process in the job: from torchrun's ``RANK`` / ``WORLD_SIZE`` / ``LOCAL_RANK``."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def dist_context() -> DistContext:
    env = os.environ
    try:
        return DistContext(int(env.get("RANK", 0)), int(env.get("WORLD_SIZE", 1)), int(env.get("LOCAL_RANK", 0)))
    except ValueError:
        raise UsageError("RANK / WORLD_SIZE / LOCAL_RANK must be integers (set by torchrun)") from None


def select_device(ctx: DistContext, device: str | None) -> torch.device:
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    dev = torch.device(device)
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise UsageError("--device cuda was asked for, but no CUDA device is present")
        if dev.index is None:
            dev = torch.device("cuda", ctx.local_rank % torch.cuda.device_count())
        torch.cuda.set_device(dev)
    return dev


def init_distributed(ctx: DistContext, device: torch.device) -> None:
    """Join the torchrun job: NCCL on CUDA, gloo on the CPU (no-op for one process)."""
    import torch.distributed as dist

    if ctx.distributed and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")


def _barrier(ctx: DistContext) -> None:
    if ctx.distributed:
        import torch.distributed as dist

        dist.barrier()


def _average(values: list[float], ctx: DistContext) -> list[float]:
    if not ctx.distributed:
        return values
    import torch.distributed as dist

    t = torch.tensor(values, dtype=torch.float64)
    if dist.get_backend() == "nccl":
        t = t.cuda()
    dist.all_reduce(t)
    return (t / ctx.world_size).cpu().tolist()


def check_replicas_in_sync(model: nn.Module, ctx: DistContext) -> None:
    """Every process must hold the same HQ weights after training (DDP averages the gradients)."""
    if not ctx.distributed:
        return
    import torch.distributed as dist

    local = torch.stack([p.detach().double().sum() for p in _hq_params(model)] or [torch.zeros(())])
    gathered = [torch.zeros_like(local) for _ in range(ctx.world_size)]
    if dist.get_backend() == "nccl":
        local, gathered = local.cuda(), [g.cuda() for g in gathered]
    dist.all_gather(gathered, local)
    spread = max(float((g - gathered[0]).abs().max()) for g in gathered)
    if spread > 1e-6 * (1 + float(gathered[0].abs().max())):
        raise RuntimeError(f"the {ctx.world_size} processes hold different HQ weights (spread {spread:.3g})")


def _hq_params(model: nn.Module) -> list[nn.Parameter]:
    from ..model.build import learnable_hq_parameters

    return learnable_hq_parameters(model)


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


def normalise(model: nn.Module, image: torch.Tensor) -> torch.Tensor:
    """uint8 ``[B,3,1024,1024]`` -> the encoder input (SAM's mean/std; already 1024 square)."""
    return (image.float() - model.pixel_mean) / model.pixel_std


# -- frozen-feature cache -----------------------------------------------------
class FeatureCache:
    """The frozen encoder outputs per training image, on disk (fp16, written atomically).

    A sub-folder named by a digest of everything the features depend on (the
    encoder checkpoint's sha256, the image list, the augmentation options and
    seed), so a changed input never reads stale features. Only valid with
    fixed per-image augmentation (see ``TrainSpec``).
    """

    def __init__(self, folder: str | Path, key: dict) -> None:
        digest = hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:16]
        self.folder = Path(folder) / digest
        self.folder.mkdir(parents=True, exist_ok=True)
        key_file = self.folder / "key.json"
        if not key_file.exists():
            write_text(key_file, json.dumps(key, sort_keys=True, default=str, indent=1))
        self.hits = 0
        self.misses = 0

    def path(self, index: int) -> Path:
        return self.folder / f"{index:08d}.pt"

    def get(self, index: int) -> tuple[torch.Tensor, torch.Tensor] | None:
        path = self.path(index)
        if not path.is_file():
            return None
        try:
            obj = torch.load(path, map_location="cpu", weights_only=True)
            return obj["image_embeddings"], obj["early_feature"]
        except Exception:  # noqa: BLE001 - a torn or foreign file: recompute it
            return None

    def put(self, index: int, image_embeddings: torch.Tensor, early_feature: torch.Tensor) -> None:
        obj = {"image_embeddings": image_embeddings.detach().to("cpu", torch.float16).clone(),
               "early_feature": early_feature.detach().to("cpu", torch.float16).clone()}
        _atomic_save(obj, self.path(index))


@torch.no_grad()
def encode_frozen(
    model: nn.Module, image: torch.Tensor, indices: list[int], cache: FeatureCache | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """The frozen image encoder: uint8 ``[B,3,1024,1024]`` -> ``image_embeddings [B,256,64,64]`` and
    the early feature ``[B,C,64,64]``; from ``cache`` where it has them."""
    if cache is None:
        return model.image_encoder(normalise(model, image))
    found = [cache.get(i) for i in indices]
    missing = [k for k, f in enumerate(found) if f is None]
    if missing:
        emb, early = model.image_encoder(normalise(model, image[missing]))
        for j, k in enumerate(missing):
            cache.put(indices[k], emb[j], early[j])
            # what the cache holds (fp16), so that a run does not depend on whether the cache was warm
            found[k] = (emb[j].to(torch.float16), early[j].to(torch.float16))
    cache.hits += len(indices) - len(missing)
    cache.misses += len(missing)
    dtype = torch.get_autocast_dtype(image.device.type) if torch.is_autocast_enabled(image.device.type) else torch.float32
    return (torch.stack([f[0] for f in found]).to(image.device, dtype),
            torch.stack([f[1] for f in found]).to(image.device, dtype))


# -- checkpoints ----------------------------------------------------------------
def _atomic_save(obj: object, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def epoch_checkpoints(out: str | Path) -> list[Path]:
    """``OUT/epoch_{k}.pth`` files, oldest first."""
    out = Path(out)
    if not out.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in out.iterdir() if (m := _EPOCH_FILE.match(p.name))]
    return [p for _, p in sorted(found)]


def hq_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    from ..model.build import HQ_PARAMETER_PREFIXES

    return {k: v.detach().cpu().clone() for k, v in model.state_dict().items() if k.startswith(HQ_PARAMETER_PREFIXES)}


def save_training_checkpoint(path: Path, model: nn.Module, optimizer, scheduler, scaler, state: TrainState,
                             epoch: int, complete: bool, spec: TrainSpec, ctx: DistContext) -> None:
    """``epoch_{k}.pth``: HQ weights, optimiser, scheduler, scaler and the counters."""
    _atomic_save({
        "format": CHECKPOINT_FORMAT,
        "backbone": spec.backbone,
        "hq_state_dict": hq_state_dict(model),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "scaler": scaler.state_dict(),
        "epoch": epoch,
        "epoch_complete": complete,
        "next_epoch": state.epoch,
        "batch_in_epoch": state.batch_in_epoch,
        "step": state.step,
        "world_size": ctx.world_size,
        "batch_size": spec.batch_size,
        "spec": json.loads(json.dumps(dataclasses.asdict(spec), default=str)),
    }, path)


def load_training_checkpoint(path: Path, spec: TrainSpec, ctx: DistContext) -> dict:
    """Read and check ``epoch_{k}.pth`` for resuming with ``spec`` on ``ctx.world_size`` processes."""
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure means a bad file
        raise CheckpointError(f"cannot read training checkpoint {path}: {str(exc).splitlines()[0][:200]}") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path} is not an hqsam-edge training checkpoint")
    if ckpt["backbone"] != spec.backbone:
        raise UsageError(f"{path} was trained with --backbone {ckpt['backbone']}, not {spec.backbone}")
    partial = ckpt["batch_in_epoch"] > 0
    if partial and (ckpt["world_size"], ckpt["batch_size"]) != (ctx.world_size, spec.batch_size):
        raise UsageError(
            f"{path} stopped inside an epoch with {ckpt['world_size']} process(es) x batch {ckpt['batch_size']}; "
            f"resume it with the same (now {ctx.world_size} x {spec.batch_size}), or resume from a finished epoch"
        )
    return ckpt


def write_merged_checkpoint(model: nn.Module, path: Path) -> Path:
    """The whole model's ``state_dict`` (official key names: SAM weights + HQ decoder), atomically."""
    _atomic_save({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}, path)
    return path


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
        return _train(spec, ctx, device)
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


def _train(spec: TrainSpec, ctx: DistContext, device: torch.device) -> TrainResult:
    from torch.optim.lr_scheduler import StepLR
    from torch.utils.data import DataLoader

    from ..data.hqseg import HQSegTrainSet, collate_train, list_split

    out = Path(spec.out)
    samples = [s for ss in list_split(spec.data, spec.datasets, "train").values() for s in ss]
    batches_per_epoch = len(epoch_batches(len(samples), 0, spec, ctx))
    if batches_per_epoch == 0:
        raise DataError(f"{len(samples)} training images make no full batch of {spec.batch_size} on each of "
                        f"{ctx.world_size} process(es); lower --batch-size")
    existing = epoch_checkpoints(out)
    if existing and not spec.resume:
        raise UsageError(f"{out} already holds training checkpoints ({existing[-1].name}); "
                         "pass --resume to continue, or choose another --out")
    ckpt = load_training_checkpoint(existing[-1], spec, ctx) if spec.resume and existing else None

    model = _build(spec, device)
    params = freeze_all_but_hq(model)
    state = TrainState()
    if ckpt is not None:
        if set(ckpt["hq_state_dict"]) != set(hq_state_dict(model)):
            raise CheckpointError(f"{existing[-1]} does not hold this model's HQ parameters; start a new --out")
        model.load_state_dict(ckpt["hq_state_dict"], strict=False)
        state = TrainState(ckpt["next_epoch"], ckpt["batch_in_epoch"], ckpt["step"])
        _log(ctx, f"resuming from {existing[-1]} at epoch {state.epoch}, batch {state.batch_in_epoch}, step {state.step}")
    elif spec.resume:
        _log(ctx, f"no checkpoint in {out} yet: starting from scratch")

    net: nn.Module = HQHead(model)
    if ctx.distributed:
        from torch.nn.parallel import DistributedDataParallel

        # every process loaded the same checkpoint: no buffer syncing on each forward
        no_sync = ({"forward_sync_buffers": False}
                   if "forward_sync_buffers" in inspect.signature(DistributedDataParallel).parameters
                   else {"broadcast_buffers": False})
        net = DistributedDataParallel(net, device_ids=[device.index] if device.type == "cuda" else None, **no_sync)
    optimizer = torch.optim.Adam(params, lr=spec.lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0)
    scheduler = StepLR(optimizer, step_size=spec.lr_drop_epoch, gamma=spec.lr_gamma)
    use_amp = spec.amp and device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    if ckpt is not None:
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        if use_amp and ckpt["scaler"]:
            scaler.load_state_dict(ckpt["scaler"])

    cache = None
    if spec.cache_features:
        from ..model.checkpoint import sha256_file

        key = {"backbone": spec.backbone, "checkpoint_sha256": sha256_file(spec.checkpoint),
               "images": hashlib.sha256("\n".join(str(s.image) for s in samples).encode()).hexdigest(),
               "augment": dataclasses.asdict(spec.augment), "seed": spec.seed}
        cache = FeatureCache(spec.cache_features, key)
    dataset = HQSegTrainSet(samples, augment=spec.augment, prompts=spec.prompts, seed=spec.seed,
                            fixed_augmentation=cache is not None)

    if ctx.is_main:
        out.mkdir(parents=True, exist_ok=True)
    _barrier(ctx)
    log_file = out / LOG_FILE
    losses: list[float] = []
    _log(ctx, f"training {spec.backbone}: {len(samples)} images, {batches_per_epoch} steps/epoch x "
              f"{spec.epochs} epochs, batch {spec.batch_size} x {ctx.world_size} process(es) on {device}")

    from tqdm.auto import tqdm

    while state.epoch < spec.epochs and (spec.max_steps is None or state.step < spec.max_steps):
        epoch = state.epoch
        dataset.set_epoch(epoch)
        batches = epoch_batches(len(samples), epoch, spec, ctx)[state.batch_in_epoch :]
        if spec.max_steps is not None:
            batches = batches[: spec.max_steps - state.step]
        loader = DataLoader(dataset, batch_sampler=batches, num_workers=spec.workers, collate_fn=collate_train,
                            pin_memory=device.type == "cuda")
        bar = tqdm(total=batches_per_epoch, initial=state.batch_in_epoch, desc=f"epoch {epoch + 1}/{spec.epochs}",
                   disable=not (spec.progress and ctx.is_main), leave=False, file=sys.stderr)
        t0 = time.time()
        epoch_losses = []
        for batch in loader:
            values = train_step(model, net, batch, optimizer, scaler, spec, device, cache,
                                _step_generator(spec, state.step, ctx), use_amp)
            state.step += 1
            state.batch_in_epoch += 1
            loss_mask, loss_dice = _average([values["loss_mask"], values["loss_dice"]], ctx)
            losses.append(loss_mask + loss_dice)
            epoch_losses.append(loss_mask + loss_dice)
            if ctx.is_main:
                record = {"epoch": epoch, "step": state.step, "lr": optimizer.param_groups[0]["lr"],
                          "loss": loss_mask + loss_dice, "loss_mask": loss_mask, "loss_dice": loss_dice,
                          "world_size": ctx.world_size, "seconds": round(time.time() - t0, 3)}
                with open(log_file, "a") as f:
                    f.write(json.dumps(record) + "\n")
                bar.update(1)
                bar.set_postfix(loss=f"{loss_mask + loss_dice:.4f}")
        bar.close()
        complete = state.batch_in_epoch >= batches_per_epoch
        if complete:
            scheduler.step()
            state.epoch, state.batch_in_epoch = epoch + 1, 0
        if ctx.is_main:
            save_training_checkpoint(out / f"epoch_{epoch}.pth", model, optimizer, scheduler, scaler, state, epoch,
                                     complete, spec, ctx)
            mean = float(np.mean(epoch_losses)) if epoch_losses else float("nan")
            _log(ctx, f"epoch {epoch} {'done' if complete else 'stopped'} at step {state.step}: "
                      f"mean loss {mean:.4f} over {len(epoch_losses)} steps"
                      + (f", feature cache {cache.hits} hits / {cache.misses} misses" if cache else ""))
        _barrier(ctx)

    check_replicas_in_sync(model, ctx)
    merged = None
    if ctx.is_main:
        merged = write_merged_checkpoint(model, out / spec.merged_name)
    _barrier(ctx)
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
