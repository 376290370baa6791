"""An ONNX object detector whose boxes prompt HQ-SAM: the graphs users export from Ultralytics.

Used by ``segment --detector`` on still images (``apps.segment.detector_mode``) and by the video tracker
(``video``), run every N frames there.

Two output layouts are read (one output tensor; anything else is refused in one line):

- the raw head ``[1, 4+C, A]`` (``yolo export format=onnx``): per anchor ``cx, cy, w, h`` then C class scores,
  in the letterboxed input's pixels; needs non-maximum suppression, done per class as Ultralytics does
  (``agnostic=False``) with OpenCV's ``cv2.dnn.NMSBoxesBatched``;
- the end-to-end ``[1, K, 6]`` (``nms=True``, or YOLOv10 / YOLO26 heads): ``x0, y0, x1, y1, score, class``.

Input: ``[1,3,H,W]`` float32 RGB in 0..1, letterboxed as Ultralytics' ``LetterBox(auto=False)``: resized to fit
with the aspect kept (bilinear), centred, padded with grey 114; boxes are mapped back with its
``scale_boxes``. In a video the detector runs on every ``every``-th frame it is given (the 1st, N+1th...); other
frames get None.

``check_graph(path)`` reads the graph's declared output shapes from the file with a small protobuf reader (no
onnx, no ONNX Runtime), so that the command line refuses a graph of another layout in one line, in a fraction
of a second, before anything heavy is imported.
"""

from __future__ import annotations

import functools
import mmap
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from ..errors import ArtifactError, BackendUnavailableError, UsageError
from .detections import Detections

RAW, END_TO_END = "raw", "end-to-end"
PAD_VALUE = 114


@dataclass(frozen=True)
class DetectorSpec:
    """``every``: run on every N-th frame; ``min_score``: drop weaker boxes; ``classes``: keep only these ids
    (None: all); ``nms_iou``: the raw head's suppression threshold (Ultralytics' default 0.7); ``max_det``:
    boxes kept per frame, best first; ``image_size``: the input size for graphs whose input has free H/W."""

    every: int = 1
    min_score: float = 0.25
    classes: tuple[int, ...] | None = None
    nms_iou: float = 0.7
    max_det: int = 300
    image_size: int = 640

    def __post_init__(self) -> None:
        if self.every < 1:
            raise UsageError("the detector runs every N frames with N >= 1")
        if not 0.0 <= self.min_score <= 1.0 or not 0.0 < self.nms_iou <= 1.0:
            raise UsageError("the detector's score and NMS IoU thresholds lie in 0..1")
        if self.max_det < 1 or self.image_size < 32:
            raise UsageError("the detector keeps at least 1 box a picture, on an input of at least 32 pixels")
        if self.classes is not None and any(c < 0 for c in self.classes):
            raise UsageError("the detector's class ids count from 0")

    def describe(self) -> str:
        """What decides a picture's boxes (``every`` left out: a video's schedule), e.g. for a run's record."""
        classes = "all" if self.classes is None else ",".join(str(c) for c in self.classes)
        return (f"score>={self.min_score:g} classes={classes} nms_iou={self.nms_iou:g} max_det={self.max_det} "
                f"image_size={self.image_size}")


class Picture(Protocol):
    """What ``OnnxDetector.detections`` takes: a video frame (``video.frames.Frame``), or anything with ``rgb``."""

    @property
    def rgb(self) -> np.ndarray: ...


@dataclass(frozen=True)
class Letterbox:
    """How a picture was fitted into the detector's input: scale ``gain`` and padding ``(left, top)``."""

    gain: float
    pad: tuple[int, int]


