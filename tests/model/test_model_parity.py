"""Our model and torch Predictor against the official HQ-SAM / SAM code.

Random weights saved in the official format are loaded by both; the same
image and prompts go through ``segment_anything_hq.SamPredictor`` and our
``Predictor``. Low-res logits must agree within 1e-4 of their range and the
boolean masks must be identical, but for pixels whose logit is within float
rounding of the threshold (see ``assert_same_masks``).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hqsam_edge import Predictor, build_model
from tests.conftest import REDUCED_DEPTH, load_official, official_predictor, reduced_spec, test_image

# Full vit_tiny; ViT-B with 4 blocks (early feature = block 1, not the last); ViT-L/H
# with 2 blocks in the fast run (their code path is ViT-B's with other widths).
CASES = [
    ("vit_tiny", "hq", None),
    ("vit_tiny", "sam", None),
    ("vit_b", "hq", REDUCED_DEPTH),
    ("vit_b", "sam", REDUCED_DEPTH),
    ("vit_l", "hq", 2),
    ("vit_h", "hq", 2),
    pytest.param(("vit_l", "sam", REDUCED_DEPTH), marks=pytest.mark.slow),
    pytest.param(("vit_h", "sam", REDUCED_DEPTH), marks=pytest.mark.slow),
    pytest.param(("vit_b", "hq", None), marks=pytest.mark.slow),
]

IMAGE = test_image(480, 640)
BOX = np.array([150.0, 80.0, 520.0, 400.0])
POINTS = np.array([[380.0, 210.0], [200.0, 300.0], [500.0, 90.0]])
LABELS = np.array([1, 1, 0])


def assert_close(ours, ref, what):
    ours, ref = np.asarray(ours), np.asarray(ref)
    assert ours.shape == ref.shape, f"{what}: shape {ours.shape} != {ref.shape}"
    scale = float(np.abs(ref).max())
    err = float(np.abs(ours - ref).max())
    assert err <= 1e-4 * max(scale, 1e-6), f"{what}: max error {err:.3g} vs range {scale:.3g}"


@pytest.fixture(scope="module", params=CASES, ids=lambda c: f"{c[1]}_{c[0]}_d{c[2] or 'full'}")
def pair(request, make_checkpoint):
    backbone, variant, depth = request.param
    path = make_checkpoint(backbone, variant, depth)
    torch.manual_seed(0)
    ours = Predictor.from_model(build_model(backbone, variant, path, spec=reduced_spec(backbone, depth)), device="cpu")
    ours.set_image(IMAGE)
    ref = official_predictor(load_official(backbone, variant, path, depth), IMAGE)
    return variant, ours, ref


def assert_same_masks(logits_ours, logits_ref):
    """Masks (logits > 0) equal, except where the reference logit lies within float rounding
    (1e-5 of the logit range) of the threshold: there the summation order decides, in the
    official code as in ours (batched and single-prompt calls already differ that way)."""
    logits_ours, logits_ref = np.asarray(logits_ours), np.asarray(logits_ref)
    differ = (logits_ours > 0) != (logits_ref > 0)
    if differ.any():
        worst = float(np.abs(logits_ref[differ]).max())
        scale = float(np.abs(logits_ref).max())
        assert worst <= 1e-5 * scale, f"{differ.sum()} mask pixels differ, up to logit {worst:.3g} (range {scale:.3g})"


def _compare(variant, ours, ref, **kwargs):
    hq_kw = {"hq_token_only": kwargs.pop("hq_token_only", False)} if variant == "hq" else {}
    kwargs.setdefault("multimask_output", False)  # SamPredictor's default is True, ours False
    m1, s1, l1 = ours.predict(**kwargs, **hq_kw)
    m2, s2, l2 = ref.predict(**kwargs, **hq_kw)
    assert_close(l1, l2, "low-res logits")
    assert_close(s1, s2, "iou predictions")
    assert m1.dtype == bool and m1.shape == m2.shape
    full1 = ours.predict(**kwargs, **hq_kw, return_logits=True)[0]
    full2 = ref.predict(**kwargs, **hq_kw, return_logits=True)[0]
    assert np.array_equal(m1, full1 > 0) and np.array_equal(m2, full2 > 0)
    assert_same_masks(full1, full2)
    return l1


def test_image_features(pair):
    variant, ours, ref = pair
    feats = ours.get_image_features()
    assert_close(feats["image_embeddings"], ref.features.numpy(), "image embeddings")
    if variant == "hq":
        assert feats["hq_features"].shape == (1, 32, 256, 256)


def test_box(pair):
    _compare(*pair, box=BOX)


def test_points(pair):
    _compare(*pair, point_coords=POINTS, point_labels=LABELS)


def test_points_and_box_multimask(pair):
    _compare(*pair, point_coords=POINTS[:1], point_labels=LABELS[:1], box=BOX, multimask_output=True)


def test_mask_input(pair):
    variant, ours, ref = pair
    low = _compare(variant, ours, ref, box=BOX)
    _compare(variant, ours, ref, point_coords=POINTS, point_labels=LABELS, mask_input=low[:1])


def test_hq_token_only(pair):
    variant, ours, ref = pair
    if variant != "hq":
        pytest.skip("hq_token_only exists only for HQ-SAM")
    a = _compare(variant, ours, ref, box=BOX, hq_token_only=True)
    b = _compare(variant, ours, ref, box=BOX, hq_token_only=False)
    assert not np.allclose(a, b), "hq_token_only made no difference"


def test_predict_boxes_batch(pair):
    variant, ours, ref = pair
    boxes = np.array([BOX, [10.0, 10.0, 200.0, 150.0], [300.0, 200.0, 630.0, 470.0]])
    m1, s1, l1 = ours.predict_boxes(boxes)
    kw = {"hq_token_only": False} if variant == "hq" else {}
    tb = ref.transform.apply_boxes_torch(torch.as_tensor(boxes, dtype=torch.float), ref.original_size)
    m2, s2, l2 = ref.predict_torch(None, None, boxes=tb, multimask_output=False, **kw)
    assert_close(l1, l2.numpy(), "batched low-res logits")
    full1 = ours.predict_boxes(boxes, return_logits=True)[0]
    full2 = ref.predict_torch(None, None, boxes=tb, multimask_output=False, return_logits=True, **kw)[0]
    assert np.array_equal(m1, full1 > 0) and np.array_equal(m2.numpy(), full2.numpy() > 0)
    assert_same_masks(full1, full2.numpy())
    # and each box alone gives the same as in the batch
    single = ours.predict(box=boxes[2])[2]
    assert_close(single, l1[2], "one box vs the same box in a batch")
