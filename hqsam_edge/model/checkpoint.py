"""Reading official SAM / HQ-SAM / MobileSAM checkpoints, strictly.

A checkpoint is a plain ``state_dict`` (``torch.save(model.state_dict())``),
as Meta, the HQ-SAM authors and MobileSAM publish them; a ``{"model": ...}``
or ``{"state_dict": ...}`` wrapper is accepted too. Everything that can go
wrong ends in a ``CheckpointError`` that names the file and the fix.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import torch

from ..digest import sha256_file as sha256_file  # where the callers of this module have found it
from ..errors import CheckpointError, UsageError
from ..inputs import checkpoint_file
from .mask_decoder_hq import HQ_PARAMETER_PREFIXES

_VIT_DIMS = {768: "vit_b", 1024: "vit_l", 1280: "vit_h"}


@dataclass(frozen=True)
class CheckpointInfo:
    """What a state dict contains, judged from its keys and shapes."""

    backbone: str | None  # vit_b / vit_l / vit_h / vit_tiny, None if unknown
    variant: str  # "hq" if it has the HQ decoder parts, else "sam"

    def describe(self) -> str:
        model = {"hq": "HQ-SAM", "sam": "SAM"}[self.variant]
        if self.backbone == "vit_tiny":
            model = {"hq": "Light HQ-SAM", "sam": "MobileSAM"}[self.variant]
        return f"{model} {self.backbone or '(unknown backbone)'}"


def check_weights_choice(checkpoint: object, random_weights: bool) -> None:
    """Exactly one of a checkpoint or random weights (what `export`, `predict`, `eval` ask for)."""
    if checkpoint is None and not random_weights:
        raise UsageError("give --checkpoint FILE (see `hqsam-edge download`) or --random-weights")
    if checkpoint is not None and random_weights:
        raise UsageError("--checkpoint and --random-weights exclude each other")


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Load a checkpoint file on the CPU with ``weights_only=True``."""
    path = checkpoint_file(path)
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure means a bad file
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(
            f"cannot read checkpoint {path}: not a PyTorch state dict, or the file is truncated/corrupt "
            f"({first[:200]}); download it again"
        ) from None
    if isinstance(obj, dict):
        for key in ("model", "state_dict"):
            if key in obj and isinstance(obj[key], dict) and len(obj) <= 3:
                obj = obj[key]
                break
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(f"checkpoint {path} does not hold a model state dict (a mapping of names to tensors)")
    return obj


def identify(state_dict: dict[str, torch.Tensor]) -> CheckpointInfo:
    """Tell the backbone and variant of a state dict from its keys."""
    variant = "hq" if "mask_decoder.hf_token.weight" in state_dict else "sam"
    backbone = None
    patch = state_dict.get("image_encoder.patch_embed.proj.weight")
    if patch is not None:
        backbone = _VIT_DIMS.get(int(patch.shape[0]))
    elif "image_encoder.patch_embed.seq.0.c.weight" in state_dict:
        backbone = "vit_tiny"
    return CheckpointInfo(backbone=backbone, variant=variant)


def _names(keys: list[str], limit: int = 4) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f" and {len(keys) - limit} more" if len(keys) > limit else "")


def load_checkpoint(model: torch.nn.Module, path: str | Path, *, backbone: str, variant: str) -> CheckpointInfo:
    """Load ``path`` into ``model`` (built for ``backbone`` / ``variant``), strictly.

    The one tolerated mismatch: a plain SAM checkpoint into an HQ model loads
    with a warning (the HQ parts stay untrained). Anything else (another
    backbone, an HQ checkpoint for plain SAM, missing/unexpected keys, shape
    mismatches) raises ``CheckpointError``.
    """
    return load_state_dict(model, read_state_dict(path), source=str(path), backbone=backbone, variant=variant)


def load_state_dict(model: torch.nn.Module, state_dict: dict[str, torch.Tensor], *, source: str, backbone: str,
                    variant: str) -> CheckpointInfo:
    """``load_checkpoint`` of a state dict already read; ``source`` names it in messages."""
    info = identify(state_dict)
    if info.backbone is None:
        raise CheckpointError(f"{source} is not a SAM / HQ-SAM / MobileSAM checkpoint (no image encoder weights found)")
    if info.backbone != backbone:
        raise CheckpointError(
            f"{source} is a {info.describe()} checkpoint, not {backbone}: use --backbone {info.backbone}"
        )
    if info.variant == "hq" and variant == "sam":
        raise CheckpointError(
            f"{source} is an {info.describe()} checkpoint: use --variant hq, "
            "or a plain SAM checkpoint for --variant sam"
        )
    own = model.state_dict()
    mismatched = [
        f"{k} {tuple(v.shape)} vs {tuple(own[k].shape)}"
        for k, v in state_dict.items() if k in own and own[k].shape != v.shape
    ]
    if mismatched:
        raise CheckpointError(f"{source}: tensor shapes differ from the {backbone} model: {_names(mismatched, 3)}")
    missing = [k for k in own if k not in state_dict]
    unexpected = [k for k in state_dict if k not in own]
    untrained_hq = info.variant == "sam" and variant == "hq"
    if untrained_hq:
        missing = [k for k in missing if not k.startswith(HQ_PARAMETER_PREFIXES)]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing {len(missing)} keys ({_names(missing)})")
        if unexpected:
            parts.append(f"unexpected {len(unexpected)} keys ({_names(unexpected)})")
        raise CheckpointError(
            f"{source} does not match the {info.describe()} model: {'; '.join(parts)}. "
            "Is it an official checkpoint (or one written by `hqsam-edge train`)?"
        )
    model.load_state_dict(state_dict, strict=not untrained_hq)
    if untrained_hq:
        warnings.warn(
            f"{source} is a plain {info.describe()} checkpoint: the HQ parts of the model are untrained "
            "(random). Use an HQ-SAM checkpoint (`hqsam-edge download --variant hq`) or train them.",
            UserWarning,
            stacklevel=3,
        )
    return info
