"""HQSeg-44K: the official folder layout, listing with validation, and the training set.

The layout under one root is the one the official HQ-SAM training reads
(``train.py`` of SysCV/sam-hq)::

    DIS5K/DIS-TR/{im,gt}                                           train
    thin_object_detection/ThinObject5K/{images_train,masks_train}  train
    cascade_psp/{fss_all,DUTS-TR,DUTS-TE,ecssd,MSRA_10K}           train (image and mask side by side)
    DIS5K/DIS-VD/{im,gt}                                           validation
    thin_object_detection/COIFT/{images,masks}                     validation
    thin_object_detection/HRSOD/{images,masks_max255}              validation
    thin_object_detection/ThinObject5K/{images_test,masks_test}    validation

Images are ``NAME.jpg``, masks ``NAME.png`` (foreground where the first
channel is ``> 128``). Listing checks every pair up front and raises a
``DataError`` naming the missing folder or the unmatched file; reading checks
that an image and its mask have the same size.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..errors import DataError
from ..inputs import data_root, require_choice
from .augment import AugmentSpec, augment_pair, to_tensors
from .prompts import PromptSpec, sample_prompt

IMAGE_EXT = ".jpg"
MASK_EXT = ".png"


@dataclass(frozen=True)
class DatasetLayout:
    """Where one data set lives under the root (``image_dir`` may equal ``mask_dir``)."""

    name: str
    image_dir: str
    mask_dir: str
    split: str  # "train" or "val"


def _side_by_side(name: str, folder: str) -> DatasetLayout:
    return DatasetLayout(name, f"cascade_psp/{folder}", f"cascade_psp/{folder}", "train")


TRAIN_SETS: tuple[DatasetLayout, ...] = (
    DatasetLayout("DIS5K-TR", "DIS5K/DIS-TR/im", "DIS5K/DIS-TR/gt", "train"),
    DatasetLayout("ThinObject5k-TR", "thin_object_detection/ThinObject5K/images_train",
                  "thin_object_detection/ThinObject5K/masks_train", "train"),
    _side_by_side("FSS", "fss_all"),
    _side_by_side("DUTS-TR", "DUTS-TR"),
    _side_by_side("DUTS-TE", "DUTS-TE"),
    _side_by_side("ECSSD", "ecssd"),
    _side_by_side("MSRA10K", "MSRA_10K"),
)
VAL_SETS: tuple[DatasetLayout, ...] = (  # the order of the paper's tables
    DatasetLayout("DIS5K-VD", "DIS5K/DIS-VD/im", "DIS5K/DIS-VD/gt", "val"),
    DatasetLayout("COIFT", "thin_object_detection/COIFT/images", "thin_object_detection/COIFT/masks", "val"),
    DatasetLayout("HRSOD", "thin_object_detection/HRSOD/images", "thin_object_detection/HRSOD/masks_max255", "val"),
    DatasetLayout("ThinObject5k-TE", "thin_object_detection/ThinObject5K/images_test",
                  "thin_object_detection/ThinObject5K/masks_test", "val"),
)
TRAIN_SET_NAMES = tuple(d.name for d in TRAIN_SETS)
VAL_SET_NAMES = tuple(d.name for d in VAL_SETS)


@dataclass(frozen=True)
class Sample:
    """One image and its mask."""

    dataset: str
    name: str  # file stem
    image: Path
    mask: Path


def find_datasets(names: Sequence[str] | None, split: str) -> tuple[DatasetLayout, ...]:
    """The layouts of ``names`` (case-insensitive) in ``split``; all of the split if ``names`` is empty."""
    pool = {"train": TRAIN_SETS, "val": VAL_SETS}[split]
    if not names:
        return pool
    by_name = {d.name.lower(): d for d in pool}
    chosen = []
    for name in names:
        if name.lower() not in by_name:  # refused, with the names as the layouts spell them
            require_choice(name, [d.name for d in pool], f"{split} data set")
        chosen.append(by_name[name.lower()])
    return tuple(dict.fromkeys(chosen))


def list_samples(root: str | Path, layout: DatasetLayout) -> list[Sample]:
    """Every (image, mask) pair of one data set, sorted by name; ``DataError`` on any gap."""
    root = data_root(root)
    image_dir, mask_dir = root / layout.image_dir, root / layout.mask_dir
    for folder in dict.fromkeys((image_dir, mask_dir)):
        if not folder.is_dir():
            raise DataError(f"{layout.name}: folder not found: {folder}")
    images = {p.stem: p for p in image_dir.iterdir() if p.suffix == IMAGE_EXT and p.is_file()}
    masks = {p.stem: p for p in mask_dir.iterdir() if p.suffix == MASK_EXT and p.is_file()}
    if not images:
        raise DataError(f"{layout.name}: no {IMAGE_EXT} images in {image_dir}")
    no_mask = sorted(set(images) - set(masks))
    if no_mask:
        more = f" (and {len(no_mask) - 1} more)" if len(no_mask) > 1 else ""
        raise DataError(
            f"{layout.name}: image {images[no_mask[0]]} has no mask {mask_dir / (no_mask[0] + MASK_EXT)}{more}"
        )
    no_image = sorted(set(masks) - set(images))
    if no_image:
        more = f" (and {len(no_image) - 1} more)" if len(no_image) > 1 else ""
        raise DataError(f"{layout.name}: mask {masks[no_image[0]]} has no image "
                        f"{image_dir / (no_image[0] + IMAGE_EXT)}{more}")
    return [Sample(layout.name, stem, images[stem], masks[stem]) for stem in sorted(images)]


def list_split(root: str | Path, names: Sequence[str] | None, split: str) -> dict[str, list[Sample]]:
    """``{data set name: samples}`` for ``names`` (default: all) of ``split`` ("train" or "val")."""
    return {layout.name: list_samples(root, layout) for layout in find_datasets(names, split)}


def read_image(path: Path) -> np.ndarray:
    """``HxWx3`` uint8 RGB (grey images repeated to three channels, as the official loader). Unlike
    ``transforms.load_image`` (photos to segment), not turned by an EXIF orientation: the official loader
    (``skimage.io.imread``) does not turn them either, and the masks are drawn on the pixels as stored."""
    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB"))
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise DataError(f"cannot read image {path}: {exc}") from None


def read_mask(path: Path) -> np.ndarray:
    """``HxW`` uint8 grey levels: the first channel of a colour mask, as the official loader."""
    try:
        with Image.open(path) as im:
            if im.mode in ("P", "1"):
                im = im.convert("RGB" if im.mode == "P" else "L")
            arr = np.asarray(im)
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise DataError(f"cannot read mask {path}: {exc}") from None
    if arr.ndim == 3:
        arr = arr[..., 0]
    if arr.dtype != np.uint8:
        arr = np.clip(arr, 0, 255).astype(np.uint8)
    return arr


def read_pair(sample: Sample) -> tuple[np.ndarray, np.ndarray]:
    """The image ``HxWx3`` and mask ``HxW`` (uint8) of ``sample``; ``DataError`` if their sizes differ."""
    image, mask = read_image(sample.image), read_mask(sample.mask)
    if image.shape[:2] != mask.shape:
        raise DataError(f"mask {sample.mask} is {mask.shape[1]}x{mask.shape[0]} but its image {sample.image} "
                        f"is {image.shape[1]}x{image.shape[0]}")
    return image, mask


class HQSegTrainSet(torch.utils.data.Dataset):
    """Augmented training samples, one sampled prompt each.

    Item ``i``: ``{"index": i, "image": uint8 [3,S,S], "target": float32
    [1,S,S] in 0..1 (mask / 255), "prompt": Prompt}`` with S = 1024. The image
    is truncated to uint8 after augmentation, as the official code does before
    SAM's normalisation; the target stays soft (bilinear grey levels / 255),
    which is what the official loss samples.

    Randomness is a pure function of ``(seed, epoch, index)``, so every
    worker, rank and resumed run draws the same. With
    ``fixed_augmentation`` the flip/LSJ draw ignores the epoch (the same
    augmented image every epoch, which is what makes cached encoder features
    valid); prompts are drawn anew every epoch either way.
    """

    def __init__(
        self,
        samples: Sequence[Sample],
        *,
        augment: AugmentSpec = AugmentSpec(),
        prompts: PromptSpec = PromptSpec(),
        seed: int = 0,
        fixed_augmentation: bool = False,
    ) -> None:
        if not samples:
            raise DataError("the training set is empty")
        self.samples = list(samples)
        self.augment = augment
        self.prompts = prompts
        self.seed = seed
        self.fixed_augmentation = fixed_augmentation
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.samples)

    def augmentation_rng(self, index: int) -> np.random.Generator:
        epoch = 0 if self.fixed_augmentation else self.epoch + 1
        return np.random.default_rng([self.seed, epoch, index, 0])

    def prompt_rng(self, index: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, self.epoch, index, 1])

    def __getitem__(self, index: int) -> dict:
        image, mask = to_tensors(*read_pair(self.samples[index]))
        image, mask = augment_pair(image, mask, self.augmentation_rng(index), self.augment)
        prompt = sample_prompt(mask, self.prompt_rng(index), self.prompts)
        return {"index": index, "image": image.to(torch.uint8), "target": mask / 255.0, "prompt": prompt}


def collate_train(items: Sequence[dict]) -> dict:
    """Stack items: ``index`` [B], ``image`` uint8 [B,3,S,S], ``target`` [B,1,S,S], ``prompts`` list of B."""
    return {
        "index": torch.tensor([it["index"] for it in items]),
        "image": torch.stack([it["image"] for it in items]),
        "target": torch.stack([it["target"] for it in items]),
        "prompts": [it["prompt"] for it in items],
    }


__all__ = [
    "DatasetLayout", "HQSegTrainSet", "Sample", "TRAIN_SETS", "TRAIN_SET_NAMES", "VAL_SETS", "VAL_SET_NAMES",
    "collate_train", "find_datasets", "list_samples", "list_split", "read_image", "read_mask", "read_pair",
]
