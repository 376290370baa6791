"""Prompt sampling for HQ-SAM training: a box, 10 positive points, or a noisy mask.

As the official training (``train.py`` of SysCV/sam-hq): per sample one
prompt type is drawn uniformly among those possible, from the augmented
``1024 x 1024`` ground truth (grey levels 0..255, foreground ``> 128``):

- ``box``: the tight box of the foreground, (x0, y0, x1, y1) in pixel indices
  (x1, y1 inclusive), given to the decoder as two corners with labels 2 and 3;
- ``points``: ``num_points`` foreground pixels drawn without replacement,
  label 1, plus one padding point (label -1), which is what SAM's prompt
  encoder appends when there is no box;
- ``noisy_mask``: the ground truth resized to ``256 x 256`` (bilinear), with
  Gaussian noise (std 1) added only in its boundary ("incoherent") region, the
  pixels where the mask differs from itself down- and up-sampled by 8
  (Mask Transfiner); thresholded at 0.5 and scaled to 0/255. The official
  code feeds these 0/255 values as the mask-input logits, with no points
  (an empty sparse prompt); so do we.

Fallbacks (not in the official code, which lets them produce garbage): fewer
foreground pixels than ``num_points`` rules out ``points``; an empty mask
(the object cropped away by LSJ) leaves only ``noisy_mask`` (all zero), which
agrees with the empty target.

All coordinates are (x, y) in the 1024 frame; randomness comes from an
explicit ``numpy.random.Generator``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import UsageError

PROMPT_TYPES = ("box", "points", "noisy_mask")
LABEL_PAD, LABEL_POSITIVE, LABEL_BOX_TOP_LEFT, LABEL_BOX_BOTTOM_RIGHT = -1.0, 1.0, 2.0, 3.0


@dataclass(frozen=True)
class PromptSpec:
    """How training prompts are drawn; the defaults are the paper's."""

    types: tuple[str, ...] = PROMPT_TYPES
    num_points: int = 10
    mask_noise_std: float = 1.0
    incoherence_factor: int = 8
    low_res: int = 256
    threshold: float = 128.0  # foreground: grey level > threshold

    def __post_init__(self) -> None:
        bad = [t for t in self.types if t not in PROMPT_TYPES]
        if bad or not self.types:
            raise UsageError(f"unknown prompt types {bad or '(none)'}; choose from {', '.join(PROMPT_TYPES)}")
        if self.num_points < 1:
            raise UsageError(f"num_points must be at least 1, got {self.num_points}")


@dataclass(frozen=True)
class Prompt:
    """One prompt in the decoder's layout (``Sam.decode`` for P=1, without the P axis).

    ``point_coords`` ``[N,2]`` float32 (x, y) in the 1024 frame;
    ``point_labels`` ``[N]`` float32; ``mask_input`` ``[1,256,256]`` float32;
    ``has_mask_input`` a 0-d float32 tensor (0 or 1). N may be 0 (mask only).
    """

    kind: str
    point_coords: torch.Tensor
    point_labels: torch.Tensor
    mask_input: torch.Tensor
    has_mask_input: torch.Tensor

    def to(self, device: torch.device | str) -> Prompt:
        return Prompt(self.kind, self.point_coords.to(device), self.point_labels.to(device),
                      self.mask_input.to(device), self.has_mask_input.to(device))


def _no_mask(low_res: int) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.zeros(1, low_res, low_res), torch.tensor(0.0)


def box_prompt(box: np.ndarray | torch.Tensor, low_res: int = 256) -> Prompt:
    """A box (x0, y0, x1, y1) -> two corners labelled 2 and 3 (no padding point, as SAM)."""
    coords = torch.as_tensor(np.asarray(box, np.float32).reshape(2, 2))
    mask, has = _no_mask(low_res)
    return Prompt("box", coords, torch.tensor([LABEL_BOX_TOP_LEFT, LABEL_BOX_BOTTOM_RIGHT]), mask, has)


