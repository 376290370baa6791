"""COCO RLE against pycocotools (the oracle), and reading box files."""

from __future__ import annotations

import json

import numpy as np
import pytest
from pycocotools import mask as coco_mask

from hqsam_edge.data import coco
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
    ours = coco.rle_encode(mask)
    assert ours == {"size": [int(s) for s in ref["size"]], "counts": ref["counts"].decode("ascii")}
    assert isinstance(ours["counts"], str)
    np.testing.assert_array_equal(coco.rle_decode(ours), mask)
    np.testing.assert_array_equal(coco.rle_decode(ref), mask)  # bytes counts too
    assert coco.rle_area(ours) == int(coco_mask.area(ref))
    assert coco.rle_bbox(ours) == [float(v) for v in coco_mask.toBbox(ref)]
    json.dumps(ours)  # serialisable as is


def test_rle_decodes_uncompressed_counts():
    mask = np.zeros((5, 4), bool)
    mask[1:3, 1] = mask[4, 3] = True
    rle = {"size": [5, 4], "counts": [6, 2, 11, 1]}  # COCO's iscrowd ground-truth form
    np.testing.assert_array_equal(coco.rle_decode(rle), mask)
    ref = coco_mask.frPyObjects(rle, 5, 4)
    assert coco.rle_encode(mask)["counts"] == ref["counts"].decode()
    assert coco.rle_area(rle) == 3 and coco.rle_bbox(rle) == [1.0, 1.0, 3.0, 4.0]


def test_rle_rejects_bad_input():
    with pytest.raises(UsageError, match="one HxW mask"):
        coco.rle_encode(np.zeros((2, 3, 4), bool))
    with pytest.raises(DataError, match="not h\\*w"):
        coco.rle_decode({"size": [4, 4], "counts": [3, 2]})
    with pytest.raises(DataError, match="ends in the middle"):
        coco.rle_decode({"size": [4, 4], "counts": "0P"})  # 'P' = 32 + 0: "more follows"
    with pytest.raises(DataError, match="size"):
        coco.rle_decode({"counts": "4"})


# -- box files --------------------------------------------------------------------

COCO_FILE = {
    "images": [
        {"id": 10, "file_name": "a.jpg", "width": 160, "height": 120},
        {"id": 11, "file_name": "sub/b.png", "width": 160, "height": 120},
        {"id": 12, "file_name": "c.jpg", "width": 80, "height": 60},  # no annotations
    ],
    "annotations": [
        {"id": 1, "image_id": 10, "bbox": [10, 20, 30, 40], "category_id": 3},
        {"id": 2, "image_id": 11, "bbox": [0.5, 1.5, 100, 50.25], "category_id": 1},
        {"id": 3, "image_id": 10, "bbox": [0, 0, 160, 120], "category_id": 7},
    ],
    "categories": [{"id": 1, "name": "x"}],
}


def write(tmp_path, data, name="boxes.json"):
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return path


def test_read_coco_file(tmp_path):
    boxes = coco.read_boxes_file(write(tmp_path, COCO_FILE))
    assert boxes.kind == "coco"
    a, b, c = boxes.images
    assert (a.file_name, a.image_id, a.width, a.height) == ("a.jpg", 10, 160, 120)
    assert [(p.bbox, p.category_id, p.annotation_id) for p in a.boxes] == [
        ((10.0, 20.0, 30.0, 40.0), 3, 1), ((0.0, 0.0, 160.0, 120.0), 7, 3)]
    assert a.boxes[0].xyxy == (10.0, 20.0, 40.0, 60.0)
    assert b.boxes[0].bbox == (0.5, 1.5, 100.0, 50.25) and c.boxes == ()


def test_read_mapping_file(tmp_path):
    boxes = coco.read_boxes_file(write(tmp_path, {"x/a.png": [[1, 2, 3, 4], [5, 6, 7, 8]], "b.png": []}))
    assert boxes.kind == "mapping"
    a, b = boxes.images
    assert (a.file_name, a.image_id, b.image_id) == ("x/a.png", 1, 2)
    assert [p.bbox for p in a.boxes] == [(1, 2, 3, 4), (5, 6, 7, 8)]
    assert all(p.category_id == 1 and p.annotation_id is None for p in a.boxes) and b.boxes == ()


