"""Synthetic images for checks and smoke runs (no data sets can be downloaded here).

``demo_image`` is one structured picture; ``write_synthetic_hqseg`` writes a
small HQSeg-44K look-alike (thin structures over textured backgrounds) in the
official folder layout, for tests and training / evaluation smoke runs.
"""

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


def _texture(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A textured ``HxWx3`` float background: colour gradient, random waves, blotches and grain."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float64)
    base = rng.uniform(40, 215, 3)
    tilt = rng.uniform(-60, 60, (2, 3))
    img = base + tilt[0] * (xx / width)[..., None] + tilt[1] * (yy / height)[..., None]
    for _ in range(3):
        fx, fy = rng.uniform(0.005, 0.08, 2)
        phase = rng.uniform(0, 2 * np.pi)
        img += rng.uniform(5, 25) * np.sin(2 * np.pi * (fx * xx + fy * yy) + phase)[..., None] * rng.uniform(-1, 1, 3)
    import cv2

    blotch = cv2.GaussianBlur(rng.normal(0, 1, (height, width)), (0, 0), sigmaX=max(2.0, min(height, width) / 20))
    img += (blotch / (np.abs(blotch).max() + 1e-9))[..., None] * rng.uniform(10, 40, 3)
    img += rng.normal(0, rng.uniform(2, 10), img.shape)
    return img


def _draw_wires(mask: np.ndarray, rng: np.random.Generator) -> None:
    import cv2

    h, w = mask.shape
    for _ in range(int(rng.integers(1, 4))):
        t = np.linspace(0, 1, 64)[:, None]
        p = rng.uniform([0, 0], [w, h], (4, 2))  # cubic Bezier control points
        curve = ((1 - t) ** 3 * p[0] + 3 * (1 - t) ** 2 * t * p[1] + 3 * (1 - t) * t**2 * p[2] + t**3 * p[3])
        cv2.polylines(mask, [curve.astype(np.int32)], False, 255, int(rng.integers(1, 4)), cv2.LINE_8)


def _draw_fence(mask: np.ndarray, rng: np.random.Generator) -> None:
    import cv2

    h, w = mask.shape
    x0, y0 = int(rng.integers(0, w // 3)), int(rng.integers(0, h // 3))
    x1, y1 = int(rng.integers(2 * w // 3, w)), int(rng.integers(2 * h // 3, h))
    step = int(rng.integers(8, max(9, min(w, h) // 6)))
    thick = int(rng.integers(1, 4))
    for x in range(x0, x1 + 1, step):
        cv2.line(mask, (x, y0), (x, y1), 255, thick, cv2.LINE_8)
    for y in (y0, (y0 + y1) // 2, y1):
        cv2.line(mask, (x0, y), (x1, y), 255, thick, cv2.LINE_8)
    if rng.random() < 0.5:  # diagonal wires of a chain-link fence
        for x in range(x0, x1, 2 * step):
            cv2.line(mask, (x, y0), (min(x + (y1 - y0), x1), y1), 255, 1, cv2.LINE_8)


def _draw_branches(mask: np.ndarray, rng: np.random.Generator) -> None:
    import cv2

    h, w = mask.shape
    stack = [(rng.uniform(0.3 * w, 0.7 * w), float(h - 1), -np.pi / 2 + rng.uniform(-0.3, 0.3), 0.35 * h, 6.0)]
    while stack:
        x, y, angle, length, thick = stack.pop()
        x2, y2 = x + length * np.cos(angle), y + length * np.sin(angle)
        cv2.line(mask, (int(x), int(y)), (int(x2), int(y2)), 255, max(1, int(thick)), cv2.LINE_8)
        if length > 6:
            n = int(rng.integers(2, 4))
            for turn in rng.uniform(0.2, 0.7, n) * rng.choice([-1, 1], n):
                stack.append((x2, y2, angle + turn, length * rng.uniform(0.5, 0.75), thick * 0.7))


def _draw_text(mask: np.ndarray, rng: np.random.Generator) -> None:
    import cv2

    h, w = mask.shape
    letters = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
    for _ in range(int(rng.integers(1, 3))):
        text = "".join(rng.choice(list(letters), int(rng.integers(3, 7))))
        scale = rng.uniform(0.6, 1.6) * min(h, w) / 200
        org = (int(rng.integers(0, max(1, w // 3))), int(rng.integers(h // 4, h - 5)))
        fonts = [cv2.FONT_HERSHEY_SIMPLEX, cv2.FONT_HERSHEY_SCRIPT_SIMPLEX, cv2.FONT_HERSHEY_DUPLEX]
        font = fonts[int(rng.integers(3))]
        cv2.putText(mask, text, org, font, scale, 255, int(rng.integers(1, 4)), cv2.LINE_8)


THIN_STRUCTURES = {"wires": _draw_wires, "fence": _draw_fence, "branches": _draw_branches, "text": _draw_text}


def thin_structure_sample(
    height: int = 240, width: int = 320, seed: int = 0, kind: str | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """One synthetic ``HxWx3`` uint8 image and its ``HxW`` uint8 mask (0/255) of a thin object.

    The object (wires, a fence, branches or text strokes; ``kind`` or drawn at
    random) is painted in its own colour, with a soft edge, over a textured
    background; the mask always has at least 32 foreground pixels.
    """
    import cv2

    rng = np.random.default_rng(seed)
    kind = kind or str(rng.choice(sorted(THIN_STRUCTURES)))
    mask = np.zeros((height, width), np.uint8)
    while int((mask > 128).sum()) < 32:
        THIN_STRUCTURES[kind](mask, rng)
    mask = np.where(mask > 128, 255, 0).astype(np.uint8)  # some OpenCV fonts draw soft edges
    image = _texture(rng, height, width)
    colour = rng.uniform(0, 255, 3)
    colour = np.where(np.abs(colour - image.mean((0, 1))) < 60, 255 - colour, colour)
    alpha = cv2.GaussianBlur(mask.astype(np.float64) / 255, (3, 3), 0.7)[..., None]
    image = image * (1 - alpha) + (colour + rng.normal(0, 6, image.shape)) * alpha
    return np.clip(image, 0, 255).astype(np.uint8), mask


def write_synthetic_hqseg(
    root,
    n_train: int = 2,
    n_val: int = 2,
    size: int | tuple[int, int] = (240, 320),
    seed: int = 0,
):
    """Write a small synthetic HQSeg-44K in the official layout under ``root``; returns ``root`` (a Path).

    ``n_train`` images in each of the 7 training sets and ``n_val`` in each of
    the 4 validation sets, ``size`` = (height, width) (or one int for a
    square), JPEG images and 0/255 PNG masks of thin structures. Deterministic
    for a given ``seed``.
    """
    from pathlib import Path

    from PIL import Image

    from .hqseg import TRAIN_SETS, VAL_SETS

    root = Path(root)
    height, width = (size, size) if isinstance(size, int) else size
    for set_index, layout in enumerate(TRAIN_SETS + VAL_SETS):
        count = n_train if layout.split == "train" else n_val
        (root / layout.image_dir).mkdir(parents=True, exist_ok=True)
        (root / layout.mask_dir).mkdir(parents=True, exist_ok=True)
        for i in range(count):
            sample_seed = int(np.random.SeedSequence([seed, set_index, i]).generate_state(1)[0])
            image, mask = thin_structure_sample(height, width, sample_seed)
            name = f"{layout.name.lower()}_{i:04d}"
            Image.fromarray(image).save(root / layout.image_dir / f"{name}.jpg", quality=92)
            Image.fromarray(mask).save(root / layout.mask_dir / f"{name}.png")
    return root