def points_prompt(points: np.ndarray | torch.Tensor, low_res: int = 256) -> Prompt:
    """Positive points ``[K,2]`` (x, y) -> K points labelled 1 plus a padding point labelled -1."""
    pts = torch.as_tensor(np.asarray(points, np.float32).reshape(-1, 2))
    coords = torch.cat([pts, torch.zeros(1, 2)])
    labels = torch.cat([torch.full((pts.shape[0],), LABEL_POSITIVE), torch.tensor([LABEL_PAD])])
    mask, _ = _no_mask(low_res)
    return Prompt("points", coords, labels, mask, torch.tensor(0.0))


def mask_prompt(mask_input: torch.Tensor) -> Prompt:
    """A mask input ``[1,256,256]`` alone: no points (empty sparse prompt), ``has_mask_input`` 1."""
    return Prompt("noisy_mask", torch.zeros(0, 2), torch.zeros(0), mask_input.float(), torch.tensor(1.0))


def mask_box(mask: torch.Tensor | np.ndarray, threshold: float = 128.0) -> np.ndarray | None:
    """Tight box (x0, y0, x1, y1) of ``mask > threshold`` (``[..., H, W]``), max inclusive; None if empty."""
    fg = np.asarray(mask).reshape(np.shape(mask)[-2:]) > threshold
    ys = np.flatnonzero(fg.any(axis=1))
    xs = np.flatnonzero(fg.any(axis=0))
    if ys.size == 0:
        return None
    return np.array([xs[0], ys[0], xs[-1], ys[-1]], np.float32)


def sample_points(
    mask: torch.Tensor | np.ndarray, k: int, rng: np.random.Generator, threshold: float = 128.0
) -> np.ndarray | None:
    """``k`` distinct foreground pixels (x, y) ``[k,2]`` drawn uniformly; None if fewer exist."""
    fg = np.asarray(mask).reshape(np.shape(mask)[-2:]) > threshold
    ys, xs = np.nonzero(fg)
    if ys.size < k:
        return None
    pick = rng.choice(ys.size, size=k, replace=False)
    return np.stack([xs[pick], ys[pick]], axis=1).astype(np.float32)


def incoherent_region(mask01: torch.Tensor, factor: int = 8) -> torch.Tensor:
    """Boundary region of ``[B,1,h,w]`` masks in 0..1: where ``|m - up(down(m, factor))| >= 0.01``."""
    h, w = mask01.shape[-2:]
    small = F.interpolate(mask01, (h // factor, w // factor), mode="bilinear", align_corners=False)
    recovered = F.interpolate(small, (h, w), mode="bilinear", align_corners=False)
    return (mask01 - recovered).abs() >= 0.01


def noisy_mask(mask: torch.Tensor, rng: np.random.Generator, spec: PromptSpec = PromptSpec()) -> torch.Tensor:
    """Ground truth ``[1,H,W]`` (grey levels) -> a degraded ``[1,256,256]`` mask of 0/255.

    Gaussian noise of std ``spec.mask_noise_std`` is added to the 0..1 mask
    inside its incoherent (boundary) region only, then thresholded at 0.5.
    """
    low = F.interpolate(mask[None].float(), (spec.low_res, spec.low_res), mode="bilinear", align_corners=False) / 255
    gen = torch.Generator().manual_seed(int(rng.integers(0, 2**63 - 1)))
    noise = torch.randn(low.shape, generator=gen) * spec.mask_noise_std
    region = incoherent_region(low, spec.incoherence_factor).float()
    return ((low + noise * region) > 0.5).float()[0] * 255


def sample_prompt(mask: torch.Tensor, rng: np.random.Generator, spec: PromptSpec = PromptSpec()) -> Prompt:
    """One training prompt for the augmented ground truth ``mask`` ``[1,S,S]`` (grey levels)."""
    box = mask_box(mask, spec.threshold)
    points = sample_points(mask, spec.num_points, rng, spec.threshold) if "points" in spec.types else None
    possible = [t for t in spec.types if (t != "box" or box is not None) and (t != "points" or points is not None)]
    if not possible or box is None:  # nothing to point at: only an (empty) mask prompt agrees with the target
        possible = ["noisy_mask"]
    kind = possible[int(rng.integers(len(possible)))]
    if kind == "box":
        return box_prompt(box, spec.low_res)
    if kind == "points":
        return points_prompt(points, spec.low_res)
    return mask_prompt(noisy_mask(mask, rng, spec))
