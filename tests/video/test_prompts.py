"""Prompts: detections files (MOT det.txt, COCO JSON) and ONNX detectors in Ultralytics' two layouts, built here
with onnx.helper (no downloads)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from hqsam_edge.errors import ArtifactError, DataError, UsageError
from hqsam_edge.apps.detector import DetectorSpec, OnnxDetector, letterbox, unletterbox
from hqsam_edge.video.frames import Frame
from hqsam_edge.video.prompts import DetectionsFile, FirstFramePrompts, PointGroup

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")


def frame(index: int, h: int = 48, w: int = 96) -> Frame:
    return Frame(index, index / 25, np.zeros((h, w, 3), np.uint8))


def test_mot_det_txt_gives_each_frame_its_boxes(tmp_path):
    path = tmp_path / "det.txt"
    path.write_text("1,-1,10,20,30,40,0.9,-1,-1,-1\n1,-1,50,5,10,10,0.4,-1,-1,-1\n\n3,-1,0,0,5,6,0.7,-1,-1,-1\n")
    dets = DetectionsFile.read(path)
    first = dets.detections(frame(0))
    np.testing.assert_allclose(first.boxes, [[10, 20, 40, 60], [50, 5, 60, 15]])
    np.testing.assert_allclose(first.scores, [0.9, 0.4])
    assert len(dets.detections(frame(1))) == 0  # not in the file: looked, found nothing
    np.testing.assert_allclose(dets.detections(frame(2)).boxes, [[0, 0, 5, 6]])
    path.write_text("1,-1,10,twenty,30,40,0.9\n")
    with pytest.raises(DataError, match=r"det.txt:1 is not a MOT Challenge detection line"):
        DetectionsFile.read(path)


def test_coco_json_detections_and_an_empty_file(tmp_path):
    path = tmp_path / "dets.json"
    path.write_text(json.dumps([{"image_id": 4, "bbox": [1, 2, 3, 4], "score": 0.8, "category_id": 7}]))
    got = DetectionsFile.read(path).detections(frame(4))
    np.testing.assert_allclose(got.boxes, [[1, 2, 4, 6]])
    assert got.classes.tolist() == [7]
    path.write_text("[]")
    with pytest.raises(DataError, match="holds no detections"):
        DetectionsFile.read(path)
    (tmp_path / "empty.txt").write_text("")
    with pytest.raises(DataError, match="holds no detections"):
        DetectionsFile.read(tmp_path / "empty.txt")


def test_first_frame_prompts_are_checked():
    with pytest.raises(UsageError, match="at least one box or point"):
        FirstFramePrompts()
    with pytest.raises(UsageError, match="foreground point"):
        PointGroup(((3.0, 4.0, 0),))


def test_letterbox_as_ultralytics():
    rgb = np.full((48, 96, 3), 200, np.uint8)
    tensor, box = letterbox(rgb, (64, 64))
    assert tensor.shape == (1, 3, 64, 64) and tensor.dtype == np.float32
    assert box.gain == pytest.approx(64 / 96) and box.pad == (0, 16)  # 96x48 -> 64x32, 16 rows above and below
    assert tensor[0, 0, 0, 0] == pytest.approx(114 / 255) and tensor[0, 0, 32, 32] == pytest.approx(200 / 255)
    back = unletterbox(np.array([[8, 20, 24, 36], [-5, 0, 70, 70]], np.float32), box, (48, 96))
    np.testing.assert_allclose(back, [[12, 6, 36, 30], [0, 0, 96, 48]])


def graph(path, output: np.ndarray, input_shape=(1, 3, 64, 64), outputs: int = 1):
    """A 'detector' whose answer is ``output`` whatever the picture."""
    from onnx import TensorProto, helper, numpy_helper

    nodes = [helper.make_node("Constant", [], [f"out{k}"], value=numpy_helper.from_array(output.astype(np.float32)))
             for k in range(outputs)]
    g = helper.make_graph(nodes, "det", [helper.make_tensor_value_info("images", TensorProto.FLOAT, input_shape)],
                          [helper.make_tensor_value_info(f"out{k}", TensorProto.FLOAT, output.shape)
                           for k in range(outputs)])
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


def raw_head() -> np.ndarray:
    """[1, 4+3, 16]: object A (class 0, 0.9), a shifted copy of A (class 0, 0.8: suppressed), A again as class 1
    (0.7: kept, NMS is per class), a weak anchor (0.1) and B (class 2, 0.6); the other anchors empty."""
    pred = np.zeros((7, 16), np.float32)
    for k, (cx, cy, w, h, cls, s) in enumerate([(16, 28, 16, 16, 0, 0.9), (17, 28, 16, 16, 0, 0.8),
                                                (16, 28, 16, 16, 1, 0.7), (40, 30, 10, 10, 0, 0.1),
                                                (48, 40, 8, 8, 2, 0.6)]):
        pred[:4, k] = cx, cy, w, h
        pred[4 + cls, k] = s
    return pred[None]


def test_the_raw_head_layout_with_nms_class_filter_and_score_threshold(tmp_path):
    det = OnnxDetector(graph(tmp_path / "raw.onnx", raw_head()), DetectorSpec(min_score=0.25))
    assert det.layout == "raw" and det.input_size == (64, 64)
    got = det.detect(np.zeros((48, 96, 3), np.uint8))
    np.testing.assert_allclose(got.scores, [0.9, 0.7, 0.6], atol=1e-6)
    assert got.classes.tolist() == [0, 1, 2]
    np.testing.assert_allclose(got.boxes[0], [12, 6, 36, 30], atol=1e-4)  # back in the frame's pixels
    np.testing.assert_allclose(got.boxes[2], [66, 30, 78, 42], atol=1e-4)
    only = OnnxDetector(det.path, DetectorSpec(classes=(0, 2), min_score=0.65)).detect(np.zeros((48, 96, 3), np.uint8))
    assert only.classes.tolist() == [0] and only.scores.tolist() == pytest.approx([0.9])


def test_the_end_to_end_layout_and_the_every_n_frames_schedule(tmp_path):
    rows = np.array([[[8, 20, 24, 36, 0.95, 3], [0, 16, 10, 26, 0.2, 1], [30, 30, 40, 40, 0.5, 1]]], np.float32)
    det = OnnxDetector(graph(tmp_path / "e2e.onnx", rows), DetectorSpec(every=3, min_score=0.3))
    assert det.layout == "end-to-end"
    answers = [det.detections(frame(k)) for k in range(7)]
    assert [a is not None for a in answers] == [True, False, False, True, False, False, True]
    np.testing.assert_allclose(answers[0].boxes, [[12, 6, 36, 30], [45, 21, 60, 36]], atol=1e-4)
    assert answers[0].classes.tolist() == [3, 1]


@pytest.mark.parametrize("shape, outputs, message", [
    ((1, 84), 1, "neither Ultralytics' raw head"),
    ((1, 6, 6), 1, "neither Ultralytics' raw head"),
    ((1, 300, 7), 1, "neither Ultralytics' raw head"),
    ((1, 7, 16), 2, "has 2 outputs"),
])
def test_an_unknown_layout_is_refused_in_one_line(tmp_path, shape, outputs, message):
    path = graph(tmp_path / "odd.onnx", np.zeros(shape, np.float32), outputs=outputs)
    with pytest.raises(ArtifactError, match=message) as info:
        OnnxDetector(path)
    assert "\n" not in str(info.value)
    (tmp_path / "broken.onnx").write_bytes(b"not a graph")
    with pytest.raises(ArtifactError, match="cannot load the detector"):
        OnnxDetector(tmp_path / "broken.onnx")


def test_the_layout_is_read_from_the_file_without_onnx_runtime(tmp_path):
    """``check_graph`` (what the command line runs before any heavy import) agrees with ONNX Runtime's answer."""
    from hqsam_edge.apps.detector import check_graph

    assert check_graph(graph(tmp_path / "raw.onnx", raw_head())) == "raw"
    assert check_graph(graph(tmp_path / "e2e.onnx", np.zeros((1, 300, 6), np.float32))) == "end-to-end"
    for shape, outputs, message in [((1, 84), 1, "neither Ultralytics' raw head"), ((1, 7, 16), 2, "has 2 outputs")]:
        with pytest.raises(ArtifactError, match=message):
            check_graph(graph(tmp_path / "odd.onnx", np.zeros(shape, np.float32), outputs=outputs))
    (tmp_path / "broken.onnx").write_bytes(b"not a graph")
    (tmp_path / "empty.onnx").write_bytes(b"")
    for name in ("broken.onnx", "empty.onnx"):
        with pytest.raises(ArtifactError, match="not an ONNX model"):
            check_graph(tmp_path / name)
    with pytest.raises(ArtifactError, match="no detector graph at"):
        check_graph(tmp_path / "missing.onnx")
