"""The YouTube-VIS evaluator: a hand-worked case, pycocotools' COCOeval on one-frame videos, and a small synthetic
set in HQ-YTVIS's layout tracked end to end."""

from __future__ import annotations

import json

import numpy as np
import pytest

from hqsam_edge.apps.rle import rle_encode
from hqsam_edge.video.ytvis_eval import evaluate_files, evaluate_vis, tube_iou


def square(x: int, y: int, size: int = 4, shape=(10, 10)) -> np.ndarray:
    m = np.zeros(shape, bool)
    m[y:y + size, x:x + size] = True
    return m


def rles(*masks):
    return [None if m is None else rle_encode(m) for m in masks]


def test_a_hand_worked_case():
    """One 10x10 video of 2 frames, one true track: a 4x4 square at (0,0), then at (2,2).

    d1 (score 0.9) is exact on frame 0 and absent on frame 1: mask IoU 16 / (16 + 16) = 0.5.
    d2 (score 0.8) is exact on frame 0 and shifted by (1,1) on frame 1: (16 + 9) / (16 + 23) = 0.641.
    Boundaries (d = 1 px on a 10x10 image: a 4x4 square's 12-pixel ring): d1 12 / (12 + 12) = 0.5; d2 frame 1's
    rings share 2 pixels of a 22-pixel union: (12 + 2) / (12 + 22) = 0.412.
    Mask AP: at 0.50, d1 (first by score) matches, d2 is a false positive after it: AP 1; at 0.55 and 0.60 only
    d2 matches, after the false d1: precision 1/2 at all recalls, AP 0.5; from 0.65 on nothing: 0.
    So AP = (1 + 0.5 + 0.5) / 10 = 0.2, AP50 = 1, AP75 = 0. Boundary AP: 1 at 0.50 (d1), 0 above: 0.1."""
    gt = {"videos": [{"id": 1, "height": 10, "width": 10, "length": 2}],
          "annotations": [{"id": 1, "video_id": 1, "category_id": 1, "iscrowd": 0,
                           "segmentations": rles(square(0, 0), square(2, 2))}],
          "categories": [{"id": 1, "name": "thing"}]}
    d1 = {"video_id": 1, "category_id": 1, "score": 0.9, "segmentations": rles(square(0, 0), None)}
    d2 = {"video_id": 1, "category_id": 1, "score": 0.8, "segmentations": rles(square(0, 0), square(3, 3))}
    assert tube_iou([square(0, 0), square(2, 2)], [square(0, 0), square(3, 3)]) == pytest.approx(25 / 39)
    got = evaluate_vis(gt, [d1, d2])
    assert (got.ap, got.ap50, got.ap75) == pytest.approx((0.2, 1.0, 0.0))
    assert (got.boundary_ap, got.boundary_ap50, got.boundary_ap75) == pytest.approx((0.1, 1.0, 0.0))
    perfect = evaluate_vis(gt, [dict(d2, segmentations=gt["annotations"][0]["segmentations"])])
    assert perfect.ap == perfect.boundary_ap == 1.0
    assert evaluate_vis(gt, []).ap == 0.0


def test_one_frame_videos_score_as_cocoeval_scores_images():
    """With one frame per video, tube IoU is mask IoU and the AP is COCO's segm AP (pycocotools, the oracle)."""
    pytest.importorskip("pycocotools")
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    rng = np.random.default_rng(3)
    videos, anns, dets = [], [], []
    for vid in range(1, 5):
        videos.append({"id": vid, "height": 32, "width": 32, "length": 1})
        for _ in range(3):
            x, y, cat = int(rng.integers(0, 20)), int(rng.integers(0, 20)), int(rng.integers(1, 3))
            anns.append({"id": len(anns) + 1, "video_id": vid, "category_id": cat, "iscrowd": 0,
                         "segmentations": rles(square(x, y, 10, (32, 32)))})
            for _ in range(2):
                dx, dy = rng.integers(-3, 4, 2)
                dets.append({"video_id": vid, "category_id": cat, "score": float(rng.random()),
                             "segmentations": rles(square(max(x + dx, 0), max(y + dy, 0), 10, (32, 32)))})
    ours = evaluate_vis({"videos": videos, "annotations": anns}, dets)
    coco = COCO()
    coco.dataset = {"images": [{"id": v["id"], "height": 32, "width": 32} for v in videos],
                    "annotations": [{"id": a["id"], "image_id": a["video_id"], "category_id": a["category_id"],
                                     "iscrowd": 0, "segmentation": a["segmentations"][0], "area": 100.0,
                                     "bbox": [0, 0, 10, 10]} for a in anns],
                    "categories": [{"id": 1}, {"id": 2}]}
    coco.createIndex()
    found = coco.loadRes([{"image_id": d["video_id"], "category_id": d["category_id"], "score": d["score"],
                           "segmentation": d["segmentations"][0]} for d in dets])
    check = COCOeval(coco, found, "segm")
    check.evaluate()
    check.accumulate()
    check.summarize()
    assert (ours.ap, ours.ap50, ours.ap75) == pytest.approx(tuple(check.stats[:3]), abs=1e-9)
    assert 0.1 < ours.ap < 0.95  # a case with something to get wrong


def test_a_synthetic_hq_ytvis_set_tracked_end_to_end(tmp_path):
    """Two synthetic videos written in HQ-YTVIS's layout, tracked from their first frames' true boxes with the
    stand-in segmenter (through the image-sequence source), scored by the evaluator."""
    pytest.importorskip("scipy")
    from hqsam_edge.video import FirstFramePrompts, OutputSpec, TrackSpec, track
    from hqsam_edge.video.synthetic import StandInSegmenter, crossing_scene, write_hq_ytvis
    from hqsam_edge.video.tracker import mask_box

    videos = [crossing_scene(24, seed=0), crossing_scene(24, seed=5)]
    gt_path = write_hq_ytvis(tmp_path / "hq_ytvis", videos)
    gt = json.loads(gt_path.read_text())
    assert (tmp_path / "hq_ytvis" / "JPEGImages" / "synthetic_001" / "00023.jpg").is_file()
    assert gt_path.name == "ytvis_hq-test.json" and len(gt["annotations"]) == 8
    perfect = evaluate_vis(gt, [dict(a, score=1.0) for a in gt["annotations"]])
    assert perfect.ap == perfect.boundary_ap == 1.0
    results = []
    for vid, video in enumerate(videos, 1):
        boxes = tuple(tuple(float(v) for v in mask_box(m)) for m in video.render(0)[1].values())
        out = tmp_path / f"out{vid}"
        track(StandInSegmenter(noise=0.5, seed=vid), tmp_path / "hq_ytvis" / "JPEGImages" / f"synthetic_{vid:03d}",
              FirstFramePrompts(boxes=boxes), out, TrackSpec(output=OutputSpec(video=False)))
        results += [dict(r, video_id=vid) for r in json.loads((out / "results.json").read_text())]
    (tmp_path / "results.json").write_text(json.dumps(results))
    got = evaluate_files(gt_path, tmp_path / "results.json")
    assert got.ap50 == 1.0 and got.ap > 0.6  # every shape followed; the noisy masks miss the strictest IoUs
    assert got.boundary_ap < got.ap  # a pixel grown or shrunk costs boundaries more than areas
