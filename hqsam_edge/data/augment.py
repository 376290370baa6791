"""Training augmentation of HQ-SAM: random horizontal flip and large-scale jitter (LSJ).

As the official HQ-SAM training (``RandomHFlip`` then ``LargeScaleJitter``
from Copy-Paste / Pix2Seq): the image is flipped with probability 0.5, resized
so that its longest side is ``r * 1024`` with ``r ~ U(0.1, 2.0)``, randomly
cropped to at most ``1024 x 1024`` and padded right/bottom to exactly that
(image with grey 128, mask with 0). Resizing is bilinear without
anti-aliasing (``torch.nn.functional.interpolate``), the same as the official
code. ``resize_square`` is the official *validation* resize.

Layouts: images are float32 ``[3,H,W]`` in 0..255, masks float32 ``[1,H,W]``
in grey levels 0..255 (foreground ``> 128``), so that thresholds stay the
official ones after interpolation. Randomness comes from an explicit
``numpy.random.Generator``: the same generator state gives the same result in
any process or worker.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class AugmentSpec:
    """Options of the training augmentation; the defaults are the paper's.

    ``enabled=False`` keeps only the deterministic part (resize the longest
    side to ``size`` and pad), for smoke runs and fixed-feature caching.
    """

    size: int = 1024
    hflip_prob: float = 0.5
    scale_min: float = 0.1
    scale_max: float = 2.0
    image_pad: float = 128.0
    mask_pad: float = 0.0
    enabled: bool = True


def to_tensors(image: np.ndarray, mask: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """``HxWx3`` uint8 image and ``HxW`` uint8 mask -> float32 ``[3,H,W]`` and ``[1,H,W]`` (0..255)."""
    img = torch.from_numpy(np.array(image, np.float32)).permute(2, 0, 1)
    msk = torch.from_numpy(np.array(mask, np.float32))[None]
    return img, msk


def hflip(image: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mirror ``[C,H,W]`` image and mask left-right."""
    return torch.flip(image, dims=[2]), torch.flip(mask, dims=[2])


def resize_pair(image: torch.Tensor, mask: torch.Tensor, size: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Bilinear resize of ``[C,H,W]`` image and mask to ``size`` = (h, w), no anti-aliasing."""
    size = (max(1, int(size[0])), max(1, int(size[1])))
    img = F.interpolate(image[None], size, mode="bilinear", align_corners=False)[0]
    msk = F.interpolate(mask[None], size, mode="bilinear", align_corners=False)[0]
    return img, msk


def crop_and_pad(
    image: torch.Tensor, mask: torch.Tensor, top: int, left: int, spec: AugmentSpec
) -> tuple[torch.Tensor, torch.Tensor]:
    """Crop a window of at most ``spec.size`` square at (top, left), then pad right/bottom to ``spec.size``."""
    s = spec.size
    image = image[:, top : top + s, left : left + s]
    mask = mask[:, top : top + s, left : left + s]
    pad = (0, s - image.shape[2], 0, s - image.shape[1])  # left, right, top, bottom
    return F.pad(image, pad, value=spec.image_pad), F.pad(mask, pad, value=spec.mask_pad)


def jitter_size(height: int, width: int, scale: float, spec: AugmentSpec) -> tuple[int, int]:
    """(h, w) after LSJ's resize: the longest side becomes ``round(scale * size)``."""
    target = round(scale * spec.size)
    factor = min(target / height, target / width)
    return max(1, round(height * factor)), max(1, round(width * factor))


def large_scale_jitter(
    image: torch.Tensor, mask: torch.Tensor, rng: np.random.Generator, spec: AugmentSpec = AugmentSpec()
) -> tuple[torch.Tensor, torch.Tensor]:
    """LSJ: random resize (longest side ``U(scale_min, scale_max) * size``), random crop, pad.

    ``[3,H,W]`` and ``[1,H,W]`` in -> ``[3,S,S]`` and ``[1,S,S]`` out (S = ``spec.size``).
    """
    scale = float(rng.uniform(spec.scale_min, spec.scale_max))
    h, w = jitter_size(image.shape[1], image.shape[2], scale, spec)
    image, mask = resize_pair(image, mask, (h, w))
    top = int(rng.integers(0, max(h - spec.size, 0) + 1))
    left = int(rng.integers(0, max(w - spec.size, 0) + 1))
    return crop_and_pad(image, mask, top, left, spec)


def resize_longest_and_pad(
    image: torch.Tensor, mask: torch.Tensor, spec: AugmentSpec = AugmentSpec()
) -> tuple[torch.Tensor, torch.Tensor]:
    """The deterministic path: longest side to ``spec.size``, pad right/bottom (no flip, no jitter)."""
    h, w = jitter_size(image.shape[1], image.shape[2], 1.0, spec)
    image, mask = resize_pair(image, mask, (h, w))
    return crop_and_pad(image, mask, 0, 0, spec)


def augment_pair(
    image: torch.Tensor, mask: torch.Tensor, rng: np.random.Generator, spec: AugmentSpec = AugmentSpec()
) -> tuple[torch.Tensor, torch.Tensor]:
    """The training augmentation: flip with ``hflip_prob``, then LSJ (or only resize + pad if disabled)."""
    if not spec.enabled:
        return resize_longest_and_pad(image, mask, spec)
    if rng.random() < spec.hflip_prob:
        image, mask = hflip(image, mask)
    return large_scale_jitter(image, mask, rng, spec)


def resize_square(image: torch.Tensor, mask: torch.Tensor, size: int = 1024) -> tuple[torch.Tensor, torch.Tensor]:
    """The official validation transform: both resized to ``size x size`` (aspect ratio not kept)."""
    return resize_pair(image, mask, (size, size))
