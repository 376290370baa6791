"""The tracker: HQ-SAM has no memory between frames, so each object's mask is carried forward as a prompt.

Per frame, in two steps around one decoder call:

1. ``plan``: every live track's next prompt is its last mask's box, moved by the track's velocity and grown by a
   margin (optionally with its last low-res logits as ``mask_input``); every detection of the frame (if any)
   is prompted too, so that all prompts of the frame go to the decoder at once.
2. ``update``: the masks come back. Tracks whose mask is the same object as another track's (an occluder
   taken for the occluded one) keep only the better-placed one. Detections are assigned to tracks by mask IoU
   (or box IoU) with an optimal assignment (``scipy.optimize.linear_sum_assignment``); a matched track takes
   the detection's mask, class and score. A track is supported on a frame by a matched detection, or, on
   frames without detections, by a mask of its own; after ``max_missed`` frames in a row without support it
   is lost. It coasts meanwhile: its box moves on at its velocity (an alpha-beta filter on the box centre).
   Unmatched confident detections start new tracks.

Why not supervision's ``ByteTrack``: it tracks boxes from a detector on every frame through a Kalman filter,
and keeps no mask; here the evidence of a track on most frames is the segmenter's answer to the track's own
carried prompt (no detector at all with first-frame prompts, or one every N frames), and a coasting track must
keep prompting where the object is expected. Its matching core is the same optimal assignment on IoU that
scipy gives, which is used here directly.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..apps.detections import Detections
from ..errors import UsageError
from ..inputs import require_choice

ASSOCIATIONS = ("mask", "box")


@dataclass(frozen=True)
class TrackerSpec:
    """``margin``: the carried box grows by this fraction of its size on each side; ``mask_input``: also give
    the last low-res logits (frames with detections then take two decoder calls: the Predictor sets
    ``has_mask_input`` for a whole call); ``association``: detections to tracks by ``"mask"`` or ``"box"`` IoU,
    matched from ``match_iou`` on; ``new_track_score``: an unmatched detection this confident starts a track;
    ``min_mask_score``: the decoder's IoU estimate a mask needs, and ``min_area`` its pixels, to count;
    ``max_missed``: frames without support before a track is lost; ``duplicate_iou``: two tracks' masks
    overlapping this much are one object; ``velocity_gain``: how fast the velocity follows the measured motion
    (0: boxes stay put while coasting)."""

    margin: float = 0.1
    mask_input: bool = False
    association: str = "mask"
    match_iou: float = 0.3
    new_track_score: float = 0.5
    min_mask_score: float = 0.0
    min_area: int = 16
    max_missed: int = 15
    duplicate_iou: float = 0.6
    velocity_gain: float = 0.5
    max_tracks: int = 256

    def __post_init__(self) -> None:
        require_choice(self.association, ASSOCIATIONS, "association")
        if self.margin < 0 or self.max_missed < 1 or self.max_tracks < 1 or self.min_area < 1:
            raise UsageError("the tracker's margin must be >= 0, and max_missed, max_tracks, min_area >= 1")
        if not (0 < self.match_iou <= 1 and 0 < self.duplicate_iou <= 1 and 0 <= self.velocity_gain <= 1):
            raise UsageError("the tracker's IoU thresholds lie in (0, 1] and its velocity gain in [0, 1]")


@dataclass
class Track:
    """A followed object's state (mutable, the tracker's own)."""

    track_id: int
    box: np.ndarray  # x0, y0, x1, y1: the last mask's box, or where it is expected while coasting
    category: int = 1
    score: float = 1.0
    velocity: np.ndarray = field(default_factory=lambda: np.zeros(2))
    logits: np.ndarray | None = None  # [1,256,256] low-res logits of its last mask
    missed: int = 0
    hits: int = 1

    def expected_box(self) -> np.ndarray:
        return self.box + np.tile(self.velocity, 2)


@dataclass(frozen=True)
class TrackedObject:
    """One object on one frame: its track id, class, score, box (x0, y0, x1, y1) and ``HxW`` mask."""

    track_id: int
    category: int
    score: float
    box: tuple[float, float, float, float]
    mask: np.ndarray = field(repr=False)


@dataclass(frozen=True)
class PromptPlan:
    """One frame's prompts: ``boxes`` ``[P,4]``, the first ``len(track_ids)`` rows the tracks' (``track_ids``),
    the rest the frame's ``detections`` in order; ``mask_input`` ``[T,1,256,256]`` for the track rows, or None."""

    boxes: np.ndarray
    track_ids: tuple[int, ...]
    detections: Detections | None
    mask_input: np.ndarray | None = None


