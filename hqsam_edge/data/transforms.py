"""Image and prompt transforms shared by every backend.

The same numbers as ``segment_anything``'s ``ResizeLongestSide`` +
``Sam.preprocess`` / ``Sam.postprocess_masks``: the longest side is resized to
``image_size`` with PIL's bilinear filter, pixels are normalised with SAM's
mean/std and zero-padded right/bottom; prompts are scaled into that frame.
Masks go back with two bilinear resizes (to the padded square, crop, to the
original size), done with ``torch.nn.functional.interpolate`` so that masks
equal the official ones bit for bit.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image

from ..errors import ImageError

PIXEL_MEAN = (123.675, 116.28, 103.53)
PIXEL_STD = (58.395, 57.12, 57.375)


def preprocess_shape(height: int, width: int, long_side: int) -> tuple[int, int]:
    """(H, W) after resizing so that the longest side is ``long_side``."""
    scale = long_side * 1.0 / max(height, width)
    return int(height * scale + 0.5), int(width * scale + 0.5)


def check_rgb(image: np.ndarray) -> np.ndarray:
    """Validate an ``HxWx3`` uint8 RGB array (what ``Predictor.set_image`` takes)."""
    if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3:
        shape = getattr(image, "shape", type(image).__name__)
        raise ImageError(f"expected an HxWx3 RGB image array, got {shape}")
    if image.dtype != np.uint8:
        raise ImageError(f"expected a uint8 RGB image (0..255), got dtype {image.dtype}")
    if min(image.shape[:2]) < 1:
        raise ImageError(f"the image is empty ({image.shape[0]}x{image.shape[1]})")
    return image


def preprocess_image(
    image: np.ndarray,
    image_size: int = 1024,
    pixel_mean: Sequence[float] = PIXEL_MEAN,
    pixel_std: Sequence[float] = PIXEL_STD,
) -> tuple[np.ndarray, tuple[int, int]]:
    """``HxWx3`` uint8 RGB -> (``[1,3,S,S]`` float32 encoder input, resized (h, w))."""
    image = check_rgb(image)
    h, w = preprocess_shape(image.shape[0], image.shape[1], image_size)
    if min(h, w) < 1:
        raise ImageError(f"the {image.shape[1]}x{image.shape[0]} image is too thin: with its longest side resized "
                         f"to {image_size} pixels its other side would be 0")
    resized = np.asarray(Image.fromarray(image).resize((w, h), Image.BILINEAR), dtype=np.float32)
    return normalize_and_pad(resized.transpose(2, 0, 1), image_size, pixel_mean, pixel_std), (h, w)


def normalize_and_pad(
    resized: np.ndarray,
    image_size: int = 1024,
    pixel_mean: Sequence[float] = PIXEL_MEAN,
    pixel_std: Sequence[float] = PIXEL_STD,
) -> np.ndarray:
    """A resized ``3xhxw`` picture (0..255, h and w at most ``image_size``) -> the ``[1,3,S,S]`` float32 encoder
    input: normalised with SAM's mean/std, zero-padded right/bottom (``Sam.preprocess``)."""
    c, h, w = resized.shape
    out = np.zeros((1, c, image_size, image_size), dtype=np.float32)
    mean = np.asarray(pixel_mean, dtype=np.float32).reshape(-1, 1, 1)
    std = np.asarray(pixel_std, dtype=np.float32).reshape(-1, 1, 1)
    out[0, :, :h, :w] = (np.asarray(resized, dtype=np.float32) - mean) / std
    return out


def apply_coords(coords: np.ndarray, original_size: tuple[int, int], image_size: int = 1024) -> np.ndarray:
    """Pixel (x, y) coordinates ``[..., 2]`` of the original image -> the resized frame (float32)."""
    old_h, old_w = original_size
    new_h, new_w = preprocess_shape(old_h, old_w, image_size)
    coords = np.array(coords, dtype=np.float64, copy=True)
    coords[..., 0] = coords[..., 0] * (new_w / old_w)
    coords[..., 1] = coords[..., 1] * (new_h / old_h)
    return coords.astype(np.float32)


def postprocess_masks(
    low_res_masks: np.ndarray,
    input_size: tuple[int, int],
    original_size: tuple[int, int],
    image_size: int = 1024,
) -> np.ndarray:
    """Logits ``[P,M,256,256]`` -> logits ``[P,M,H,W]`` at the original size."""
    import torch
    import torch.nn.functional as F

    with torch.inference_mode():
        masks = torch.from_numpy(np.ascontiguousarray(low_res_masks, dtype=np.float32))
        masks = F.interpolate(masks, (image_size, image_size), mode="bilinear", align_corners=False)
        masks = masks[..., : input_size[0], : input_size[1]]
        masks = F.interpolate(masks, tuple(original_size), mode="bilinear", align_corners=False)
        return masks.numpy()


def load_image(path: str) -> np.ndarray:
    """Read an image file as ``HxWx3`` uint8 RGB, turned as its EXIF orientation says (a phone photo stored
    sideways comes out as it is shown, so that prompts drawn on it land where they were drawn); a clear
    ``ImageError`` if it cannot be read."""
    from PIL import ImageOps

    try:
        with Image.open(path) as im:
            return np.asarray(ImageOps.exif_transpose(im).convert("RGB"))
    except FileNotFoundError:
        raise ImageError(f"image not found: {path}") from None
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise ImageError(f"cannot read image {path}: {exc}") from None
