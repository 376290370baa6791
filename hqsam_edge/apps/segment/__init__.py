"""Batch segmentation of image sets from box prompts, or of everything in them: COCO RLE results, streamed and
resumable (``hqsam-edge segment``).

One job per module:

    plan             the images, their boxes, what a resume skips (``SegmentSpec``, ``make_plan``)
    results          what OUT holds: per-image files, ``results.json``, the resume record, ``errors.json``
    box_mode         box prompts: read + check + pre-process, one decoder call per image, COCO entries
    everything_mode  every mask (``SamAutomaticMaskGenerator``)
    detector_mode    an ONNX detector's boxes as the prompts (no boxes file)
    modes            the protocol both follow, and the one place that opens the model
    run              ``segment_images``: plan, model, OUT, the stream, the merge
    merge            shards of a run on one OUT (``spec.shard``, ``apps.shards``): their records, ``merge_shards``
    ray_runner       the images through Ray Data actors instead of this process (``spec.ray``, ``RayOptions``)

The images go through ``hqsam_edge.apps.stream``: three stages that overlap, joined by two bounded queues
(``spec.queue_size`` images each): a reader thread (read the file, check its boxes against its size,
pre-process), the calling thread (the model) and a writer thread (RLE-encode, write ``OUT/<image path>.json``
atomically).

Images come from a glob (``spec.images``, ``**`` recurses); an image's path is
taken relative to the *image root*, the part of the glob before its first
wildcard (``data/val/**/*.jpg`` -> ``data/val``). Boxes come from a COCO
annotations file or a ``{"file_name": [[x, y, w, h], ...]}`` mapping
(``hqsam_edge.apps.boxes``), matched by that relative path or by base name.

Output, for an image ``sub/a.jpg``: ``OUT/sub/a.jpg.json``, a JSON list of COCO
result entries, one per box in the boxes file's order::

    {"image_id": 7, "file_name": "a.jpg", "category_id": 1,   # as the boxes file has them
     "segmentation": {"size": [h, w], "counts": "..."},   # COCO compressed RLE
     "score": 0.93,                                        # the predicted IoU
     "bbox": [x, y, w, h], "area": 1234,                   # of the mask, pixels
     "prompt_bbox": [x, y, w, h],                          # the box prompt
     "annotation_id": 42}                                  # when the COCO file gave one

(a mapping file has no ids: its images get 1, 2, ... in file order, category 1).
Boxes must lie inside their image, with 1 pixel of slack for rounding; the COCO
file's width/height are checked before any work, and against each image read.
An image with no boxes (none in the file, or not named there) is not read or
encoded: its file holds ``[]``. At the end ``OUT/results.json`` holds every
entry in image order (sorted relative paths), ready for ``COCO.loadRes``; a
run with work to do removes it first, so it exists only after a finished run.

Everything mode (``spec.everything``, the generator's options; no boxes file):
each image goes whole through ``SamAutomaticMaskGenerator`` (``everything_mode``),
one entry per mask found, with its ``stability_score``, ``point_coords`` and
``crop_box``; images get ids 1, 2, ... in image order, category 1.

Detector mode (``spec.detector``, an Ultralytics-layout ONNX detector, and ``spec.detector_options``; no
boxes file): the detector's boxes of each image prompt the model, one entry per box with the detector's class
as ``category_id``, its score as ``score`` and the mask's predicted IoU as ``mask_score``
(``detector_mode``); images get ids 1, 2, ... in image order. The detector's file (its sha256) and options
are part of the resume record, like the model.

Resume: a rerun skips every image whose file exists, parses and holds one entry
per box (any number of entries in everything and detector modes; the model, the
generator's options and the detector are recorded in ``OUT/.segment.json``, and a rerun with
others is refused); temporary files that a killed run left
(``.<name>.hqtmp-<owner>.<random>.part``, ``hqsam_edge.owners``) are removed
first, those of a run still going are not. Every file is written under a
temporary name in its folder and renamed, so none is ever half-written.

Bad images (``spec.on_error``): with ``"skip"`` (the default) an image that
cannot be read (stage ``read``: missing, truncated, not an image), or whose
boxes are wrong for it (stage ``boxes``: not 4 numbers, no area, outside the
image, or a size other than the boxes file gives), is noted, left out of its
per-image file and of ``results.json``, and listed in ``OUT/errors.json``
(``[{"file": "sub/a.jpg", "stage": "read", "error": "..."}]``, image order);
the rest of the set is segmented and the command exits with
``errors.SKIPPED_EXIT_CODE`` (3). A skipped image has no result file, so a
rerun (resume) tries it again; ``errors.json`` describes the last run only
(removed when a run starts, written when it finishes having skipped any).
With ``"stop"`` the first bad image ends the run after every image before it
has been written. Other errors (the model, a failed write, a full disk, an
interruption, a boxes file that is not valid) always stop the pipeline, all
stages at once, and reach the caller as they were raised; what was written
stays for a resume.
"""

from .box_mode import BoxMode, result_entries
from .detector_mode import DetectorMode, detector_entries
from .everything_mode import EverythingMode, everything_entries
from .merge import MergeSummary, merge_shards
from .plan import Job, Plan, SegmentSpec, find_images, make_plan
from .plan import RayOptions
from .results import (ERRORS_NAME, PER_IMAGE, RESULTS_NAME, RUN_NAME, ImageFailure, check_same_model,
                      output_path, read_result, remove_stale_temps, write_errors)
from .run import SegmentSummary, segment_images

__all__ = [
    "ERRORS_NAME", "PER_IMAGE", "RESULTS_NAME", "RUN_NAME", "BoxMode", "DetectorMode", "EverythingMode", "ImageFailure",
    "Job", "MergeSummary", "Plan", "RayOptions", "SegmentSpec", "SegmentSummary", "check_same_model",
    "detector_entries", "everything_entries", "find_images", "make_plan", "merge_shards", "output_path",
    "read_result", "remove_stale_temps", "result_entries", "segment_images", "write_errors",
]
