"""Detector mode (``segment --detector D.onnx``): an ONNX detector's boxes prompt the model on each image, so a
folder is labelled without a boxes file.

    reader   read the picture, run the detector on it (``apps.detector.OnnxDetector``: letterbox, ONNX Runtime,
             NMS for the raw head, class filter and score threshold), pre-process for the encoder if it found
             something
    model    the encoder, then one decoder call for all the image's boxes; each box's best mask
    writer   one COCO result entry per box::

    {"image_id": 3, "file_name": "a.jpg", "category_id": 0,   # the detector's class id (0-based, as exported)
     "segmentation": {"size": [h, w], "counts": "..."},   # COCO compressed RLE
     "score": 0.87,                                        # the detector's score (what ranks a detection)
     "mask_score": 0.93,                                   # the mask's predicted IoU
     "bbox": [x, y, w, h], "area": 1234,                   # of the mask, pixels
     "prompt_bbox": [x, y, w, h]}                          # the detector's box

An image where the detector finds nothing is not encoded: its file holds ``[]``. Images get ids 1, 2, ... in
image order. The detector runs in the reader thread, so it overlaps the model.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ...data import transforms as T
from ...runtime.predictor import Predictor, best_masks
from .. import rle
from ..detections import Detections
from ..detector import OnnxDetector
from .plan import Job
from .results import Entry


@dataclass(frozen=True)
class Detected:
    """An image's detections and, if there are any, the encoder's input."""

    detections: Detections
    tensor: np.ndarray | None  # [1,3,S,S]; None: nothing detected, nothing to encode
    original_size: tuple[int, int]
    input_size: tuple[int, int] | None


@dataclass(frozen=True)
class DetectedMasks:
    """Each detection's best mask ``[K,H,W]`` and its predicted IoU ``[K]``."""

    detections: Detections
    masks: np.ndarray
    scores: np.ndarray


def detector_entries(image_id: int, file_name: str, result: DetectedMasks) -> list[Entry]:
    """One image's detections and masks -> COCO result entries (the module doc)."""
    entries: list[Entry] = []
    dets = result.detections
    for box, score, cls, mask, mask_score in zip(dets.boxes, dets.scores, dets.classes, result.masks, result.scores):
        encoded, area, bbox = rle.encode_with_stats(mask)
        x0, y0, x1, y1 = (float(v) for v in box)
        entries.append({"image_id": image_id, "file_name": file_name, "category_id": int(cls),
                        "segmentation": encoded, "score": float(score), "mask_score": float(mask_score),
                        "bbox": bbox, "area": area, "prompt_bbox": [x0, y0, x1 - x0, y1 - y0]})
    return entries


class DetectorMode:
    """The stages' work in detector mode (the module doc); a ``SegmentMode``."""

    def __init__(self, detector: OnnxDetector, predictor: Predictor) -> None:
        self.detector, self.predictor = detector, predictor
        self.image_size: int = predictor.info.image_size

    def read(self, job: Job) -> Detected:
        image = T.load_image(str(job.path))
        size = (int(image.shape[0]), int(image.shape[1]))
        dets = self.detector.detect(image).filtered()  # boxes clipped to nothing at the border left out
        if not len(dets):
            return Detected(dets, None, size, None)
        tensor, input_size = T.preprocess_image(image, self.image_size)
        return Detected(dets, tensor, size, input_size)

    def predict(self, job: Job, read: Detected) -> DetectedMasks:
        """All detections of one image in one decoder call."""
        dets = read.detections
        if read.tensor is None:
            h, w = read.original_size
            return DetectedMasks(dets, np.zeros((0, h, w), bool), np.zeros(0, np.float32))
        self.predictor.set_image_tensor(read.tensor, read.original_size, read.input_size)
        masks, scores, _ = self.predictor.predict_boxes(dets.boxes.astype(np.float64))
        return DetectedMasks(dets, *best_masks(masks, scores))

    def entries(self, job: Job, result: DetectedMasks) -> list[Entry]:
        if job.entry is None:  # make_plan names every image in detector mode
            raise ValueError(f"image {job.rel} has no id: plan detector mode with make_plan")
        return detector_entries(job.entry.image_id, job.entry.file_name, result)
