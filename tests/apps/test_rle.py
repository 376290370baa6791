"""COCO RLE against pycocotools (the oracle)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from pycocotools import mask as coco_mask

from hqsam_edge.apps import rle
from hqsam_edge.errors import DataError, UsageError


def _edge_masks():
    rng = np.random.default_rng(0)
    for h, w in [(1, 1), (1, 7), (9, 1), (7, 3), (13, 17), (120, 160), (333, 251)]:
        yield f"empty {h}x{w}", np.zeros((h, w), bool)
        yield f"full {h}x{w}", np.ones((h, w), bool)
        for y, x in {(0, 0), (h - 1, w - 1), (h // 2, w // 2), (0, w - 1), (h - 1, 0)}:
            m = np.zeros((h, w), bool)
            m[y, x] = True
            yield f"pixel {y},{x} of {h}x{w}", m
            yield f"all but {y},{x} of {h}x{w}", ~m
        for p in (0.5, 0.03, 0.97):
            yield f"random {p} {h}x{w}", rng.random((h, w)) < p
        m = np.zeros((h, w), bool)
        m[h // 4: 3 * h // 4 + 1, w // 3: 2 * w // 3 + 1] = True
        yield f"rectangle {h}x{w}", m
        yield f"rows {h}x{w}", np.broadcast_to((np.arange(h) % 3 == 0)[:, None], (h, w))
    big = np.zeros((1500, 2000), bool)  # long runs: multi-character numbers and large negative deltas
    big[:, 700:1900] = True
    big[3, 5] = big[1499, 0] = True
    yield "big", big


@pytest.mark.parametrize("name,mask", list(_edge_masks()), ids=lambda v: v if isinstance(v, str) else "")
def test_rle_matches_pycocotools(name, mask):
    ref = coco_mask.encode(np.asfortranarray(mask.astype(np.uint8)))
    ours = rle.rle_encode(mask)
    assert ours == {"size": [int(s) for s in ref["size"]], "counts": ref["counts"].decode("ascii")}
    assert isinstance(ours["counts"], str)
    np.testing.assert_array_equal(rle.rle_decode(ours), mask)
    np.testing.assert_array_equal(rle.rle_decode(ref), mask)  # bytes counts too
    assert rle.rle_area(ours) == int(coco_mask.area(ref))
    assert rle.rle_bbox(ours) == [float(v) for v in coco_mask.toBbox(ref)]
    json.dumps(ours)  # serialisable as is


def test_rle_decodes_uncompressed_counts():
    mask = np.zeros((5, 4), bool)
    mask[1:3, 1] = mask[4, 3] = True
    crowd = {"size": [5, 4], "counts": [6, 2, 11, 1]}  # COCO's iscrowd ground-truth form
    np.testing.assert_array_equal(rle.rle_decode(crowd), mask)
    ref = coco_mask.frPyObjects(crowd, 5, 4)
    assert rle.rle_encode(mask)["counts"] == ref["counts"].decode()
    assert rle.rle_area(crowd) == 3 and rle.rle_bbox(crowd) == [1.0, 1.0, 3.0, 4.0]


def test_rle_rejects_bad_input():
    with pytest.raises(UsageError, match="one HxW mask"):
        rle.rle_encode(np.zeros((2, 3, 4), bool))
    with pytest.raises(DataError, match="not h\\*w"):
        rle.rle_decode({"size": [4, 4], "counts": [3, 2]})
    with pytest.raises(DataError, match="ends in the middle"):
        rle.rle_decode({"size": [4, 4], "counts": "0P"})  # 'P' = 32 + 0: "more follows"
    with pytest.raises(DataError, match="size"):
        rle.rle_decode({"counts": "4"})