def _bad_coco(**changes):
    data = json.loads(json.dumps(COCO_FILE))
    for path, value in changes.items():
        kind, i, key = path.split(".")
        data[kind][int(i)][key] = value
    return data


@pytest.mark.parametrize("data,fragments", [
    ("{not json", ["not valid JSON", "line 1"]),
    ([1, 2], ["expected a COCO annotations file", "a JSON list"]),
    ({"a.png": [[1, 2, 3]]}, ["entry 'a.png' box 0", "4 finite numbers"]),
    ({"a.png": [[1, 2, 0, 4]]}, ["entry 'a.png' box 0", "w and h must be > 0"]),
    ({"a.png": [[1, 2, True, 4]]}, ["entry 'a.png' box 0"]),
    ('{"a.png": [[1, 2, NaN, 4]]}', ["entry 'a.png' box 0", "finite"]),
    ({"a.png": [1, 2, 3, 4]}, ["entry 'a.png' box 0"]),
    ({"a.png": {"bbox": [1, 2, 3, 4]}}, ["entry 'a.png'", "list of boxes"]),
    ('{"a.png": [], "a.png": [[1, 2, 3, 4]]}', ["'a.png' appears twice"]),
    (_bad_coco(**{"annotations.1.bbox": [1, 2, -3, 4]}), ["annotations[1] (id 2)", "w and h must be > 0"]),
    (_bad_coco(**{"annotations.2.image_id": 99}), ["annotations[2] (id 3)", "image_id 99 is not in 'images'"]),
    (_bad_coco(**{"annotations.0.image_id": "10"}), ["annotations[0] (id 1)", "'image_id' must be an integer"]),
    (_bad_coco(**{"images.1.file_name": "a.jpg"}), ["images[1]", "'a.jpg' is listed twice"]),
    (_bad_coco(**{"images.2.id": 10}), ["images[2]", "image id 10 is used twice"]),
    ({"images": [], "annotations": {}}, ["lists 'images' and 'annotations'"]),
])
def test_bad_box_files(tmp_path, data, fragments):
    path = write(tmp_path, data)
    with pytest.raises(DataError) as info:
        coco.read_boxes_file(path)
    message = str(info.value)
    assert message.startswith(str(path)) and "\n" not in message
    for fragment in fragments:
        assert fragment in message, message


def test_missing_box_file(tmp_path):
    with pytest.raises(UsageError, match="boxes file not found"):
        coco.read_boxes_file(tmp_path / "none.json")


def test_match_images_by_path_then_base_name(tmp_path):
    boxes = coco.read_boxes_file(write(tmp_path, {"a.png": [[0, 0, 5, 5]], "./sub\\b.png": [], "other/c.png": [],
                                                  "gone.png": []}))
    matched = coco.match_images(boxes, ["a.png", "sub/b.png", "c.png", "d.png"])
    assert {rel: e.file_name for rel, e in matched.items()} == {
        "a.png": "a.png", "sub/b.png": "./sub\\b.png", "c.png": "other/c.png"}  # gone.png: not selected, left out


def test_match_images_errors(tmp_path):
    ambiguous = coco.read_boxes_file(write(tmp_path, {"a.png": []}))
    with pytest.raises(DataError, match="'a.png' is ambiguous: it matches x/a.png, y/a.png; give paths relative"):
        coco.match_images(ambiguous, ["x/a.png", "y/a.png"])
    assert list(coco.match_images(ambiguous, ["a.png", "y/a.png"])) == ["a.png"]  # the exact path wins
    twice = coco.read_boxes_file(write(tmp_path, {"a.png": [], "x/a.png": []}))
    with pytest.raises(DataError, match="'a.png' and 'x/a.png' both name image x/a.png"):
        coco.match_images(twice, ["x/a.png"])
    with pytest.raises(DataError, match="none of its 1 file names matches any of the 2 images"):
        coco.match_images(ambiguous, ["b.png", "c.png"])


def test_boxes_inside_image(tmp_path):
    entry = coco.read_boxes_file(write(tmp_path, {"a.png": [[0, 0, 160, 120], [-0.5, 10, 161, 5]]})).images[0]
    coco.check_boxes_inside(entry, 160, 120, "boxes.json", "a.png")  # within 1 px of slack
    with pytest.raises(DataError, match="entry 'a.png' box 0: .* reaches outside the 100x120 image a.png"):
        coco.check_boxes_inside(entry, 100, 120, "boxes.json", "a.png")