def letterbox(rgb: np.ndarray, size: tuple[int, int]) -> tuple[np.ndarray, Letterbox]:
    """``HxWx3`` uint8 -> the ``[1,3,h,w]`` float32 input of ``size`` (h, w), as Ultralytics' ``LetterBox``."""
    import cv2

    h0, w0 = rgb.shape[:2]
    gain = min(size[0] / h0, size[1] / w0)
    new_w, new_h = int(round(w0 * gain)), int(round(h0 * gain))
    dw, dh = (size[1] - new_w) / 2, (size[0] - new_h) / 2
    img = rgb if (new_w, new_h) == (w0, h0) else cv2.resize(rgb, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
    top, bottom = int(round(dh - 0.1)), int(round(dh + 0.1))
    left, right = int(round(dw - 0.1)), int(round(dw + 0.1))
    img = cv2.copyMakeBorder(img, top, bottom, left, right, cv2.BORDER_CONSTANT, value=(PAD_VALUE,) * 3)
    tensor = np.ascontiguousarray(img.transpose(2, 0, 1)[None], dtype=np.float32) / 255.0
    return tensor, Letterbox(gain, (left, top))


def unletterbox(boxes: np.ndarray, box: Letterbox, frame_size: tuple[int, int]) -> np.ndarray:
    """Boxes ``[K,4]`` in the input's pixels -> the frame's, clipped to it (Ultralytics' ``scale_boxes``)."""
    out = np.asarray(boxes, np.float32).copy()
    out[:, [0, 2]] -= box.pad[0]
    out[:, [1, 3]] -= box.pad[1]
    out /= box.gain
    h, w = frame_size
    out[:, [0, 2]] = out[:, [0, 2]].clip(0, w)
    out[:, [1, 3]] = out[:, [1, 3]].clip(0, h)
    return out


def output_layout(shape: Sequence[int | str | None]) -> str:
    """``RAW`` or ``END_TO_END`` for an output of ``shape``; ``ArtifactError`` for any other."""
    dims = [d if isinstance(d, int) and d > 0 else None for d in shape]
    if len(dims) == 3 and dims[0] in (1, None):
        if dims[2] == 6 and dims[1] != 6:
            return END_TO_END
        if dims[1] is not None and dims[1] >= 5 and (dims[2] is None or dims[2] > dims[1]):
            return RAW
    raise ArtifactError(f"the detector's output has shape {list(shape)}, neither Ultralytics' raw head [1, 4+C, A] "
                        f"nor its end-to-end [1, K, 6]: export a detection model (yolo export format=onnx)")


# -- the graph's declared outputs, read from the file without onnx ---------------------------------------------
# ModelProto.graph = 7; GraphProto.output = 12; ValueInfoProto.type = 2; TypeProto.tensor_type = 1;
# TypeProto.Tensor.shape = 2; TensorShapeProto.dim = 1; Dimension.dim_value = 1 (dim_param = 2: a free dim).
_GRAPH, _OUTPUT, _TYPE, _TENSOR, _SHAPE, _DIM, _DIM_VALUE = 7, 12, 2, 1, 2, 1, 1
Span = tuple[int, int]


def _varint(buf: mmap.mmap, pos: int) -> tuple[int, int]:
    value = shift = 0
    while shift < 70:
        if pos >= len(buf):
            raise ValueError("a number runs past the end of the file")
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7
    raise ValueError("a number longer than 10 bytes")


def _fields(buf: mmap.mmap, span: Span) -> list[tuple[int, int | Span]]:
    """The fields of the protobuf message at ``buf[span]``: (number, a varint's value or a length-delimited
    field's span); fixed-size fields are skipped."""
    pos, end = span
    out: list[tuple[int, int | Span]] = []
    while pos < end:
        key, pos = _varint(buf, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(buf, pos)
            out.append((number, value))
        elif wire == 2:
            n, pos = _varint(buf, pos)
            out.append((number, (pos, pos + n)))
            pos += n
        elif wire in (1, 5):
            pos += 8 if wire == 1 else 4
        else:
            raise ValueError(f"wire type {wire} at byte {pos}")
        if pos > end:
            raise ValueError("a field runs past the end of its message")
    return out


def _spans(buf: mmap.mmap, span: Span, number: int) -> list[Span]:
    return [v for n, v in _fields(buf, span) if n == number and isinstance(v, tuple)]


def _declared_shape(buf: mmap.mmap, value_info: Span) -> list[int | None] | None:
    """An output's declared dims (None: a free one), or None if it declares no shape."""
    for typ in _spans(buf, value_info, _TYPE):
        for tensor in _spans(buf, typ, _TENSOR):
            for shape in _spans(buf, tensor, _SHAPE):
                dims = []
                for dim in _spans(buf, shape, _DIM):
                    values = [v for n, v in _fields(buf, dim) if n == _DIM_VALUE and isinstance(v, int)]
                    dims.append(values[0] if values and 0 < values[0] < 2**62 else None)
                return dims
    return None


def _outputs_refused(path: Path, n: int) -> ArtifactError:
    return ArtifactError(f"{path} has {n} outputs (a segmentation or pose model?): a detector has one, [1, 4+C, A] "
                         f"or [1, K, 6]")


def check_graph(path: str | Path) -> str | None:
    """The layout (``RAW`` / ``END_TO_END``) of the detector graph at ``path`` from the output shape it declares
    (None: it declares none; ONNX Runtime's answer decides when it runs); ``ArtifactError`` for a missing file,
    one that is not an ONNX model, or a graph of another layout. Reads the file's structure only (mapped, not
    loaded): no onnx or ONNX Runtime import."""
    path = Path(path)
    if not path.is_file():
        raise ArtifactError(f"no detector graph at {path}")
    try:
        with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as buf:
            graphs = _spans(buf, (0, len(buf)), _GRAPH)
            if not graphs:
                raise ValueError("it holds no graph")
            shapes = [_declared_shape(buf, out) for out in _spans(buf, graphs[-1], _OUTPUT)]
    except (ValueError, OSError) as exc:  # mmap of an empty file: ValueError too
        raise ArtifactError(f"cannot load the detector {path}: not an ONNX model ({exc})") from None
    if len(shapes) != 1:
        raise _outputs_refused(path, len(shapes))
    return None if shapes[0] is None else output_layout(shapes[0])


def graph_identity(path: str | Path) -> str:
    """The detector graph's file name and the start of its sha256 (what a run records, so that a resume with
    another detector is refused)."""
    path = Path(path)
    stat = path.stat()
    return f"{path.name} sha256={_sha256(str(path.resolve()), stat.st_size, stat.st_mtime_ns)[:16]}"


@functools.lru_cache(maxsize=8)
def _sha256(path: str, size: int, mtime_ns: int) -> str:
    from ..digest import sha256_file

    return sha256_file(path)


def decode_raw(pred: np.ndarray, spec: DetectorSpec) -> Detections:
    """``[4+C, A]`` (cx, cy, w, h, class scores) -> detections after per-class NMS, in input pixels."""
    import cv2

    pred = np.asarray(pred, np.float32).T  # [A, 4+C]
    cls_scores = pred[:, 4:]
    classes = cls_scores.argmax(axis=1)
    scores = cls_scores[np.arange(len(pred)), classes]
    keep = scores >= spec.min_score
    if spec.classes is not None:
        keep &= np.isin(classes, spec.classes)
    xywh, scores, classes = pred[keep, :4], scores[keep], classes[keep]
    if not len(scores):
        return Detections()
    corner = np.concatenate([xywh[:, :2] - xywh[:, 2:] / 2, xywh[:, 2:]], axis=1)  # x, y (top left), w, h
    kept = np.asarray(cv2.dnn.NMSBoxesBatched(corner.tolist(), scores.tolist(), classes.astype(int).tolist(),
                                              spec.min_score, spec.nms_iou), dtype=np.int64).reshape(-1)
    kept = kept[np.argsort(-scores[kept], kind="stable")][: spec.max_det]
    boxes = np.concatenate([corner[kept, :2], corner[kept, :2] + corner[kept, 2:]], axis=1)
    return Detections(boxes.astype(np.float32), scores[kept].astype(np.float32), classes[kept].astype(np.int64))


def decode_end_to_end(pred: np.ndarray, spec: DetectorSpec) -> Detections:
    """``[K, 6]`` (x0, y0, x1, y1, score, class) -> detections, in input pixels."""
    pred = np.asarray(pred, np.float32)
    dets = Detections(pred[:, :4].copy(), pred[:, 4].copy(), pred[:, 5].round().astype(np.int64))
    dets = dets.filtered(spec.min_score, spec.classes)
    order = np.argsort(-dets.scores, kind="stable")[: spec.max_det]
    return dets.select(order)


class OnnxDetector:
    """An Ultralytics-layout ONNX detector (see the module's doc), run with ONNX Runtime on the CPU or
    ``providers``."""

    def __init__(self, path: str | Path, spec: DetectorSpec = DetectorSpec(),
                 providers: Sequence[str] | None = None) -> None:
        try:
            import onnxruntime as ort
        except ImportError:
            raise BackendUnavailableError("the detector needs ONNX Runtime: pip install 'hqsam-edge[cpu]'") from None
        path = Path(path)
        if not path.is_file():
            raise ArtifactError(f"no detector graph at {path}")
        try:
            self.session = ort.InferenceSession(str(path), providers=list(providers or ["CPUExecutionProvider"]))
        except Exception as exc:  # ORT raises its own types (Fail, InvalidGraph...) for unreadable files
            raise ArtifactError(f"cannot load the detector {path}: {str(exc).splitlines()[0][:200]}") from None
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        if len(inputs) != 1 or len(inputs[0].shape) != 4:
            raise ArtifactError(f"{path}: a detector takes one [1,3,H,W] image; this graph takes "
                                f"{[(i.name, i.shape) for i in inputs]}")
        if len(outputs) != 1:
            raise _outputs_refused(path, len(outputs))
        self.input_name = inputs[0].name
        h, w = inputs[0].shape[2:]
        self.input_size = (h if isinstance(h, int) else spec.image_size, w if isinstance(w, int) else spec.image_size)
        self.layout = output_layout(outputs[0].shape)
        self.spec, self.path = spec, path
        self.frames_seen = 0

    def detect(self, rgb: np.ndarray) -> Detections:
        """The detections of one ``HxWx3`` picture, in its pixels."""
        tensor, box = letterbox(rgb, self.input_size)
        (pred,) = self.session.run(None, {self.input_name: tensor})
        output_layout(pred.shape)  # a graph with free output dims is checked on its first answer
        dets = (decode_raw if self.layout == RAW else decode_end_to_end)(pred[0], self.spec)
        return Detections(unletterbox(dets.boxes, box, rgb.shape[:2]), dets.scores, dets.classes)

    def detections(self, frame: Picture) -> Detections | None:
        """Detections on the 1st, (N+1)th, (2N+1)th... frame this detector is given (counted here, not by
        ``frame.index``, which skips on a live source); None on the others."""
        seen, self.frames_seen = self.frames_seen, self.frames_seen + 1
        return None if seen % self.spec.every else self.detect(frame.rgb)
