"""Tracking quality on synthetic videos: IDF1 and ID switches (motmetrics), HOTA (TrackEval), by mask IoU."""

from __future__ import annotations

import numpy as np

from hqsam_edge.video.mode import FrameResult, TrackMode, run_plain
from hqsam_edge.video.prompts import Detections, FirstFramePrompts
from hqsam_edge.video.synthetic import StandInSegmenter, SyntheticVideo
from hqsam_edge.video.tracker import TrackerSpec, mask_box, masks_iou

MIN_VISIBLE = 20  # px: a ground-truth object counts on a frame where this much of it shows


class SyntheticDetections:
    """The video's true boxes (jittered, some missed) every ``every`` frames, as a detector would give them."""

    def __init__(self, video: SyntheticVideo, every: int, miss: float = 0.1, jitter: float = 1.0) -> None:
        self.video, self.every, self.miss, self.jitter = video, every, miss, jitter

    def detections(self, frame) -> Detections | None:
        if frame.index % self.every:
            return None
        return self.video.detections(frame.index, min_area=MIN_VISIBLE, miss=self.miss, jitter=self.jitter)


def run(video: SyntheticVideo, prompts, spec: TrackerSpec = TrackerSpec(), seed: int = 0) -> list[FrameResult]:
    results: list[FrameResult] = []
    mode = TrackMode(StandInSegmenter(noise=0.3, seed=seed), prompts, None, tracker=spec)
    run_plain(mode, video.iter_frames(), results=results)
    return results


def first_frame_boxes(video: SyntheticVideo) -> FirstFramePrompts:
    visible = video.render(0)[1]
    return FirstFramePrompts(boxes=tuple(tuple(float(v) for v in mask_box(m)) for m in visible.values()))


def per_frame(video: SyntheticVideo, results: list[FrameResult]):
    """(gt ids, tracker ids, mask IoU [gt, trk]) per frame."""
    for t, result in enumerate(results):
        truth = {k: m for k, m in video.render(t)[1].items() if m.sum() >= MIN_VISIBLE}
        gt_ids, trk_ids = list(truth), [o.track_id for o in result.objects]
        if gt_ids and trk_ids:
            iou = masks_iou(np.stack(list(truth.values())), np.stack([o.mask for o in result.objects]))
        else:
            iou = np.zeros((len(gt_ids), len(trk_ids)))
        yield gt_ids, trk_ids, iou


def mot_scores(video: SyntheticVideo, results: list[FrameResult]) -> dict[str, float]:
    """IDF1, ID switches and MOTA (motmetrics; a pair matches from mask IoU 0.5), and HOTA (TrackEval, when
    installed; NaN otherwise)."""
    import motmetrics as mm

    acc = mm.MOTAccumulator(auto_id=True)
    frames = list(per_frame(video, results))
    for gt_ids, trk_ids, iou in frames:
        acc.update(gt_ids, trk_ids, np.where(iou >= 0.5, 1 - iou, np.nan))
    summary = mm.metrics.create().compute(acc, metrics=["idf1", "num_switches", "mota"], name="synthetic")
    out = {k: float(summary[k].iloc[0]) for k in ("idf1", "num_switches", "mota")}
    out["hota"] = hota(frames)
    return out


def hota(frames) -> float:
    try:
        from trackeval.metrics import HOTA
    except ImportError:
        return float("nan")
    gt_all = sorted({g for f in frames for g in f[0]})
    trk_all = sorted({t for f in frames for t in f[1]})
    gmap, tmap = {g: i for i, g in enumerate(gt_all)}, {t: i for i, t in enumerate(trk_all)}
    data = {
        "num_gt_ids": len(gt_all), "num_tracker_ids": len(trk_all),
        "num_gt_dets": sum(len(f[0]) for f in frames), "num_tracker_dets": sum(len(f[1]) for f in frames),
        "gt_ids": [np.array([gmap[g] for g in f[0]], int) for f in frames],
        "tracker_ids": [np.array([tmap[t] for t in f[1]], int) for f in frames],
        "similarity_scores": [f[2] for f in frames],
    }
    return float(np.mean(HOTA().eval_sequence(data)["HOTA"]))
