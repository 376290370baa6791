"""The drop-in ``hqsam_edge.SamPredictor`` against ``segment_anything_hq.SamPredictor``: the official usage code,
with only the module it imports from changed, gives the same masks.

Random weights saved in the official format; our SamPredictor takes the official model object (its weights are
loaded into ours) or an exported folder. Logits agree within 1e-4 of their range on the torch backend, 1e-3 under
ONNX Runtime; masks are equal but for pixels whose logit is within float rounding of the threshold.
"""

from __future__ import annotations

import types
import warnings

import numpy as np
import pytest
import torch

import hqsam_edge
from hqsam_edge.errors import ImageError, ImageNotSetError, UsageError
from tests.conftest import REDUCED_DEPTH, load_official, test_image
from tests.model.test_model_parity import assert_same_masks

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    import segment_anything_hq

IMAGE = test_image(300, 420)
BOX = np.array([[60.0, 40.0, 330.0, 260.0]])  # as the official demo passes it: [1, 4]
POINTS = np.array([[200.0, 150.0], [-12.0, 310.0], [0.0, 0.0]])  # the second lies outside the image
LABELS = np.array([1, 0, -1])  # the third is padding
BOXES = [[60.0, 40.0, 330.0, 260.0], [10.0, 10.0, 150.0, 120.0], [200.0, 100.0, 419.0, 299.0]]


def official_usage(lib: types.ModuleType, model, image: np.ndarray, hq: bool) -> dict[str, tuple]:
    """Code written against ``segment_anything_hq`` (its README and demo), run with ``lib`` as that module."""
    hq_kw = [{"hq_token_only": False}, {"hq_token_only": True}] if hq else [{}]
    predictor = model if isinstance(model, lib.SamPredictor) else lib.SamPredictor(model)
    predictor.set_image(image)
    out: dict[str, tuple] = {}
    for kw in hq_kw:
        tag = "hq_only" if kw.get("hq_token_only") else "sam+hq" if hq else "sam"
        for multimask in (True, False):
            out[f"points {tag} multimask={multimask}"] = predictor.predict(
                point_coords=POINTS, point_labels=LABELS, multimask_output=multimask, **kw)
        out[f"box logits {tag}"] = predictor.predict(box=BOX, multimask_output=False, return_logits=True, **kw)
        boxes = predictor.transform.apply_boxes_torch(torch.tensor(BOXES, device=predictor.device), image.shape[:2])
        out[f"predict_torch logits {tag}"] = tuple(t.cpu().numpy() for t in predictor.predict_torch(
            point_coords=None, point_labels=None, boxes=boxes, multimask_output=True, return_logits=True, **kw))
    kw = hq_kw[0]
    out["box"] = predictor.predict(box=BOX, multimask_output=False, **kw)
    masks, scores, logits = out[f"points {'sam+hq' if hq else 'sam'} multimask=True"]
    out["mask_input"] = predictor.predict(point_coords=POINTS[:1], point_labels=LABELS[:1],
                                          mask_input=logits[np.argmax(scores)][None, :, :], multimask_output=False,
                                          **kw)
    out["predict_torch boxes"] = tuple(t.cpu().numpy() for t in predictor.predict_torch(
        point_coords=None, point_labels=None, boxes=boxes, multimask_output=False, **kw))
    out["embedding"] = (predictor.get_image_embedding().cpu().numpy(),)
    out["sizes"] = (np.array(predictor.original_size), np.array(predictor.input_size))
    return out


def assert_same_answers(ours: dict, ref: dict, rel: float) -> None:
    assert ours.keys() == ref.keys()
    for what, ref_values in ref.items():
        for i, (a, b) in enumerate(zip(ours[what], ref_values)):
            a, b = np.asarray(a), np.asarray(b)
            assert a.shape == b.shape and a.dtype == b.dtype, f"{what}[{i}]: {a.shape} {a.dtype} vs {b.shape} {b.dtype}"
            if b.dtype == bool:
                continue  # masks: checked through the logits below
            scale = max(float(np.abs(b).max()), 1e-6)
            err = float(np.abs(a - b).max())
            assert err <= rel * scale, f"{what}[{i}]: max error {err:.3g} vs range {scale:.3g}"
        if "logits" in what:
            assert_same_masks(ours[what][0], ref_values[0])
        elif ref_values[0].dtype == bool:  # masks: equal but where the logit is at the threshold
            flipped = ours[what][0] != ref_values[0]
            assert flipped.mean() <= 1e-4, f"{what}: {flipped.sum()} mask pixels differ"


CASES = [("vit_tiny", "hq", None), ("vit_tiny", "sam", None), ("vit_b", "hq", REDUCED_DEPTH),
         ("vit_b", "sam", REDUCED_DEPTH)]


@pytest.fixture(scope="module", params=CASES, ids=lambda c: f"{c[1]}_{c[0]}_d{c[2] or 'full'}")
def pair(request, make_checkpoint):
    """The official usage run by both packages over the same official model object (ours converts it)."""
    backbone, variant, depth = request.param
    model = load_official(backbone, variant, make_checkpoint(backbone, variant, depth), depth)
    ref, ours = segment_anything_hq.SamPredictor(model), hqsam_edge.SamPredictor(model)
    hq = variant == "hq"
    return types.SimpleNamespace(variant=variant, model=model, ref=ref, ours=ours,
                                 ref_out=official_usage(segment_anything_hq, ref, IMAGE, hq),
                                 ours_out=official_usage(hqsam_edge, ours, IMAGE, hq))


