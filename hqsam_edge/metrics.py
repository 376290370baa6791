"""Mask IoU and boundary IoU (Cheng et al., CVPR 2021), on boolean masks.

A leaf module (numpy, and OpenCV for boundaries; nothing from this package), so that
every stage may use it: export and calibration checks as well as evaluation.
"""

from __future__ import annotations

import numpy as np


def mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    """IoU of two boolean masks of equal shape; two empty masks count as 1.0."""
    a, b = np.asarray(a, bool), np.asarray(b, bool)
    if a.shape != b.shape:
        raise ValueError(f"mask shapes differ: {a.shape} vs {b.shape}")
    union = np.logical_or(a, b).sum()
    return 1.0 if union == 0 else float(np.logical_and(a, b).sum() / union)


def mask_boundary(mask: np.ndarray, dilation_ratio: float = 0.02) -> np.ndarray:
    """Pixels of ``mask`` within ``d`` of its contour, ``d = round(ratio * image diagonal)`` (at least 1).

    As the official Boundary IoU code: the mask minus its erosion by a 3x3
    kernel applied ``d`` times, with a zero border so that the image edge
    counts as a contour.
    """
    import cv2  # here, so that mask IoU needs numpy alone

    mask = np.asarray(mask, np.uint8)
    h, w = mask.shape
    d = max(1, int(round(dilation_ratio * np.sqrt(h * h + w * w))))
    padded = cv2.copyMakeBorder(mask, 1, 1, 1, 1, cv2.BORDER_CONSTANT, value=0)
    eroded = cv2.erode(padded, np.ones((3, 3), np.uint8), iterations=d)[1:-1, 1:-1]
    return (mask - eroded).astype(bool)


def boundary_iou(a: np.ndarray, b: np.ndarray, dilation_ratio: float = 0.02) -> float:
    """Boundary IoU: IoU of the two masks' boundary bands (see ``mask_boundary``)."""
    return mask_iou(mask_boundary(a, dilation_ratio), mask_boundary(b, dilation_ratio))
