"""Box mode: each image's box prompts in one decoder call, one COCO result entry per box.

    reader   read the image file (``transforms.load_image``), check its boxes against its size,
             pre-process (resize, normalise, pad)
    model    the encoder, then one decoder call for all boxes of the image; each box's best mask
    writer   RLE-encode each mask into its entry (``result_entries``)

An image with no boxes (none in the boxes file, or not named there) is not read or encoded: its result is
``[]``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ...data import transforms as T
from ...errors import DataError
from ...runtime.predictor import Predictor, best_masks
from .. import boxes as box_files
from .. import rle
from .plan import Job
from .results import Entry


@dataclass(frozen=True)
class Prepared:
    """An image ready for the encoder, with the boxes it was checked against."""

    tensor: np.ndarray  # [1,3,S,S] encoder input
    original_size: tuple[int, int]
    input_size: tuple[int, int]
    boxes: box_files.ImageBoxes


@dataclass(frozen=True)
class BoxMasks:
    """Each box's best mask ``[K,H,W]`` bool and its score ``[K]``, of the image's K boxes in order."""

    masks: np.ndarray
    scores: np.ndarray
    boxes: box_files.ImageBoxes


def result_entries(image: box_files.ImageBoxes, masks: np.ndarray, scores: np.ndarray) -> list[Entry]:
    """Masks ``[K,H,W]`` bool and scores ``[K]`` of ``image``'s K boxes -> COCO result entries."""
    entries = []
    for box, mask, score in zip(image.boxes, masks, scores):
        encoded, area, bbox = rle.encode_with_stats(mask)
        e: Entry = {"image_id": image.image_id, "file_name": image.file_name, "category_id": box.category_id,
                    "segmentation": encoded, "score": float(score), "bbox": bbox, "area": area,
                    "prompt_bbox": list(box.bbox)}
        if box.annotation_id is not None:
            e["annotation_id"] = box.annotation_id
        entries.append(e)
    return entries


class BoxMode:
    """The stages' work in box mode (the module doc); a ``SegmentMode``."""

    def __init__(self, boxes_path: str, predictor: Predictor) -> None:
        self.boxes_path, self.predictor = boxes_path, predictor
        self.image_size: int = predictor.info.image_size

    def read(self, job: Job) -> Prepared | None:
        entry = job.entry
        if entry is None or not entry.boxes:
            return None
        image = T.load_image(str(job.path))
        h, w = image.shape[:2]
        if entry.width is not None and entry.height is not None and (entry.width, entry.height) != (w, h):
            raise DataError(f"{self.boxes_path}: image {job.rel} is {w}x{h} but the boxes file says "
                            f"{entry.width}x{entry.height}; check that it is the right image")
        box_files.check_boxes_inside(entry, w, h, self.boxes_path, job.rel)
        tensor, input_size = T.preprocess_image(image, self.image_size)
        return Prepared(tensor, (h, w), input_size, entry)

    def predict(self, job: Job, read: Prepared | None) -> BoxMasks | None:
        """All boxes of one image in one decoder call."""
        if read is None:
            return None
        self.predictor.set_image_tensor(read.tensor, read.original_size, read.input_size)
        masks, scores, _ = self.predictor.predict_boxes(np.array([b.xyxy for b in read.boxes.boxes],
                                                                 dtype=np.float64))
        return BoxMasks(*best_masks(masks, scores), read.boxes)

    def entries(self, job: Job, result: BoxMasks | None) -> list[Entry]:
        return [] if result is None else result_entries(result.boxes, result.masks, result.scores)
