"""Reading box files (COCO annotations or a file-name mapping) and matching them to images."""

from __future__ import annotations

import json

import pytest

from hqsam_edge.apps import boxes as box_files
from hqsam_edge.errors import DataError, UsageError

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
    boxes = box_files.read_boxes_file(write(tmp_path, COCO_FILE))
    assert boxes.kind == "coco"
    a, b, c = boxes.images
    assert (a.file_name, a.image_id, a.width, a.height) == ("a.jpg", 10, 160, 120)
    assert [(p.bbox, p.category_id, p.annotation_id) for p in a.boxes] == [
        ((10.0, 20.0, 30.0, 40.0), 3, 1), ((0.0, 0.0, 160.0, 120.0), 7, 3)]
    assert a.boxes[0].xyxy == (10.0, 20.0, 40.0, 60.0)
    assert b.boxes[0].bbox == (0.5, 1.5, 100.0, 50.25) and c.boxes == ()


def test_read_mapping_file(tmp_path):
    boxes = box_files.read_boxes_file(write(tmp_path, {"x/a.png": [[1, 2, 3, 4], [5, 6, 7, 8]], "b.png": []}))
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
        box_files.read_boxes_file(path)
    message = str(info.value)
    assert message.startswith(str(path)) and "\n" not in message
    for fragment in fragments:
        assert fragment in message, message


def test_keep_bad_boxes_marks_only_their_image(tmp_path):
    """``keep_bad_boxes``: a bad box is its image's ``problem`` (the first one); what is wrong with the file
    still raises."""
    mapping = write(tmp_path, {"a.png": [[1, 2, 3, 4], [1, 2, 0, 4], [1, 2, 3]], "b.png": [[5, 6, 7, 8]]})
    a, b = box_files.read_boxes_file(mapping, keep_bad_boxes=True).images
    assert "entry 'a.png' box 1" in a.problem and "w and h must be > 0" in a.problem
    assert [p.bbox for p in a.boxes] == [(1, 2, 3, 4)] and b.problem is None and len(b.boxes) == 1
    coco = write(tmp_path, _bad_coco(**{"annotations.1.bbox": [1, 2, -3, 4]}), "coco.json")
    a, b, c = box_files.read_boxes_file(coco, keep_bad_boxes=True).images
    assert a.problem is None and len(a.boxes) == 2 and "annotations[1] (id 2)" in b.problem and b.boxes == ()
    with pytest.raises(DataError, match="image_id 99 is not in 'images'"):
        box_files.read_boxes_file(write(tmp_path, _bad_coco(**{"annotations.2.image_id": 99})), keep_bad_boxes=True)


def test_missing_box_file(tmp_path):
    with pytest.raises(UsageError, match="boxes file not found"):
        box_files.read_boxes_file(tmp_path / "none.json")


def test_match_images_by_path_then_base_name(tmp_path):
    boxes = box_files.read_boxes_file(write(tmp_path, {"a.png": [[0, 0, 5, 5]], "./sub\\b.png": [], "other/c.png": [],
                                                  "gone.png": []}))
    matched = box_files.match_images(boxes, ["a.png", "sub/b.png", "c.png", "d.png"])
    assert {rel: e.file_name for rel, e in matched.items()} == {
        "a.png": "a.png", "sub/b.png": "./sub\\b.png", "c.png": "other/c.png"}  # gone.png: not selected, left out


def test_match_images_errors(tmp_path):
    ambiguous = box_files.read_boxes_file(write(tmp_path, {"a.png": []}))
    with pytest.raises(DataError, match="'a.png' is ambiguous: it matches x/a.png, y/a.png; give paths relative"):
        box_files.match_images(ambiguous, ["x/a.png", "y/a.png"])
    assert list(box_files.match_images(ambiguous, ["a.png", "y/a.png"])) == ["a.png"]  # the exact path wins
    twice = box_files.read_boxes_file(write(tmp_path, {"a.png": [], "x/a.png": []}))
    with pytest.raises(DataError, match="'a.png' and 'x/a.png' both name image x/a.png"):
        box_files.match_images(twice, ["x/a.png"])
    with pytest.raises(DataError, match="none of its 1 file names matches any of the 2 images"):
        box_files.match_images(ambiguous, ["b.png", "c.png"])


def test_boxes_inside_image(tmp_path):
    entry = box_files.read_boxes_file(write(tmp_path, {"a.png": [[0, 0, 160, 120], [-0.5, 10, 161, 5]]})).images[0]
    box_files.check_boxes_inside(entry, 160, 120, "boxes.json", "a.png")  # within 1 px of slack
    with pytest.raises(DataError, match="entry 'a.png' box 0: .* reaches outside the 100x120 image a.png"):
        box_files.check_boxes_inside(entry, 100, 120, "boxes.json", "a.png")
