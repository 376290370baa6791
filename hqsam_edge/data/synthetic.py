"""Synthetic images for checks and smoke runs (no data sets can be downloaded here)."""

from __future__ import annotations

import numpy as np


def demo_image(height: int = 768, width: int = 1024, seed: int = 0) -> np.ndarray:
    """A deterministic ``HxWx3`` uint8 RGB picture with structure: gradients, a disc,
    thin lines and noise (so that encoders see something other than flat colour)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    img = np.stack([xx * 255 / width, yy * 255 / height, ((xx + yy) % 64) * 4], axis=-1).astype(np.float64)
    disc = (xx - width * 0.6) ** 2 + (yy - height * 0.45) ** 2 < (min(height, width) * 0.2) ** 2
    img[disc] = [230, 40, 40]
    img[:, ::37] = 20
    img += rng.normal(0, 8, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)
