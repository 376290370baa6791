"""Mask IoU and boundary IoU against independent implementations of the published definitions.

Boundary IoU (Cheng et al., CVPR 2021): the boundary band ``G_d`` of a mask
``G`` is the set of its pixels within distance ``d`` of its contour, ``d`` =
2% of the image diagonal (rounded, at least 1); the image border counts as
contour. The official code realises the distance as the chessboard
(Chebyshev) distance (``d`` erosions by a 3x3 square), so the reference here
is a brute-force search for the nearest background pixel (or the ring just
outside the image) in that metric, with Python sets for the IoUs.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from hqsam_edge.metrics import boundary_iou, mask_boundary, mask_iou


def reference_band_width(h: int, w: int, ratio: float = 0.02) -> int:
    return max(1, int(round(ratio * math.hypot(h, w))))


def reference_boundary(mask: np.ndarray, ratio: float = 0.02) -> np.ndarray:
    """Pixels of ``mask`` whose chessboard distance to a background pixel or to the outside is <= d."""
    mask = np.asarray(mask, bool)
    h, w = mask.shape
    d = reference_band_width(h, w, ratio)
    fg = np.argwhere(mask)
    bg = np.argwhere(~mask)
    out = np.zeros_like(mask)
    for y, x in fg:
        to_outside = min(y + 1, h - y, x + 1, w - x)
        to_bg = np.max(np.abs(bg - (y, x)), axis=1).min() if len(bg) else to_outside
        out[y, x] = min(to_outside, to_bg) <= d
    return out


def reference_iou(a: np.ndarray, b: np.ndarray) -> float:
    sa = {tuple(p) for p in np.argwhere(a)}
    sb = {tuple(p) for p in np.argwhere(b)}
    union = sa | sb
    return 1.0 if not union else len(sa & sb) / len(union)


def square(h, w, y0, y1, x0, x1) -> np.ndarray:
    m = np.zeros((h, w), bool)
    m[y0:y1, x0:x1] = True
    return m


def random_blob(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A smooth random shape (low-frequency noise thresholded), sometimes touching the border."""
    coarse = rng.normal(size=(h // 8 + 2, w // 8 + 2))
    yy = np.linspace(0, coarse.shape[0] - 1.001, h)
    xx = np.linspace(0, coarse.shape[1] - 1.001, w)
    y0, x0 = yy.astype(int), xx.astype(int)
    fy, fx = (yy - y0)[:, None], (xx - x0)[None, :]
    c = coarse
    smooth = (c[y0][:, x0] * (1 - fy) * (1 - fx) + c[y0 + 1][:, x0] * fy * (1 - fx)
              + c[y0][:, x0 + 1] * (1 - fy) * fx + c[y0 + 1][:, x0 + 1] * fy * fx)
    return smooth > rng.uniform(-0.3, 0.5)


# -- hand-made masks -----------------------------------------------------------------
def test_band_of_a_square_is_a_one_pixel_ring():
    m = square(50, 50, 10, 30, 10, 30)  # diagonal 70.7 -> d = 1
    band = mask_boundary(m)
    assert band.sum() == 20 * 20 - 18 * 18 == 76
    assert not band[11:29, 11:29].any() and band[10, 10:30].all() and band[10:30, 29].all()


def test_image_border_counts_as_contour():
    m = square(50, 50, 0, 20, 0, 20)
    band = mask_boundary(m)
    assert band.sum() == 76
    assert band[0, :20].all() and band[:20, 0].all()


def test_shifted_squares_by_hand():
    a = square(50, 50, 10, 30, 10, 30)
    b = square(50, 50, 10, 30, 12, 32)
    assert mask_iou(a, b) == pytest.approx(360 / 440)
    # rings of 76 pixels each share the top and bottom rows over columns 12..29: 2 x 18 = 36
    assert boundary_iou(a, b) == pytest.approx(36 / (76 + 76 - 36))


def test_band_width_grows_with_the_image():
    m = square(200, 200, 50, 150, 50, 150)  # diagonal 282.8 -> d = round(5.66) = 6
    assert reference_band_width(200, 200) == 6
    assert mask_boundary(m).sum() == 100 * 100 - 88 * 88


def test_empty_and_disjoint_masks():
    empty = np.zeros((30, 40), bool)
    full = np.ones((30, 40), bool)
    assert mask_iou(empty, empty) == 1.0
    assert mask_iou(empty, full) == 0.0
    assert boundary_iou(empty, full) == 0.0
    assert mask_iou(square(30, 40, 0, 5, 0, 5), square(30, 40, 20, 25, 30, 35)) == 0.0


def test_shape_mismatch_is_an_error():
    with pytest.raises(ValueError):
        mask_iou(np.zeros((3, 4), bool), np.zeros((4, 3), bool))


# -- random masks against the brute-force reference -------------------------------------
@pytest.mark.parametrize("shape", [(37, 53), (64, 64), (90, 120), (160, 100)])
def test_random_masks_match_reference(shape):
    rng = np.random.default_rng(sum(shape))
    for _ in range(3):
        a, b = random_blob(rng, *shape), random_blob(rng, *shape)
        if rng.random() < 0.5:  # salt-and-pepper: isolated pixels and holes
            a ^= rng.random(shape) < 0.01
        ref_a, ref_b = reference_boundary(a), reference_boundary(b)
        np.testing.assert_array_equal(mask_boundary(a), ref_a)
        np.testing.assert_array_equal(mask_boundary(b), ref_b)
        assert mask_iou(a, b) == pytest.approx(reference_iou(a, b), abs=1e-12)
        assert boundary_iou(a, b) == pytest.approx(reference_iou(ref_a, ref_b), abs=1e-12)


def test_other_dilation_ratio_matches_reference():
    rng = np.random.default_rng(7)
    a, b = random_blob(rng, 80, 100), random_blob(rng, 80, 100)
    for ratio in (0.005, 0.05):
        ref = reference_iou(reference_boundary(a, ratio), reference_boundary(b, ratio))
        assert boundary_iou(a, b, ratio) == pytest.approx(ref, abs=1e-12)