def mask_box(mask: np.ndarray) -> np.ndarray | None:
    """The tight box (x0, y0, x1, y1, exclusive ends) of a mask's pixels; None when it is empty."""
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if not len(rows):
        return None
    return np.array([cols[0], rows[0], cols[-1] + 1, rows[-1] + 1], np.float64)


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of boxes ``[N,4]`` and ``[M,4]`` -> ``[N,M]``."""
    a, b = np.asarray(a, np.float64).reshape(-1, 4), np.asarray(b, np.float64).reshape(-1, 4)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=2)
    union = _area(a)[:, None] + _area(b)[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-9), 0.0)


def _area(boxes: np.ndarray) -> np.ndarray:
    return np.prod(np.clip(boxes[:, 2:] - boxes[:, :2], 0, None), axis=1)


def masks_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of masks ``[N,H,W]`` and ``[M,H,W]`` -> ``[N,M]`` (a matrix product of the flattened masks)."""
    fa = np.asarray(a, bool).reshape(len(a), -1).astype(np.float32)
    fb = np.asarray(b, bool).reshape(len(b), -1).astype(np.float32)
    inter = fa @ fb.T
    union = fa.sum(1)[:, None] + fb.sum(1)[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1), 0.0)


def assign(iou: np.ndarray, threshold: float) -> list[tuple[int, int]]:
    """Pairs (row, column) of the assignment that maximises the summed IoU, each pair at least ``threshold``."""
    if iou.size == 0:
        return []
    from scipy.optimize import linear_sum_assignment

    rows, cols = linear_sum_assignment(-iou)
    return [(int(r), int(c)) for r, c in zip(rows, cols) if iou[r, c] >= threshold]


