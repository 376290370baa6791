"""Pre- and post-processing as ONNX graphs, for apps that run the encoder and decoder without Python.

Their tensors are ``contract``'s (``preprocess_inputs`` ... ``postprocess_outputs``); the four graphs chain with
no code between them: preprocess -> encoder -> decoder -> postprocess.

``preprocess.onnx``: ``image_rgb`` uint8 ``[H,W,3]`` (any size) -> ``image`` float32 ``[1,3,1024,1024]`` (the
encoder's input: the longest side resized to 1024 with PIL's bilinear filter, SAM's mean/std, zero padding
right and bottom), ``original_size`` and ``input_size`` int32 ``[2]`` (H, W before and after resizing).

``postprocess.onnx`` (one per model: T, and the HQ token, are the model's): the decoder's ``low_res_masks``
float32 ``[P,T,256,256]`` (every mask token's logits) and ``iou_predictions`` ``[P,4]`` as they come,
``input_size`` and ``original_size`` int32 ``[2]``, and the choice: bool scalars ``multimask_output`` and (HQ-SAM
only, as the decoder's ``hq_features``) ``hq_token_only`` -> ``masks`` bool ``[P,M,H,W]`` and ``scores`` float32
``[P,M]``. The choice is ``runtime.selection``'s, the official models' (``_choose``): HQ-SAM M = 1, SAM's
token 0 or with ``multimask_output`` the one of tokens 1..3 of highest IoU (the first of equal ones), plus the HQ
token, or the HQ token alone; plain SAM token 0 (M = 1) or tokens 1..3 (M = 3). The chosen logits are upscaled
by the two bilinear resizes of ``segment_anything``'s ``postprocess_masks`` (to the padded 1024 square, crop the
resized image, to the original size) and thresholded at 0.

The resize is PIL's own algorithm (``Resample.c``: a triangle filter widened by the scale when
downscaling, each output pixel a normalised weighted sum of a window of inputs; the horizontal pass, rounded
to uint8, then the vertical one), written with Gather / Mul / ReduceSum so that it runs in ONNX Runtime and
TensorRT alike (no ``antialias`` Resize, no float64, int32 shape arithmetic). PIL computes its weights in
double precision and sums in 22-bit fixed point; these graphs do both in float32, so a resized pixel can
differ from PIL's by one level where its exact value lies within ~1e-4 of a rounding boundary (measured:
``tests/export/test_processing.py``). Built for TensorRT, keep TF32 off (``--noTF32``), as for fp32 engines.

The choice is made of ops TensorRT's ONNX parser takes, and keeps the sizes shape tensors and the choice
execution tensors (bool, never a shape): Where on the bool scalars (no ``If``: its branches' shapes differ);
the best of tokens 1..3 as the smallest index at the row's ReduceMax (Equal, Where, ReduceMin: ties resolved
as ``torch.max`` on every runtime, where ArgMax becomes TensorRT's TopK, which promises no order among equals);
GatherElements for one token per prompt; and for plain SAM, whose M depends on ``multimask_output``, NonZero
of the tokens kept, then Gather (a data-dependent shape: TensorRT 8.5 and later).

Prompts are scaled into the resized frame by the caller: ``x * input_size[1] / original_size[1]``,
``y * input_size[0] / original_size[0]`` (``examples/onnx_graphs.py``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..data.transforms import PIXEL_MEAN, PIXEL_STD
from . import contract as C

PREPROCESS_FILE = "preprocess.onnx"
POSTPROCESS_FILE = "postprocess.onnx"
OPSET = 17


class _Graph:
    """A small ONNX graph builder: ``g.op("Add", a, b)`` returns the output name."""

    def __init__(self, prefix: str) -> None:
        self.nodes: list = []
        self.initializers: list = []
        self.prefix = prefix
        self.count = 0

    def _name(self, op: str) -> str:
        self.count += 1
        return f"/{self.prefix}/{op}_{self.count}"

    def const(self, value, dtype=np.float32) -> str:
        from onnx import numpy_helper

        name = self._name("const")
        self.initializers.append(numpy_helper.from_array(np.asarray(value, dtype=dtype), name))
        return name

    def op(self, op_type: str, *inputs: str, outputs: int = 1, name: str | None = None, **attrs) -> str:
        from onnx import helper

        node_name = name or self._name(op_type)
        outs = [f"{node_name}:{i}" for i in range(outputs)]
        self.nodes.append(helper.make_node(op_type, list(inputs), outs, name=node_name, **attrs))
        return outs[0]

    def output(self, value: str, name: str) -> None:
        self.op("Identity", value, name=f"/{self.prefix}/{name}")
        self.nodes[-1].output[0] = name

    def model(self, inputs, outputs):
        from onnx import helper

        graph = helper.make_graph(self.nodes, self.prefix, inputs, outputs, self.initializers)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                                  producer_name="hqsam-edge")
        model.ir_version = 8
        return model


def _value_info(spec: C.TensorSpec):
    from onnx import helper

    elem = helper.np_dtype_to_tensor_dtype(np.dtype(spec.dtype))
    return helper.make_tensor_value_info(spec.name, elem, list(spec.shape))


def _resized_length(g: _Graph, length: str, longest: str) -> str:
    """``int(length * (1024 / longest) + 0.5)`` in int32: ``floor((2 * 1024 * length + longest) / (2 * longest))``."""
    numerator = g.op("Add", g.op("Mul", length, g.const(2 * C.IMAGE_SIZE, np.int32)), longest)
    return g.op("Div", numerator, g.op("Mul", longest, g.const(2, np.int32)))  # positive ints: truncation = floor


def _coefficients(g: _Graph, in_size: str, out_size: str) -> tuple[str, str]:
    """PIL's ``precompute_coeffs`` for the bilinear filter: gather indices int32 ``[out, K]`` and normalised
    weights float32 ``[out, K]`` (zero beyond each window), K = 2 * ceil(support) + 1.

    Window centres ``(xx + 0.5) * in / out`` reach thousands, where float32 resolves only ~1e-3: each is kept
    as an exact integer part (int32 arithmetic on ``(2 xx + 1) * in`` and ``2 out``) and a fraction, and every
    distance is taken from the integer part, so float32 only ever holds small numbers."""
    int32 = np.int32
    in_f, out_f = g.op("Cast", in_size, to=1), g.op("Cast", out_size, to=1)
    filterscale = g.op("Max", g.op("Div", in_f, out_f), g.const(1.0))  # support = filterscale (bilinear: 1)
    ksize = g.op("Add", g.op("Mul", g.op("Cast", g.op("Ceil", filterscale), to=6), g.const(2, int32)),
                 g.const(1, int32))
    xx = g.op("Range", g.const(0, int32), out_size, g.const(1, int32))
    numerator = g.op("Mul", g.op("Add", g.op("Mul", xx, g.const(2, int32)), g.const(1, int32)), in_size)
    denominator = g.op("Mul", out_size, g.const(2, int32))
    whole = g.op("Div", numerator, denominator)  # floor: both positive
    fraction = g.op("Div", g.op("Cast", g.op("Sub", numerator, g.op("Mul", whole, denominator)), to=1),
                    g.op("Cast", denominator, to=1))
    column = g.const([1], np.int64)
    whole, fraction = g.op("Unsqueeze", whole, column), g.op("Unsqueeze", fraction, column)  # [out, 1]
    lo = g.op("Cast", g.op("Floor", g.op("Add", g.op("Sub", fraction, filterscale), g.const(0.5))), to=6)
    hi = g.op("Cast", g.op("Floor", g.op("Add", g.op("Add", fraction, filterscale), g.const(0.5))), to=6)
    xmin = g.op("Max", g.op("Add", whole, lo), g.const(0, int32))
    xmax = g.op("Min", g.op("Add", whole, hi), g.op("Unsqueeze", in_size, g.const([0], np.int64)))
    k = g.op("Unsqueeze", g.op("Range", g.const(0, int32), ksize, g.const(1, int32)), g.const([0], np.int64))
    x = g.op("Add", xmin, k)  # [out, K] input positions
    offset = g.op("Cast", g.op("Sub", x, whole), to=1)  # small integers
    distance = g.op("Sub", g.op("Add", offset, g.const(0.5)), fraction)
    w = g.op("Relu", g.op("Sub", g.const(1.0), g.op("Div", g.op("Abs", distance), filterscale)))  # triangle
    w = g.op("Mul", w, g.op("Cast", g.op("Less", x, xmax), to=1))  # PIL's window: x < xmax
    total = g.op("ReduceSum", w, column, keepdims=1)
    weights = g.op("Div", w, g.op("Add", total, g.op("Cast", g.op("Equal", total, g.const(0.0)), to=1)))
    last = g.op("Unsqueeze", g.op("Sub", in_size, g.const(1, int32)), g.const([0], np.int64))
    return g.op("Min", x, last), weights  # positions past the window (weight 0) clamped into the image


def _resample(g: _Graph, image: str, in_size: str, out_size: str, axis: int) -> str:
    """One pass of PIL's resample along ``axis`` of an ``[H,W,3]`` float image of uint8 values, rounded to uint8
    values (PIL writes each pass as 8-bit)."""
    indices, weights = _coefficients(g, in_size, out_size)
    gathered = g.op("Gather", image, indices, axis=axis)  # axis 1: [H, out, K, 3]; axis 0: [out, K, W, 3]
    w = g.op("Unsqueeze", weights, g.const([2] if axis == 1 else [2, 3], np.int64))
    summed = g.op("ReduceSum", g.op("Mul", gathered, w), g.const([axis + 1], np.int64), keepdims=0)
    return g.op("Clip", g.op("Floor", g.op("Add", summed, g.const(0.5))), g.const(0.0), g.const(255.0))


def preprocess_graph():
    """The ``preprocess.onnx`` model (see the module docstring)."""
    g = _Graph("preprocess")
    shape = g.op("Cast", g.op("Shape", C.IMAGE_RGB.name), to=6)  # int32 [H, W, 3]
    h = g.op("Gather", shape, g.const(0, np.int64), axis=0)
    w = g.op("Gather", shape, g.const(1, np.int64), axis=0)
    longest = g.op("Max", h, w)
    new_h, new_w = _resized_length(g, h, longest), _resized_length(g, w, longest)
    image = g.op("Cast", C.IMAGE_RGB.name, to=1)
    image = _resample(g, image, w, new_w, axis=1)  # horizontal first, as PIL
    image = _resample(g, image, h, new_h, axis=0)
    normalised = g.op("Div", g.op("Sub", image, g.const(PIXEL_MEAN)), g.const(PIXEL_STD))
    chw = g.op("Transpose", normalised, perm=[2, 0, 1])
    pad_h = g.op("Sub", g.const(C.IMAGE_SIZE, np.int32), new_h)
    pad_w = g.op("Sub", g.const(C.IMAGE_SIZE, np.int32), new_w)
    zeros = g.const([0, 0, 0, 0], np.int32)
    pads = g.op("Cast", g.op("Concat", zeros, g.op("Unsqueeze", pad_h, g.const([0], np.int64)),
                             g.op("Unsqueeze", pad_w, g.const([0], np.int64)), axis=0), to=7)
    padded = g.op("Pad", chw, pads, g.const(0.0), mode="constant")
    g.output(g.op("Unsqueeze", padded, g.const([0], np.int64)), C.IMAGE.name)
    g.output(g.op("Concat", g.op("Unsqueeze", h, g.const([0], np.int64)),
                  g.op("Unsqueeze", w, g.const([0], np.int64)), axis=0), C.ORIGINAL_SIZE.name)
    g.output(g.op("Concat", g.op("Unsqueeze", new_h, g.const([0], np.int64)),
                  g.op("Unsqueeze", new_w, g.const([0], np.int64)), axis=0), C.INPUT_SIZE.name)
    return g.model([_value_info(s) for s in C.preprocess_inputs()], [_value_info(s) for s in C.preprocess_outputs()])


def _bilinear(g: _Graph, x: str, sizes: str) -> str:
    """``F.interpolate(x, sizes, mode="bilinear", align_corners=False)`` (no antialias)."""
    return g.op("Resize", x, "", "", sizes, mode="linear", coordinate_transformation_mode="half_pixel",
                nearest_mode="floor")


def _choose(g: _Graph, is_hq: bool) -> tuple[str, str]:
    """``runtime.selection.select_masks`` in graph ops: the chosen logits ``[P,M,256,256]`` and IoU ``[P,M]``
    (the ops and why: the module docstring)."""
    masks, iou, multimask = C.LOW_RES_MASKS.name, C.IOU_PREDICTIONS.name, C.MULTIMASK_OUTPUT.name
    sam = C.SAM_MASK_TOKENS
    if not is_hq:  # token 0, or tokens 1..3
        many = g.op("Unsqueeze", multimask, g.const([0], np.int64))  # [1]
        kept = g.op("Concat", g.op("Not", many), *[many] * (sam - 1), axis=0)  # [4]
        index = g.op("Squeeze", g.op("NonZero", kept), g.const([0], np.int64))  # [M]
        return g.op("Gather", masks, index, axis=1), g.op("Gather", iou, index, axis=1)
    axis_1 = g.const([1], np.int64)
    multi = g.op("Slice", iou, axis_1, g.const([sam], np.int64), axis_1)  # [P,3]: tokens 1..3
    top = g.op("Equal", multi, g.op("ReduceMax", multi, axes=[1], keepdims=1))
    first = g.op("ReduceMin", g.op("Where", top, g.const([list(range(1, sam))]), g.const(float(sam))),
                 axes=[1], keepdims=1)  # [P,1]: the first token of the highest IoU
    best = g.op("Cast", g.op("Where", multimask, first, g.const(0.0)), to=7)  # [P,1] int64
    every = g.op("Expand", g.op("Unsqueeze", best, g.const([2, 3], np.int64)),
                 g.const([1, 1, C.LOW_RES_SIZE, C.LOW_RES_SIZE], np.int64))  # [P,1,256,256]
    token = g.op("GatherElements", masks, every, axis=1)
    hq = g.op("Slice", masks, g.const([sam], np.int64), g.const([sam + 1], np.int64), axis_1)
    chosen = g.op("Where", C.HQ_TOKEN_ONLY.name, hq, g.op("Add", token, hq))
    return chosen, g.op("GatherElements", iou, best, axis=1)


def postprocess_graph(is_hq: bool):
    """The ``postprocess.onnx`` model of an HQ-SAM (``is_hq``) or plain SAM decoder (see the module docstring)."""
    g = _Graph("postprocess")
    logits, scores = _choose(g, is_hq)
    lead = g.op("Slice", g.op("Shape", logits), g.const([0], np.int64), g.const([2], np.int64))  # [P, M]
    square = g.op("Concat", lead, g.const([C.IMAGE_SIZE, C.IMAGE_SIZE], np.int64), axis=0)
    x = _bilinear(g, logits, square)
    ends = g.op("Cast", C.INPUT_SIZE.name, to=7)
    x = g.op("Slice", x, g.const([0, 0], np.int64), ends, g.const([2, 3], np.int64))
    x = _bilinear(g, x, g.op("Concat", lead, g.op("Cast", C.ORIGINAL_SIZE.name, to=7), axis=0))
    g.output(g.op("Greater", x, g.const(0.0)), C.MASKS.name)
    g.output(scores, C.SCORES.name)
    return g.model([_value_info(s) for s in C.postprocess_inputs(is_hq)],
                   [_value_info(s) for s in C.postprocess_outputs(is_hq)])


def export_processing(folder: str | Path, is_hq: bool) -> dict[str, dict]:
    """Write ``preprocess.onnx`` and ``postprocess.onnx`` (for an HQ-SAM or plain SAM decoder) into ``folder``,
    checked; their manifest entries."""
    import onnx

    from .manifest import tensor_entries
    from .onnx_files import save_onnx

    folder = Path(folder)
    entries = {}
    for name, model, file, inputs, outputs in (
            ("preprocess", preprocess_graph(), PREPROCESS_FILE, C.preprocess_inputs(), C.preprocess_outputs()),
            ("postprocess", postprocess_graph(is_hq), POSTPROCESS_FILE, C.postprocess_inputs(is_hq),
             C.postprocess_outputs(is_hq))):
        onnx.checker.check_model(model, full_check=True)
        save_onnx(model, folder / file)
        entries[name] = {"file": file, "inputs": tensor_entries(inputs), "outputs": tensor_entries(outputs)}
    return entries
