"""``SamAutomaticMaskGenerator`` against ``segment_anything_hq``'s, same image and settings.

Two kinds of check:

- the whole pipeline on random weights saved in the official format (torch backend, and an exported folder under
  ONNX Runtime), with thresholds lowered so that random weights leave masks. Random decoders paint masks scattered
  over the whole image (their boxes all but fill it), so these runs keep box NMS loose;
- the post-processing with masks shaped like real ones: both generators driven by the same synthetic decoder
  (compact blobs, some with holes and islands, around each point; predicted IoU from the point), patched into the
  official model and given to ours as a backend. Everything after the decoder is each package's own code: the
  mask choice, upscaling, stability, crop edges, NMS in and across crops, small regions, RLE. Here the answers
  must be identical, record for record.

Every official mask must be matched by one of ours with IoU >= 0.98 and the other way round, with at most 2%
unmatched (threshold ties).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

import hqsam_edge
from hqsam_edge.apps import rle
from hqsam_edge.errors import ImageError, UsageError
from hqsam_edge.export import contract as C
from hqsam_edge.runtime.base import Backend, ModelInfo
from hqsam_edge.runtime.predictor import Predictor
from tests.conftest import load_official, official_model, randomize_, test_image

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    import segment_anything_hq

IMAGE = test_image(240, 320)


def decoded(record: dict) -> np.ndarray:
    seg = record["segmentation"]
    return seg if isinstance(seg, np.ndarray) else rle.rle_decode(seg)


def mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 1.0


def assert_same_records(ours: list[dict], ref: list[dict], score_tol: float, exact: bool = False) -> None:
    """Both ways matched at mask IoU >= 0.98 (at most 2% unmatched); matched records agree field by field."""
    assert ref, "the settings leave no official mask: nothing is compared"
    a, b = [decoded(r) for r in ours], [decoded(r) for r in ref]
    ious = np.array([[mask_iou(x, y) for y in b] for x in a]) if a else np.zeros((0, len(b)))
    allowed = int(0.02 * max(len(a), len(b)))
    unmatched_ref = int((ious.max(axis=0, initial=0) < 0.98).sum())
    unmatched_ours = int((ious.max(axis=1, initial=0) < 0.98).sum()) if a else 0
    assert unmatched_ref <= allowed and unmatched_ours <= allowed, (
        f"{len(ours)} masks vs {len(ref)} official: {unmatched_ref} official and {unmatched_ours} of ours unmatched")
    missing = 0
    for j, r in enumerate(ref):
        same_prompt = [i for i in range(len(ours)) if ious[i, j] >= 0.98 and
                       (ours[i]["point_coords"], ours[i]["crop_box"]) == (r["point_coords"], r["crop_box"])]
        if not same_prompt:
            missing += 1
            assert missing <= allowed, f"{missing} official masks have no match from the same prompt"
            continue
        i = same_prompt[0]
        o = ours[i]
        assert o.keys() == r.keys()
        assert abs(o["predicted_iou"] - r["predicted_iou"]) <= score_tol
        assert abs(o["stability_score"] - r["stability_score"]) <= 10 * score_tol
        if exact:
            assert ious[i, j] == 1.0 and o["bbox"] == r["bbox"] and o["area"] == r["area"]
            assert type(o["segmentation"]) is type(r["segmentation"])
            if isinstance(r["segmentation"], dict):
                assert o["segmentation"] == r["segmentation"], "RLE differs"
        else:
            assert max(abs(p - q) for p, q in zip(o["bbox"], r["bbox"])) <= 2


def official_generate(model, image: np.ndarray, **options) -> list[dict]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return segment_anything_hq.SamAutomaticMaskGenerator(model, **options).generate(image)


# -- a synthetic decoder, the same in both packages ------------------------------------------------------------------

LOW = C.LOW_RES_SIZE


def _hash(cx: np.ndarray, cy: np.ndarray, k: int) -> np.ndarray:
    return np.modf(np.abs(np.sin(cx * 12.9898 + cy * 78.233 + k * 37.719) * 43758.5453))[0].astype(np.float32)


def blob_tokens(coords: np.ndarray, is_hq: bool) -> tuple[np.ndarray, np.ndarray]:
    """Points ``[P,2]`` (float32, 1024 frame) -> every token's low-res logits (disks of different radii around
    the point, some with a hole or an island; the HQ token a small offset) and an IoU per SAM token."""
    coords = np.asarray(coords, dtype=np.float32)
    cx, cy = coords[:, 0, None, None] / 4, coords[:, 1, None, None] / 4
    yy, xx = np.mgrid[:LOW, :LOW].astype(np.float32) + np.float32(0.5)
    dist = np.sqrt((xx - cx) ** 2 + (yy - cy) ** 2)
    masks = []
    for k in range(C.SAM_MASK_TOKENS):
        radius = 3 + 8 * k + 12 * _hash(cx, cy, k)
        logits = (radius - dist) * np.float32(1.5)
        hole = np.exp(-((xx - cx - radius / 3) ** 2 + (yy - cy) ** 2) / 1.2) * (_hash(cx, cy, 5 + k) > 0.5)
        island = np.exp(-((xx - cx) ** 2 + (yy - cy - radius - 5) ** 2) / 1.2) * (_hash(cx, cy, 9 + k) > 0.4)
        masks.append(logits - 12 * hole + 40 * island)
    if is_hq:
        masks.append(np.broadcast_to(np.float32(0.4) * (_hash(cx, cy, 13) - 0.5), dist.shape))
    iou = np.concatenate([0.5 + 0.5 * _hash(cx, cy, 20 + k)[:, :, 0] for k in range(C.SAM_MASK_TOKENS)], axis=1)
    return np.stack(masks, axis=1).astype(np.float32), iou.astype(np.float32)


class BlobBackend(Backend):
    """Our side: a backend whose decoder is ``blob_tokens`` (the runtime's own selection, upscaling ... follow)."""

    name = "blobs"

    def __init__(self, is_hq: bool) -> None:
        super().__init__(ModelInfo("vit_tiny", "hq" if is_hq else "sam"))
        self.calls: list[int] = []

    def _activate(self) -> None:
        return None

    def encode(self, image: np.ndarray) -> str:
        return "features"

    def _decode(self, features, prompts):
        coords = prompts[C.POINT_COORDS.name]
        self.calls.append(len(coords))
        masks, iou = blob_tokens(coords[:, 0], self.info.is_hq)
        return {C.LOW_RES_MASKS.name: masks, C.IOU_PREDICTIONS.name: iou}

    def features_to_numpy(self, features):
        return {}


def official_blob_generator(variant: str, **options):
    """The official generator, its model's encoder skipped and its decoder's ``predict_masks`` ``blob_tokens``:
    its own prompt handling, mask choice, upscaling and post-processing stay."""
    model = official_model("vit_tiny", variant).eval()
    model.prompt_encoder.forward = lambda points, boxes, masks: (points[0], None)  # the points reach predict_masks

    def predict_masks(image_embeddings, image_pe, sparse_prompt_embeddings, dense_prompt_embeddings, **_):
        masks, iou = blob_tokens(sparse_prompt_embeddings[:, 0].numpy().astype(np.float32), variant == "hq")
        return torch.from_numpy(masks), torch.from_numpy(iou)

    model.mask_decoder.predict_masks = predict_masks
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        generator = segment_anything_hq.SamAutomaticMaskGenerator(model, **options)
    predictor = generator.predictor

    def set_torch_image(transformed_image, original_image_size):
        predictor.reset_image()
        predictor.original_size, predictor.input_size = original_image_size, tuple(transformed_image.shape[-2:])
        predictor.features = torch.zeros(1, 256, 64, 64)
        predictor.interm_features = [torch.zeros(1, 64, 64, 160)]
        predictor.is_image_set = True

    predictor.set_torch_image = set_torch_image
    return generator


BLOB_SETTINGS = {
    "grid": dict(points_per_side=12, pred_iou_thresh=0.6, stability_score_thresh=0.75, box_nms_thresh=0.4),
    "crops+small regions": dict(points_per_side=8, pred_iou_thresh=0.55, stability_score_thresh=0.7,
                                crop_n_layers=1, crop_n_points_downscale_factor=2, min_mask_region_area=30,
                                output_mode="coco_rle"),
    "uncompressed, batches of 10": dict(points_per_side=6, points_per_batch=10, pred_iou_thresh=0.0,
                                        stability_score_thresh=0.97, stability_score_offset=0.3,
                                        box_nms_thresh=0.5, output_mode="uncompressed_rle"),
}


@pytest.mark.parametrize("variant", ["hq", "sam"])
@pytest.mark.parametrize("setting", list(BLOB_SETTINGS))
def test_post_processing_is_the_officials(variant, setting):
    options = BLOB_SETTINGS[setting]
    ref = official_blob_generator(variant, **options).generate(IMAGE)
    backend = BlobBackend(variant == "hq")
    backend.max_prompts = 7  # an engine profile's bound: batches go in calls of at most 7 prompts
    generator = hqsam_edge.SamAutomaticMaskGenerator(Predictor(backend), **options)
    ours = generator.generate(IMAGE)
    assert len(ref) >= 5 and len(ours) == len(ref)
    assert_same_records(ours, ref, 0.0, exact=True)
    assert [r["predicted_iou"] for r in ours] == [r["predicted_iou"] for r in ref]  # the same order
    from segment_anything.utils.amg import generate_crop_boxes

    _, layers = generate_crop_boxes(IMAGE.shape[:2], options.get("crop_n_layers", 0), 512 / 1500)
    assert max(backend.calls) == 7 and sum(backend.calls) == sum(len(generator.point_grids[i]) for i in layers)
    assert set(generator.timings) == {"encoder", "decoder", "postprocess"}


def test_low_res_stability_is_close_and_off_by_default():
    options = BLOB_SETTINGS["grid"]
    exact = hqsam_edge.SamAutomaticMaskGenerator(Predictor(BlobBackend(True)), **options)
    fast = hqsam_edge.SamAutomaticMaskGenerator(Predictor(BlobBackend(True)), **options, low_res_stability=True)
    assert not exact.options.low_res_stability
    a, b = exact.generate(IMAGE), fast.generate(IMAGE)
    matched = sum(max((mask_iou(decoded(x), decoded(y)) for y in b), default=0) >= 0.98 for x in a)
    assert matched >= 0.8 * len(a) and abs(len(b) - len(a)) <= 0.2 * len(a)


def test_one_pass_statistics_equal_the_official_helpers():
    """``mask_stats`` / ``stability_score`` / ``rle.uncompressed_rle`` against Meta's helpers, bit for bit: masks of
    every kind (scattered, blobs, empty, full), a width past one block, offsets other than 1."""
    from segment_anything.utils.amg import batched_mask_to_box, calculate_stability_score, mask_to_rle_pytorch

    from hqsam_edge.apps import mask_filters

    rng = np.random.default_rng(0)
    low = torch.from_numpy(rng.normal(0, 3, (6, 1, 40, 50)).astype(np.float32))
    logits = torch.nn.functional.interpolate(low, (150, 301), mode="bilinear")[:, 0].contiguous()
    logits[3] = -5.0  # empty
    logits[4] = 5.0  # full
    blob = torch.from_numpy(blob_tokens(np.array([[500.0, 300.0]]), True)[0][:, 2:3])
    logits[5] = torch.nn.functional.interpolate(blob, (150, 301), mode="bilinear")[0, 0]
    for offset in (1.0, 0.3):
        f = mask_filters.MaskFilter(stability_score_offset=offset)
        high, low_count, masks, boxes = mask_filters.mask_stats(logits.numpy(), f)
        assert torch.equal(mask_filters.stability_score(high, low_count)[:3],
                           calculate_stability_score(logits, 0.0, offset)[:3])  # (the empty one: 0/0 both)
        assert np.array_equal(masks, (logits > 0).numpy())
        assert torch.equal(boxes, batched_mask_to_box(logits > 0))
    assert [rle.uncompressed_rle(m) for m in masks] == mask_to_rle_pytorch(torch.from_numpy(masks))


# -- the whole pipeline on random weights -----------------------------------------------------------------------------

SEEDS = {"hq": 5, "sam": 3}  # official initialisation seeds whose random masks vary in size
MODEL_SETTINGS = {
    "hq": {"grid": dict(points_per_side=6, pred_iou_thresh=0.35, stability_score_thresh=0.19, box_nms_thresh=1.0),
           "crops+small regions": dict(points_per_side=4, pred_iou_thresh=0.3, stability_score_thresh=0.15,
                                       crop_n_layers=1, crop_n_points_downscale_factor=2, box_nms_thresh=1.0,
                                       crop_nms_thresh=1.0, min_mask_region_area=300)},
    "sam": {"grid": dict(points_per_side=4, pred_iou_thresh=0.1, stability_score_thresh=0.3,
                         stability_score_offset=0.1, box_nms_thresh=1.0)},
}
_OFFICIAL: dict[tuple[str, str], list[dict]] = {}


@pytest.fixture(scope="module")
def seeded(tmp_path_factory):
    """variant -> (official-format checkpoint, the official model loaded from it), from seeded initialisation."""
    out = {}
    for variant, seed in SEEDS.items():
        torch.manual_seed(seed)
        path = tmp_path_factory.mktemp("amg") / f"{variant}.pth"
        torch.save(randomize_(official_model("vit_tiny", variant), 0).state_dict(), path)
        out[variant] = (path, load_official("vit_tiny", variant, path))
    return out


def official_records(seeded, variant: str, setting: str) -> list[dict]:
    if (variant, setting) not in _OFFICIAL:
        _OFFICIAL[variant, setting] = official_generate(seeded[variant][1], IMAGE, **MODEL_SETTINGS[variant][setting])
    return _OFFICIAL[variant, setting]


# Five encodes of each generator: crops on the torch backend only in the slow run (ONNX Runtime below, fast).
CASES = [("hq", "grid"), pytest.param("hq", "crops+small regions", marks=pytest.mark.slow), ("sam", "grid")]


@pytest.mark.parametrize(("variant", "setting"), CASES)
def test_torch_backend_matches_the_official_generator(seeded, variant, setting):
    ref = official_records(seeded, variant, setting)
    ours = hqsam_edge.SamAutomaticMaskGenerator(seeded[variant][1], **MODEL_SETTINGS[variant][setting]).generate(IMAGE)
    assert_same_records(ours, ref, 1e-4)


@pytest.fixture(scope="module")
def hq_folder(seeded, tmp_path_factory) -> Path:
    from hqsam_edge.pipeline.export import ExportSpec, export_artifacts

    out = tmp_path_factory.mktemp("amg_export") / "hq_vit_tiny"
    export_artifacts(ExportSpec(backbone="vit_tiny", checkpoint=str(seeded["hq"][0]), out=str(out), verify=False))
    return out


@pytest.mark.parametrize("setting", list(MODEL_SETTINGS["hq"]))
def test_exported_folder_under_onnxruntime_matches_the_official_generator(seeded, hq_folder, setting):
    ref = official_records(seeded, "hq", setting)
    if setting != "grid":
        assert len(ref) >= 5 and sum(r["crop_box"] != [0, 0, 320, 240] for r in ref) == 0  # crop masks: at edges
    generator = hqsam_edge.SamAutomaticMaskGenerator.from_artifacts(hq_folder, backend="onnxruntime",
                                                                    **MODEL_SETTINGS["hq"][setting])
    assert generator.predictor.predictor.backend.name == "onnxruntime"
    assert_same_records(generator.generate(IMAGE), ref, 1e-3)


# -- bad input ---------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("options", "message"), [
    (dict(points_per_side=0), "a grid of 0 points"),
    (dict(points_per_side=None, point_grids=[np.random.rand(4, 4, 2)]), r"Nx2 array"),
    (dict(points_per_side=None, point_grids=[np.full((3, 2), np.nan)]), "not NaN"),
    (dict(points_per_side=None, point_grids=[np.zeros((0, 2))]), "N >= 1"),
    (dict(points_per_side=None, point_grids=[np.random.rand(9, 2)], crop_n_layers=1), "needs one per layer"),
    (dict(point_grids=[np.random.rand(9, 2)]), "exactly one of points_per_side or point_grids"),
    (dict(points_per_batch=0), "points_per_batch"),
    (dict(output_mode="png"), "unknown output_mode 'png'"),
    (dict(pred_iou_thresh=float("nan")), "finite"),
    (dict(points_per_side=2, crop_n_layers=2, crop_n_points_downscale_factor=2), "no points"),
])
def test_bad_options_give_one_clear_error(options, message):
    with pytest.raises(UsageError, match=message):
        hqsam_edge.SamAutomaticMaskGenerator(Predictor(BlobBackend(True)), **options)


def test_bad_images_give_one_clear_error():
    generator = hqsam_edge.SamAutomaticMaskGenerator(Predictor(BlobBackend(True)), points_per_side=2)
    with pytest.raises(ImageError, match="empty"):
        generator.generate(np.zeros((0, 10, 3), np.uint8))
    with pytest.raises(ImageError, match="uint8"):
        generator.generate(np.zeros((10, 10, 3), np.float32))
    assert generator.pred_iou_thresh == 0.88 and generator.points_per_batch == 64  # the official's attributes