class Tracker:
    """Tracks, ids and their update from one frame's masks (see the module's doc)."""

    def __init__(self, spec: TrackerSpec = TrackerSpec()) -> None:
        self.spec = spec
        self.tracks: list[Track] = []
        self.next_id = 1

    def new_track(self, box: np.ndarray, category: int = 1, score: float = 1.0,
                  logits: np.ndarray | None = None) -> Track | None:
        if len(self.tracks) >= self.spec.max_tracks:
            return None
        track = Track(self.next_id, np.asarray(box, np.float64), int(category), float(score), logits=logits)
        self.next_id += 1
        self.tracks.append(track)
        return track

    def prompt_box(self, track: Track, frame_size: tuple[int, int]) -> np.ndarray | None:
        """The track's next prompt: its expected box grown by the margin, clipped to the frame (None if it has
        left the frame)."""
        box = track.expected_box()
        grow = (box[2:] - box[:2]) * self.spec.margin
        h, w = frame_size
        out = np.concatenate([box[:2] - grow, box[2:] + grow]).clip(0, [w, h, w, h])
        return out if out[2] - out[0] >= 1 and out[3] - out[1] >= 1 else None

    def plan(self, frame_size: tuple[int, int], detections: Detections | None) -> PromptPlan:
        """This frame's prompts: the tracks' carried boxes, then the detections' boxes."""
        rows, ids, logits = [], [], []
        for track in self.tracks:
            box = self.prompt_box(track, frame_size)
            if box is not None:
                rows.append(box)
                ids.append(track.track_id)
                logits.append(track.logits if track.logits is not None else np.zeros((1, 256, 256), np.float32))
        if detections is not None:  # clipped to the frame; a box with nothing inside it is no prompt
            h, w = frame_size
            clipped = np.asarray(detections.boxes, np.float64).reshape(-1, 4).clip(0, [w, h, w, h])
            keep = (clipped[:, 2] - clipped[:, 0] >= 1) & (clipped[:, 3] - clipped[:, 1] >= 1)
            detections = Detections(clipped[keep].astype(np.float32), detections.scores[keep],
                                    detections.classes[keep])
        det_boxes = [] if detections is None else list(detections.boxes.astype(np.float64))
        boxes = np.asarray(rows + det_boxes, np.float64).reshape(-1, 4)
        mask_input = np.stack(logits).astype(np.float32) if self.spec.mask_input and logits else None
        return PromptPlan(boxes, tuple(ids), detections, mask_input)

    def _valid(self, mask: np.ndarray, score: float) -> bool:
        return score >= self.spec.min_mask_score and int(mask.sum()) >= self.spec.min_area

    def _drop_duplicates(self, tracks: list[Track], masks: list[np.ndarray | None]) -> None:
        """Of tracks whose masks overlap by ``duplicate_iou``, keep the mask of the one that expected it best."""
        live = [i for i, m in enumerate(masks) if m is not None]
        if len(live) < 2:
            return
        iou = masks_iou(np.stack([masks[i] for i in live]), np.stack([masks[i] for i in live]))
        for a in range(len(live)):
            for b in range(a + 1, len(live)):
                i, j = live[a], live[b]
                if masks[i] is None or masks[j] is None or iou[a, b] < self.spec.duplicate_iou:
                    continue
                box = mask_box(masks[i])
                fit = box_iou(np.stack([tracks[i].expected_box(), tracks[j].expected_box()]), box)[:, 0]
                masks[j if fit[0] >= fit[1] else i] = None

    def update(self, plan: PromptPlan, masks: np.ndarray, scores: np.ndarray,
               low_res: np.ndarray | None = None) -> list[TrackedObject]:
        """The frame's objects from the decoder's answer to ``plan`` (``masks`` ``[P,H,W]`` bool, ``scores``
        ``[P]``, ``low_res`` ``[P,1,256,256]`` or None); the tracks move on, are lost or start."""
        n = len(plan.track_ids)
        by_id = {t.track_id: t for t in self.tracks}
        tracks = [by_id[i] for i in plan.track_ids]
        own: list[np.ndarray | None] = [masks[r] if self._valid(masks[r], float(scores[r])) else None
                                        for r in range(n)]
        self._drop_duplicates(tracks, own)
        dets = plan.detections
        det_masks = masks[n:]
        chosen: dict[int, tuple[np.ndarray, int | None]] = {}  # track id -> (mask, its plan row) this frame
        matched_dets: set[int] = set()
        if dets is not None and len(dets):
            iou = self._association_iou(tracks, own, dets, det_masks)
            for r, c in assign(iou, self.spec.match_iou):
                matched_dets.add(c)
                track = tracks[r]
                valid = self._valid(det_masks[c], float(scores[n + c]))
                chosen[track.track_id] = (det_masks[c], n + c) if valid else (own[r], r) if own[r] is not None \
                    else (None, None)  # type: ignore[assignment]
                track.category, track.score = int(dets.classes[c]), float(dets.scores[c])
                track.missed = -1  # supported: reset below
        for r, track in enumerate(tracks):
            if track.track_id not in chosen and own[r] is not None:
                chosen[track.track_id] = (own[r], r)
                if dets is None:
                    track.missed = -1
        return self._advance(chosen, plan, scores, low_res, masks, matched_dets)

    def _association_iou(self, tracks: list[Track], own: list[np.ndarray | None], dets: Detections,
                         det_masks: np.ndarray) -> np.ndarray:
        """IoU of each track (row) with each detection (column): by mask where the track has one this frame and
        association is ``"mask"``, else by box (its mask's box, or its expected box while coasting)."""
        boxes = np.stack([mask_box(m) if m is not None else t.expected_box() for t, m in zip(tracks, own)]) \
            if tracks else np.zeros((0, 4))
        iou = box_iou(boxes, dets.boxes)
        if self.spec.association == "mask":
            have = [i for i, m in enumerate(own) if m is not None]
            if have:
                iou[have] = masks_iou(np.stack([own[i] for i in have]), det_masks)  # type: ignore[misc]
        return iou

    def _advance(self, chosen: dict, plan: PromptPlan, scores: np.ndarray, low_res: np.ndarray | None,
                 masks: np.ndarray, matched_dets: set[int]) -> list[TrackedObject]:
        """Move every track on (measured or coasting), drop the lost, start new tracks; the frame's objects."""
        gain = self.spec.velocity_gain
        objects: list[TrackedObject] = []
        for track in list(self.tracks):
            mask, row = chosen.get(track.track_id, (None, None))
            expected = track.expected_box()
            if mask is not None:
                box = mask_box(mask)
                residual = (box[:2] + box[2:]) / 2 - (expected[:2] + expected[2:]) / 2
                track.velocity = track.velocity + gain * residual
                track.box, track.hits = box, track.hits + 1
                if low_res is not None:
                    track.logits = np.asarray(low_res[row], np.float32)
                objects.append(TrackedObject(track.track_id, track.category, track.score,
                                             tuple(float(v) for v in box), mask))  # type: ignore[arg-type]
            else:
                track.box = expected
            track.missed += 1
            if track.missed >= self.spec.max_missed:
                self.tracks.remove(track)
        n = len(plan.track_ids)
        dets = plan.detections
        if dets is not None:
            taken = [o.mask for o in objects]
            for c in range(len(dets)):
                mask = masks[n + c]
                if c in matched_dets or dets.scores[c] < self.spec.new_track_score \
                        or not self._valid(mask, float(scores[n + c])):
                    continue
                if taken and masks_iou(mask[None], np.stack(taken)).max() >= self.spec.duplicate_iou:
                    continue
                track = self.new_track(mask_box(mask), int(dets.classes[c]), float(dets.scores[c]),
                                       None if low_res is None else np.asarray(low_res[n + c], np.float32))
                if track is not None:
                    track.missed = 0
                    taken.append(mask)
                    objects.append(TrackedObject(track.track_id, track.category, track.score,
                                                 tuple(float(v) for v in track.box), mask))  # type: ignore[arg-type]
        return sorted(objects, key=lambda o: o.track_id)

    def start(self, masks: np.ndarray, scores: np.ndarray, low_res: np.ndarray | None = None,
              category: int = 1) -> list[TrackedObject]:
        """New tracks from the masks of first-frame prompts (``[P,H,W]``); an empty mask starts none."""
        objects = []
        for k, mask in enumerate(masks):
            box = mask_box(mask)
            if box is None:
                continue
            track = self.new_track(box, category, float(scores[k]),
                                   None if low_res is None else np.asarray(low_res[k], np.float32))
            if track is not None:
                track.missed = 0
                objects.append(TrackedObject(track.track_id, category, float(scores[k]),
                                             tuple(float(v) for v in box), mask))  # type: ignore[arg-type]
        return objects
