"""Training checkpoints (``OUT/epoch_{k}.pth``: HQ weights, optimiser, schedule, counters) and the merged
checkpoint a finished run writes (the whole model's ``state_dict`` with the official key names)."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import torch
from torch import nn

from ..atomic import atomic_write
from ..errors import CheckpointError, UsageError
from .distributed import DistContext
from .spec import TrainSpec, TrainState

CHECKPOINT_FORMAT = "hqsam-edge-train/1"
_EPOCH_FILE = re.compile(r"^epoch_(\d+)\.pth$")


def save_atomically(obj: object, path: Path) -> None:
    """``torch.save`` under a temporary name, then renamed onto ``path`` (``atomic.atomic_write``)."""
    atomic_write(path, lambda tmp: torch.save(obj, tmp))


def epoch_checkpoints(out: str | Path) -> list[Path]:
    """``OUT/epoch_{k}.pth`` files, oldest first."""
    out = Path(out)
    if not out.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in out.iterdir() if (m := _EPOCH_FILE.match(p.name))]
    return [p for _, p in sorted(found)]


def hq_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    from ..model.mask_decoder_hq import HQ_PARAMETER_PREFIXES

    return {k: v.detach().cpu().clone() for k, v in model.state_dict().items() if k.startswith(HQ_PARAMETER_PREFIXES)}


def save_training_checkpoint(path: Path, model: nn.Module, optimizer, scheduler, scaler, state: TrainState,
                             epoch: int, complete: bool, spec: TrainSpec, ctx: DistContext) -> None:
    """``epoch_{k}.pth``: HQ weights, optimiser, scheduler, scaler and the counters."""
    save_atomically({
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
    save_atomically({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}, path)
    return path
