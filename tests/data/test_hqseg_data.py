"""HQSeg-44K layout, listing errors, the synthetic generator, augmentation, prompts and the training set."""

from __future__ import annotations

import shutil

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from hqsam_edge.data.augment import AugmentSpec, augment_pair, hflip, jitter_size, to_tensors
from hqsam_edge.data.hqseg import (
    TRAIN_SET_NAMES,
    VAL_SET_NAMES,
    HQSegTrainSet,
    collate_train,
    find_datasets,
    list_split,
    read_pair,
)
from hqsam_edge.data.prompts import (
    PROMPT_TYPES,
    PromptSpec,
    incoherent_region,
    mask_box,
    noisy_mask,
    sample_points,
    sample_prompt,
)
from hqsam_edge.data.synthetic import THIN_STRUCTURES, thin_structure_sample, write_synthetic_hqseg
from hqsam_edge.errors import DataError, UsageError

SIZE = (96, 128)


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return write_synthetic_hqseg(tmp_path_factory.mktemp("hqseg") / "data", n_train=2, n_val=2, size=SIZE, seed=0)


@pytest.fixture()
def copy(root, tmp_path):
    return shutil.copytree(root, tmp_path / "data")


# -- layout and the generator ---------------------------------------------------
def test_synthetic_set_has_the_official_layout(root):
    for folder in ("DIS5K/DIS-TR/im", "DIS5K/DIS-TR/gt", "thin_object_detection/ThinObject5K/images_train",
                   "thin_object_detection/ThinObject5K/masks_train", "cascade_psp/fss_all", "cascade_psp/DUTS-TR",
                   "cascade_psp/DUTS-TE", "cascade_psp/ecssd", "cascade_psp/MSRA_10K", "DIS5K/DIS-VD/im",
                   "DIS5K/DIS-VD/gt", "thin_object_detection/COIFT/images", "thin_object_detection/COIFT/masks",
                   "thin_object_detection/HRSOD/images", "thin_object_detection/HRSOD/masks_max255",
                   "thin_object_detection/ThinObject5K/images_test", "thin_object_detection/ThinObject5K/masks_test"):
        assert (root / folder).is_dir(), folder
    side = sorted(p.suffix for p in (root / "cascade_psp/ecssd").iterdir())
    assert side == [".jpg", ".jpg", ".png", ".png"]  # image and mask side by side
    train, val = list_split(root, None, "train"), list_split(root, None, "val")
    assert tuple(train) == TRAIN_SET_NAMES and tuple(val) == VAL_SET_NAMES
    assert all(len(s) == 2 for s in (*train.values(), *val.values()))
    for samples in (*train.values(), *val.values()):
        image, mask = read_pair(samples[0])
        assert image.shape == (*SIZE, 3) and image.dtype == np.uint8 and mask.shape == SIZE
        assert set(np.unique(mask)) <= {0, 255} and (mask > 128).sum() >= 32


def test_synthetic_set_is_deterministic(tmp_path):
    a = write_synthetic_hqseg(tmp_path / "a", 1, 1, size=64, seed=3)
    b = write_synthetic_hqseg(tmp_path / "b", 1, 1, size=64, seed=3)
    c = write_synthetic_hqseg(tmp_path / "c", 1, 1, size=64, seed=4)
    rel = "DIS5K/DIS-VD/gt/dis5k-vd_0000.png"
    assert (a / rel).read_bytes() == (b / rel).read_bytes() != (c / rel).read_bytes()


@pytest.mark.parametrize("kind", sorted(THIN_STRUCTURES))
def test_thin_structures_are_thin(kind):
    image, mask = thin_structure_sample(240, 320, seed=1, kind=kind)
    fg = mask > 128
    assert 32 <= fg.sum() < 0.4 * fg.size
    # most of a thin structure vanishes under a 9x9 erosion; a blob would survive
    eroded = cv2.erode(mask, np.ones((9, 9), np.uint8)) > 128
    assert eroded.sum() < 0.35 * fg.sum()
    # the object differs from the background in the image
    assert abs(image[fg].mean() - image[~fg].mean()) > 10 or abs(image[fg].std() - image[~fg].std()) > 5


# -- listing errors ----------------------------------------------------------------
def test_missing_root_and_folder_are_named(copy, tmp_path):
    with pytest.raises(DataError, match="data root not found"):
        list_split(tmp_path / "nowhere", None, "val")
    shutil.rmtree(copy / "thin_object_detection/HRSOD/masks_max255")
    with pytest.raises(DataError, match=r"HRSOD: folder not found: .*masks_max255"):
        list_split(copy, None, "val")
    list_split(copy, ["COIFT"], "val")  # the other sets still list