def test_official_code_gives_the_same_answers_over_an_official_model(pair):
    assert_same_answers(pair.ours_out, pair.ref_out, 1e-4)
    key = "points sam multimask=True" if pair.variant == "sam" else "points sam+hq multimask=True"
    assert pair.ref_out[key][0].shape[0] == (3 if pair.variant == "sam" else 1)  # plain SAM: three, as SamPredictor


def test_state_the_official_exposes(pair):
    ref, ours = pair.ref, pair.ours  # the image is set
    assert ours.is_image_set and ours.device == ref.device == torch.device("cpu")
    assert (ours.original_size, ours.input_size) == (tuple(ref.original_size), ref.input_size)
    assert ours.model.image_encoder.img_size == 1024 and ours.model.mask_threshold == 0.0
    assert torch.allclose(ours.features, ref.features, rtol=0, atol=1e-4 * float(ref.features.abs().max()))
    assert len(ours.interm_features) == len(ref.interm_features)
    for a, b in zip(ours.interm_features, ref.interm_features):
        assert a.shape == b.shape and torch.allclose(a, b, rtol=0, atol=1e-4 * float(b.abs().max()))
    fresh = hqsam_edge.SamPredictor(pair.model)
    assert not fresh.is_image_set and fresh.features is None and fresh.interm_features is None
    with pytest.raises(ImageNotSetError, match="must be set") as err:
        fresh.predict(box=BOX[0])
    assert isinstance(err.value, RuntimeError)  # as the official raises
    with pytest.raises(ImageNotSetError):
        fresh.get_image_embedding()


@pytest.fixture(scope="module")
def tiny(make_checkpoint):
    return load_official("vit_tiny", "hq", make_checkpoint("vit_tiny", "hq"))


def test_set_torch_image_equals_set_image(tiny):
    ours = hqsam_edge.SamPredictor(tiny)
    ours.set_image(IMAGE)
    want = ours.predict(box=BOX, multimask_output=False)[2]
    resized = ours.transform.apply_image(IMAGE)
    ours.set_torch_image(torch.as_tensor(resized).permute(2, 0, 1)[None], IMAGE.shape[:2])
    assert ours.input_size == (731, 1024) and ours.original_size == (300, 420)
    np.testing.assert_array_equal(ours.predict(box=BOX, multimask_output=False)[2], want)
    with pytest.raises(UsageError, match="1x3xHxW with long side 1024"):
        ours.set_torch_image(torch.zeros(1, 3, 100, 100), (100, 100))
    ours.reset_image()
    assert not ours.is_image_set


def test_registry_builds_our_model_from_an_official_checkpoint(make_checkpoint):
    import contextlib
    import io

    path = make_checkpoint("vit_tiny", "hq")
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):  # the official builder prints
        warnings.simplefilter("ignore")
        ref_model = segment_anything_hq.sam_model_registry["vit_tiny"](checkpoint=str(path))
    ours = hqsam_edge.sam_model_registry["vit_tiny"](checkpoint=path)
    assert isinstance(ours, torch.nn.Module) and ours.is_hq and ours.backbone == "vit_tiny"
    assert set(hqsam_edge.sam_model_registry) == set(segment_anything_hq.sam_model_registry)
    ref = official_usage(segment_anything_hq, ref_model.eval(), IMAGE, True)  # .eval(): see findings (TinyViT)
    assert_same_answers(official_usage(hqsam_edge, ours, IMAGE, True), ref, 1e-4)


def test_bad_inputs_give_one_clear_error(tiny):
    ours = hqsam_edge.SamPredictor(tiny)
    with pytest.raises(UsageError, match="expected a SAM / HQ-SAM model"):
        hqsam_edge.SamPredictor(object())
    with pytest.raises(ImageError, match="empty"):
        ours.set_image(np.zeros((0, 5, 3), np.uint8))
    with pytest.raises(UsageError, match="image_format"):
        ours.set_image(IMAGE, image_format="HSV")
    ours.set_image(IMAGE[:60, :80])
    with pytest.raises(UsageError, match="finite"):
        ours.predict(point_coords=np.array([[np.nan, 3.0]]), point_labels=np.array([1]))
    with pytest.raises(UsageError, match="point labels must be 1"):
        ours.predict(point_coords=np.array([[3.0, 3.0]]), point_labels=np.array([2]))
    with pytest.raises(UsageError, match="point_labels must be given"):
        ours.predict(point_coords=np.array([[3.0, 3.0]]))


# -- exported folders under ONNX Runtime ---------------------------------------------------------------------------

@pytest.fixture(scope="module", params=["hq", "sam"])
def exported(request, make_checkpoint, checkpoint_export):
    variant = request.param
    out, _ = checkpoint_export(variant)  # the session's export of make_checkpoint("vit_tiny", variant)
    return variant, out, load_official("vit_tiny", variant, make_checkpoint("vit_tiny", variant))


def test_official_code_gives_the_same_answers_over_an_exported_folder(exported):
    variant, folder, model = exported
    ref = official_usage(segment_anything_hq, model, IMAGE, variant == "hq")
    with hqsam_edge.SamPredictor.from_artifacts(folder, backend="onnxruntime") as ours:
        assert ours.model.variant == variant and ours.device == torch.device("cpu")
        assert_same_answers(official_usage(hqsam_edge, ours, IMAGE, variant == "hq"), ref, 1e-3)
        assert ours.interm_features is None  # exported graphs keep only HQ-SAM's fused features
