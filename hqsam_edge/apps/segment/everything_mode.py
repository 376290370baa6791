"""Everything mode (``segment --everything``): every mask the generator finds in each image.

    reader   read the picture (``transforms.load_image``)
    model    ``SamAutomaticMaskGenerator`` on it: the encoder once per crop, point batches through the
             decoder, the official post-processing; masks come out as uncompressed RLE (no full-size mask
             is kept)
    writer   compress each RLE into one COCO result entry per mask::

    {"image_id": 3, "file_name": "a.jpg", "category_id": 1,
     "segmentation": {"size": [h, w], "counts": "..."},   # COCO compressed RLE
     "score": 0.93,                                        # the predicted IoU
     "bbox": [x, y, w, h], "area": 1234,                   # of the mask, as pycocotools computes them
     "stability_score": 0.97, "point_coords": [[x, y]],    # as the generator's records
     "crop_box": [x, y, w, h]}

``bbox`` follows COCO (``pycocotools.mask.toBbox``: w counts the columns the mask covers); the generator's own
records keep the official ``x1 - x0``. Images get ids 1, 2, ... in image order, category 1.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from ...data import transforms as T
from ...runtime.predictor import Predictor
from .. import rle
from ..generator_options import GeneratorOptions
from .plan import Job
from .results import Entry

Record = dict[str, Any]  # one of the generator's records (``SamAutomaticMaskGenerator.generate``)


def everything_entries(image_id: int, file_name: str, records: list[Record]) -> list[Entry]:
    """The generator's records (``output_mode="uncompressed_rle"``) of one image -> COCO result entries."""
    entries: list[Entry] = []
    for r in records:
        seg = r["segmentation"]
        entries.append({"image_id": image_id, "file_name": file_name, "category_id": 1,
                        "segmentation": rle.compress_rle(seg), "score": float(r["predicted_iou"]),
                        "bbox": rle.rle_bbox(seg), "area": rle.rle_area(seg),
                        "stability_score": float(r["stability_score"]), "point_coords": r["point_coords"],
                        "crop_box": [float(v) for v in r["crop_box"]]})
    return entries


class EverythingMode:
    """The stages' work in everything mode (the module doc); a ``SegmentMode``."""

    def __init__(self, predictor: Predictor, options: GeneratorOptions) -> None:
        from ..mask_generator import SamAutomaticMaskGenerator  # torch: only once a run needs it

        options = dataclasses.replace(options, output_mode="uncompressed_rle")
        self.generator = SamAutomaticMaskGenerator.from_options(predictor, options)

    def read(self, job: Job) -> np.ndarray:
        return T.load_image(str(job.path))

    def predict(self, job: Job, image: np.ndarray) -> list[Record]:
        return self.generator.generate(image)

    def entries(self, job: Job, records: list[Record]) -> list[Entry]:
        if job.entry is None:  # make_plan names every image in everything mode
            raise ValueError(f"image {job.rel} has no id: plan everything mode with make_plan")
        return everything_entries(job.entry.image_id, job.entry.file_name, records)