def test_image_without_mask_is_named(copy):
    (copy / "DIS5K/DIS-VD/gt/dis5k-vd_0001.png").unlink()
    with pytest.raises(DataError, match=r"image .*dis5k-vd_0001\.jpg has no mask .*gt/dis5k-vd_0001\.png"):
        list_split(copy, ["DIS5K-VD"], "val")


def test_mask_without_image_is_named(copy):
    (copy / "cascade_psp/ecssd/ecssd_0000.jpg").unlink()
    with pytest.raises(DataError, match=r"ECSSD: mask .*ecssd_0000\.png has no image .*ecssd_0000\.jpg"):
        list_split(copy, ["ECSSD"], "train")


def test_size_mismatch_and_corrupt_files_are_named(copy):
    gt = copy / "thin_object_detection/COIFT/masks/coift_0000.png"
    Image.fromarray(np.zeros((10, 10), np.uint8)).save(gt)
    samples = list_split(copy, ["coift"], "val")["COIFT"]
    with pytest.raises(DataError, match=r"mask .*coift_0000\.png is 10x10 but its image .*coift_0000\.jpg is 128x96"):
        read_pair(samples[0])
    (copy / "thin_object_detection/COIFT/images/coift_0001.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(DataError, match=r"cannot read image .*coift_0001\.jpg"):
        read_pair(samples[1])


def test_empty_folder_and_unknown_names(copy):
    for p in (copy / "DIS5K/DIS-TR/im").iterdir():
        p.unlink()
    with pytest.raises(DataError, match=r"DIS5K-TR: no \.jpg images"):
        list_split(copy, ["DIS5K-TR"], "train")
    with pytest.raises(UsageError, match="unknown val data set 'DIS5K-TR'"):
        find_datasets(["DIS5K-TR"], "val")
    assert [d.name for d in find_datasets(["thinobject5k-te", "COIFT"], "val")] == ["ThinObject5k-TE", "COIFT"]


# -- augmentation ---------------------------------------------------------------------
def _pair(h=300, w=400, seed=0):
    """An image whose red channel equals the mask and whose green channel is constant 255 (marks content)."""
    rng = np.random.default_rng(seed)
    mask = (rng.random((h, w)) > 0.5).astype(np.uint8) * 255
    mask = cv2.GaussianBlur(mask, (0, 0), 3)
    image = np.stack([mask, np.full_like(mask, 255), rng.integers(0, 255, (h, w), dtype=np.uint8)], -1)
    return to_tensors(image, mask)


def test_lsj_keeps_image_and_mask_aligned_and_pads():
    img, msk = _pair()
    for seed in range(12):
        out_img, out_msk = augment_pair(img, msk, np.random.default_rng(seed), AugmentSpec())
        assert out_img.shape == (3, 1024, 1024) and out_msk.shape == (1, 1024, 1024)
        content = out_img[1] > 200
        assert torch.allclose(out_img[0][content], out_msk[0][content], atol=1e-3)
        assert (out_img[:, ~content] == 128).all() and (out_msk[:, ~content] == 0).all()


def test_lsj_scale_sets_the_longest_side():
    img, msk = _pair(300, 400)
    for scale, expected in ((0.5, (384, 512)), (0.125, (96, 128))):
        spec = AugmentSpec(scale_min=scale, scale_max=scale, hflip_prob=0.0)
        assert jitter_size(300, 400, scale, spec) == expected
        out_img, _ = augment_pair(img, msk, np.random.default_rng(0), spec)
        rows, cols = np.nonzero((out_img[1] > 200).numpy())
        assert (rows.max() + 1, cols.max() + 1) == expected  # top-left, padded right/bottom
    spec = AugmentSpec(scale_min=2.0, scale_max=2.0)  # larger than 1024: a random full crop, no padding
    out_img, _ = augment_pair(img, msk, np.random.default_rng(0), spec)
    assert (out_img[1] > 200).all()


def test_flip_and_deterministic_path():
    img, msk = to_tensors(np.random.default_rng(0).integers(0, 255, (1024, 1024, 3), dtype=np.uint8),
                          np.zeros((1024, 1024), np.uint8))
    spec = AugmentSpec(hflip_prob=1.0, scale_min=1.0, scale_max=1.0)
    out_img, _ = augment_pair(img, msk, np.random.default_rng(0), spec)
    assert torch.equal(out_img, hflip(img, msk)[0]) and torch.equal(out_img, img.flip(2))
    small, small_mask = _pair(300, 400)
    out_img, out_msk = augment_pair(small, small_mask, np.random.default_rng(0), AugmentSpec(enabled=False))
    expected = F.interpolate(small[None], (768, 1024), mode="bilinear", align_corners=False)[0]
    assert torch.equal(out_img[:, :768], expected) and (out_img[:, 768:] == 128).all()


# -- prompts ---------------------------------------------------------------------------
def _disc(size=1024, radius=200):
    yy, xx = np.mgrid[0:size, 0:size]
    return torch.from_numpy(((yy - 500) ** 2 + (xx - 400) ** 2 < radius**2).astype(np.float32) * 255)[None]


def test_box_is_the_tight_box_of_the_foreground():
    m = torch.zeros(1, 64, 80)
    m[0, 10:20, 30:45] = 255
    m[0, 5, 5] = 100  # not foreground (<= 128)
    np.testing.assert_array_equal(mask_box(m), [30, 10, 44, 19])
    assert mask_box(torch.zeros(1, 8, 8)) is None


def test_points_are_distinct_foreground_pixels():
    m = _disc()
    pts = sample_points(m, 10, np.random.default_rng(0))
    assert pts.shape == (10, 2) and len({tuple(p) for p in pts}) == 10
    assert (m[0, pts[:, 1].astype(int), pts[:, 0].astype(int)] > 128).all()
    assert sample_points(m[:, :1, :1] * 0, 10, np.random.default_rng(0)) is None


def test_noisy_mask_only_changes_the_boundary_region():
    m = _disc()
    noisy = noisy_mask(m, np.random.default_rng(0))
    assert noisy.shape == (1, 256, 256) and set(noisy.unique().tolist()) <= {0.0, 255.0}
    low = F.interpolate(m[None], (256, 256), mode="bilinear", align_corners=False)[0] / 255
    region = incoherent_region(low[None])[0]
    clean = (low > 0.5).float() * 255
    assert torch.equal(noisy[~region], clean[~region])
    changed = (noisy != clean) & region
    assert 0 < changed.sum() < region.sum()  # noise flips some, not all, boundary pixels
    assert region.sum() < 0.1 * region.numel()  # the region is a band, not the whole disc


def test_sample_prompt_types_layouts_and_fallbacks():
    m = _disc()
    kinds = {}
    for seed in range(60):
        p = sample_prompt(m, np.random.default_rng(seed))
        kinds[p.kind] = kinds.get(p.kind, 0) + 1
        n = p.point_coords.shape[0]
        assert p.point_coords.shape == (n, 2) and p.point_labels.shape == (n,) and p.mask_input.shape == (1, 256, 256)
        if p.kind == "box":
            assert p.point_labels.tolist() == [2, 3] and p.has_mask_input == 0
            assert p.point_coords.flatten().tolist() == mask_box(m).tolist()
        elif p.kind == "points":
            assert p.point_labels.tolist() == [1] * 10 + [-1] and p.has_mask_input == 0
        else:
            assert n == 0 and p.has_mask_input == 1 and p.mask_input.max() == 255
    assert set(kinds) == set(PROMPT_TYPES) and min(kinds.values()) >= 10
    tiny = torch.zeros(1, 1024, 1024)
    tiny[0, 3, 4:9] = 255  # 5 foreground pixels: no 10 points
    assert all(sample_prompt(tiny, np.random.default_rng(s)).kind != "points" for s in range(20))
    empty = sample_prompt(torch.zeros(1, 1024, 1024), np.random.default_rng(0))
    assert empty.kind == "noisy_mask" and empty.mask_input.max() == 0
    only_box = PromptSpec(types=("box",))
    assert {sample_prompt(m, np.random.default_rng(s), only_box).kind for s in range(5)} == {"box"}
    with pytest.raises(UsageError, match="unknown prompt types"):
        PromptSpec(types=("scribble",))


# -- the training set -------------------------------------------------------------------
def test_train_set_items_are_deterministic_per_epoch(root):
    samples = list_split(root, ["DIS5K-TR"], "train")["DIS5K-TR"]
    ds = HQSegTrainSet(samples, seed=5)
    a, b = ds[0], ds[0]
    assert a["image"].dtype == torch.uint8 and a["image"].shape == (3, 1024, 1024)
    assert a["target"].shape == (1, 1024, 1024) and 0 <= a["target"].min() and a["target"].max() <= 1
    assert torch.equal(a["image"], b["image"]) and torch.equal(a["prompt"].point_coords, b["prompt"].point_coords)
    ds.set_epoch(1)
    assert not torch.equal(ds[0]["image"], a["image"])  # a new augmentation each epoch
    fixed = HQSegTrainSet(samples, seed=5, fixed_augmentation=True)
    first = fixed[1]["image"]
    fixed.set_epoch(3)
    assert torch.equal(fixed[1]["image"], first)  # the same augmentation every epoch (feature cache)
    batch = collate_train([ds[0], ds[1]])
    assert batch["image"].shape == (2, 3, 1024, 1024) and batch["index"].tolist() == [0, 1]
    assert len(batch["prompts"]) == 2
