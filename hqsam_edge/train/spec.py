"""What a training run is asked to do (``TrainSpec``) and where it stands (``TrainState``)."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..data.augment import AugmentSpec
from ..data.prompts import PromptSpec
from ..errors import UsageError
from .losses import LossSpec


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
