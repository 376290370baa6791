"""HQ-SAM's training loss: sigmoid BCE + Dice on point-sampled logits.

As Mask2Former / PointRend and the official HQ-SAM ``loss_masks``: the loss
is not taken over every pixel but over ``num_points`` (112 x 112 = 12,544)
points per mask, in normalised [0, 1] x [0, 1] coordinates, so that the
256 x 256 logits and a full-resolution target are compared without resizing
either. Of the points, ``importance_ratio`` (0.75) are the most uncertain
(logit closest to 0) among ``oversample_ratio`` (3) times as many uniform
candidates; the rest are uniform. Point selection runs without gradients.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class LossSpec:
    """Point-sampled loss options; the defaults are the paper's."""

    num_points: int = 112 * 112
    oversample_ratio: float = 3.0
    importance_ratio: float = 0.75


def point_sample(features: torch.Tensor, coords: torch.Tensor) -> torch.Tensor:
    """Bilinear values of ``features`` ``[B,C,H,W]`` at ``coords`` ``[B,P,2]`` (x, y in [0,1]) -> ``[B,C,P]``.

    Pixel centres sit at ``(i + 0.5) / W`` (``grid_sample`` with
    ``align_corners=False``), so the same normalised point lands on the same
    place of a 256 x 256 logit map and a 1024 x 1024 target.
    """
    grid = (2.0 * coords - 1.0).unsqueeze(2).to(features.dtype)  # [B,P,1,2]
    return F.grid_sample(features, grid, mode="bilinear", align_corners=False).squeeze(3)


def uncertainty(logits: torch.Tensor) -> torch.Tensor:
    """PointRend's class-agnostic uncertainty: ``-|logit|`` (highest at the decision boundary)."""
    return -logits.abs()


def uncertain_point_coords(
    logits: torch.Tensor, spec: LossSpec = LossSpec(), generator: torch.Generator | None = None
) -> torch.Tensor:
    """Training points ``[B,P,2]`` in [0,1] for logits ``[B,1,H,W]``: the most uncertain of an
    oversampled uniform set, plus uniform ones (Mask2Former's
    ``get_uncertain_point_coords_with_randomness``)."""
    b = logits.shape[0]
    device = logits.device
    n_candidates = int(spec.num_points * spec.oversample_ratio)
    n_important = int(spec.importance_ratio * spec.num_points)
    candidates = torch.rand(b, n_candidates, 2, generator=generator, device="cpu").to(device)
    scores = uncertainty(point_sample(logits.detach().float(), candidates))[:, 0]  # [B, n_candidates]
    top = scores.topk(n_important, dim=1).indices
    chosen = torch.gather(candidates, 1, top.unsqueeze(-1).expand(-1, -1, 2))
    uniform = torch.rand(b, spec.num_points - n_important, 2, generator=generator, device="cpu").to(device)
    return torch.cat([chosen, uniform], dim=1)


def sigmoid_bce(logits: torch.Tensor, targets: torch.Tensor, num_masks: float) -> torch.Tensor:
    """Mean BCE-with-logits over points ``[B,P]`` per mask, summed and divided by ``num_masks``."""
    return F.binary_cross_entropy_with_logits(logits, targets, reduction="none").mean(1).sum() / num_masks


def dice(logits: torch.Tensor, targets: torch.Tensor, num_masks: float) -> torch.Tensor:
    """``1 - (2|p.t| + 1) / (|p| + |t| + 1)`` per mask over points ``[B,P]`` (p = sigmoid), summed / ``num_masks``."""
    p = logits.sigmoid()
    loss = 1 - (2 * (p * targets).sum(-1) + 1) / (p.sum(-1) + targets.sum(-1) + 1)
    return loss.sum() / num_masks


def mask_losses(
    logits: torch.Tensor,
    targets: torch.Tensor,
    spec: LossSpec = LossSpec(),
    generator: torch.Generator | None = None,
) -> dict[str, torch.Tensor]:
    """``{"loss_mask": BCE, "loss_dice": Dice}`` for logits ``[B,1,256,256]`` against soft targets
    ``[B,1,H,W]`` in 0..1 (any H, W; the official training uses the 1024 x 1024 ground truth)."""
    logits = logits.float()
    with torch.no_grad():
        coords = uncertain_point_coords(logits, spec, generator)
        point_targets = point_sample(targets.float(), coords)[:, 0]
    point_logits = point_sample(logits, coords)[:, 0]
    num_masks = float(logits.shape[0])
    return {
        "loss_mask": sigmoid_bce(point_logits, point_targets, num_masks),
        "loss_dice": dice(point_logits, point_targets, num_masks),
    }
