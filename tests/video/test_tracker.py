"""The tracker: optimal assignment, ids kept, lost after K frames, new ids for confident detections; and its
quality on synthetic videos (motmetrics, TrackEval)."""

from __future__ import annotations

import numpy as np
import pytest

from hqsam_edge.errors import UsageError
from hqsam_edge.video.prompts import Detections
from hqsam_edge.video.synthetic import crossing_scene
from hqsam_edge.video.tracker import Tracker, TrackerSpec, assign, box_iou

from .quality import SyntheticDetections, first_frame_boxes, mot_scores, run

pytest.importorskip("scipy")


def square(x0: int, y0: int, size: int = 10, shape=(40, 60)) -> np.ndarray:
    mask = np.zeros(shape, bool)
    mask[y0:y0 + size, x0:x0 + size] = True
    return mask


def test_the_assignment_is_optimal_not_greedy():
    iou = np.array([[0.9, 0.8], [0.85, 0.1]])  # greedy takes (0,0) then leaves row 1 a 0.1 match
    assert sorted(assign(iou, 0.3)) == [(0, 1), (1, 0)]
    assert assign(np.array([[0.2]]), 0.3) == []
    np.testing.assert_allclose(box_iou(np.array([[0, 0, 10, 10]]), np.array([[5, 0, 15, 10], [20, 20, 30, 30]])),
                               [[1 / 3, 0]])


def test_a_track_is_lost_after_k_frames_without_support():
    tracker = Tracker(TrackerSpec(max_missed=3, velocity_gain=0.0))
    tracker.start(square(5, 5)[None], np.array([0.9]))
    empty = np.zeros((1, 40, 60), bool)
    for _ in range(3):
        plan = tracker.plan((40, 60), None)
        assert plan.track_ids == (1,)
        np.testing.assert_allclose(plan.boxes[0], [4, 4, 16, 16])  # the last box, 10% margin, kept while coasting
        assert tracker.update(plan, empty, np.array([0.05])) == []
    assert tracker.tracks == []


def test_detections_support_tracks_and_unmatched_confident_ones_start_new_ids():
    tracker = Tracker(TrackerSpec(new_track_score=0.5))
    tracker.start(square(5, 5)[None], np.array([0.9]))
    dets = Detections(np.array([[6, 5, 16, 15], [40, 20, 50, 30], [30, 2, 40, 12]], np.float32),
                      np.array([0.8, 0.9, 0.3], np.float32), np.array([2, 3, 3]))
    plan = tracker.plan((40, 60), dets)
    assert len(plan.boxes) == 4 and plan.track_ids == (1,)  # one decoder call: the track's row, then 3 detections
    masks = np.stack([square(6, 5), square(6, 5), square(40, 20), square(30, 2)])
    objects = tracker.update(plan, masks, np.full(4, 0.9))
    assert [(o.track_id, o.category) for o in objects] == [(1, 2), (2, 3)]  # the weak detection starts nothing
    assert objects[0].box == (6.0, 5.0, 16.0, 15.0)


def test_two_tracks_on_one_object_keep_one_mask():
    tracker = Tracker(TrackerSpec(velocity_gain=0.0))
    tracker.start(np.stack([square(5, 5), square(30, 5)]), np.array([0.9, 0.9]))
    plan = tracker.plan((40, 60), None)
    objects = tracker.update(plan, np.stack([square(5, 5), square(6, 5)]), np.array([0.9, 0.9]))
    assert [o.track_id for o in objects] == [1]  # the occluder taken for track 2: track 2 coasts instead
    assert tracker.tracks[1].missed == 1


def test_bad_tracker_options_are_refused():
    with pytest.raises(UsageError, match="unknown association 'centre'"):
        TrackerSpec(association="centre")
    with pytest.raises(UsageError):
        TrackerSpec(max_missed=0)


# The bars. The scene (80 frames, 160x128): two shapes cross head-on, one passing in front of the other, and a
# small shape passes wholly behind a large one for 17 frames, longer than max_missed (15), so that no tracker
# without re-identification can keep its id. The stand-in segmenter grows or shrinks a third of its masks by a
# pixel. Measured over seeds 0-2: first-frame boxes only, IDF1 0.92-0.93, no switch, HOTA 0.84-0.85 (the hidden
# shape is lost for good after its occlusion); with detections every 5 frames, IDF1 0.92, one switch (the
# shape that was hidden comes back as a new id), MOTA 0.98, HOTA 0.87. The bars sit a little under these, so
# that a tracker that swaps the crossing shapes (2 switches more, IDF1 ~0.6) or loses them fails.
@pytest.mark.parametrize("seed", [1])  # one seed keeps the test to seconds; 0-2 all pass
def test_tracking_quality_on_a_synthetic_video(seed):
    pytest.importorskip("motmetrics")
    video = crossing_scene(80, seed=seed)
    alone = mot_scores(video, run(video, first_frame_boxes(video), seed=seed))
    assert alone["num_switches"] == 0 and alone["idf1"] >= 0.88
    helped = mot_scores(video, run(video, SyntheticDetections(video, every=5), seed=seed))
    assert helped["num_switches"] <= 1 and helped["idf1"] >= 0.88 and helped["mota"] >= 0.95
    if not np.isnan(helped["hota"]):  # TrackEval is in the dev extra; NaN where it is missing
        assert helped["hota"] >= 0.8 and alone["hota"] >= 0.8


def test_the_quality_measure_sees_a_swap():
    """Negative control: the same run with the two crossing shapes' ids swapped half way scores far worse."""
    pytest.importorskip("motmetrics")
    import dataclasses

    video = crossing_scene(80)
    results = run(video, first_frame_boxes(video))
    swap = {1: 2, 2: 1}
    swapped = [r if r.frame.index < 40 else dataclasses.replace(r, objects=tuple(
        dataclasses.replace(o, track_id=swap.get(o.track_id, o.track_id)) for o in r.objects)) for r in results]
    good, bad = mot_scores(video, results), mot_scores(video, swapped)
    assert bad["num_switches"] >= 2 and bad["idf1"] < good["idf1"] - 0.2


def test_detections_outside_the_frame_are_clipped_or_dropped_and_logits_ride_along():
    tracker = Tracker(TrackerSpec(mask_input=True))
    tracker.start(square(5, 5)[None], np.array([0.9]), low_res=np.full((1, 1, 256, 256), 3.0, np.float32))
    dets = Detections(np.array([[-20, -20, -5, -5], [50, 30, 80, 50]], np.float32), np.array([0.9, 0.9], np.float32),
                      np.array([1, 1]))
    plan = tracker.plan((40, 60), dets)
    assert len(plan.detections) == 1
    np.testing.assert_allclose(plan.boxes[1], [50, 30, 60, 40])
    assert plan.mask_input.shape == (1, 1, 256, 256) and plan.mask_input.max() == 3.0  # the track's last logits
