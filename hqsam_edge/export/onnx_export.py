"""Export a model to the two ONNX graphs: trace, check, simplify, save.

``export_model(model, folder, ...)`` writes ``encoder.onnx`` and
``decoder.onnx`` (names, dtypes and dynamic axes from ``contract``) and returns
their manifest entries. Verifying them against the PyTorch model and writing
the artifact folder is ``hqsam_edge.pipeline.export``'s job.
"""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import torch

from .. import progress
from . import contract as C
from .manifest import graph_file, tensor_entries
from .onnx_files import EXTERNAL_DATA_THRESHOLD, save_onnx
from .wrappers import DecoderGraph, EncoderGraph, export_copy

ENCODER_FILE = graph_file("encoder")
DECODER_FILE = graph_file("decoder")
MIN_OPSET = 17  # LayerNormalization
TRACE_PROMPTS, TRACE_POINTS = 2, 3  # the decoder is traced with P=2 prompts of N=3 points (both stay dynamic)


def _export_graph(module: torch.nn.Module, args: tuple, path: Path, inputs, outputs, opset: int) -> None:
    dynamic_axes = {s.name: s.dynamic_axes for s in (*inputs, *outputs) if s.dynamic_axes}
    with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module,
            args,
            str(path),
            input_names=[s.name for s in inputs],
            output_names=[s.name for s in outputs],
            dynamic_axes=dynamic_axes or None,
            opset_version=opset,
            do_constant_folding=True,
            dynamo=False,
        )
    module.eval()  # the exporter restores the mode it found; keep BatchNorm in eval


def _finish_graph(raw: Path, path: Path, simplify: bool) -> None:
    """``raw`` (the exporter's output, possibly with external tensor files beside it) ->
    ``path``: ``onnx.checker``, ``onnxslim`` clean-up, one external data file past 2 GiB."""
    import onnx

    onnx.checker.check_model(str(raw))
    large = sum(1 for _ in raw.parent.iterdir()) > 1  # the exporter wrote external tensors (> 2 GiB)
    model = onnx.load(str(raw))
    if simplify:
        import onnxslim

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = onnxslim.slim(model)
    save_onnx(model, path, external=large or model.ByteSize() >= EXTERNAL_DATA_THRESHOLD)
    shutil.rmtree(raw.parent)
    onnx.checker.check_model(str(path))


def _trace_prompts() -> tuple[torch.Tensor, ...]:
    """Decoder inputs to trace with: points, box corners and padding in P prompts of N points."""
    p, n = TRACE_PROMPTS, TRACE_POINTS
    return (
        torch.rand(C.POINT_COORDS.concrete(P=p, N=n)) * C.IMAGE_SIZE,
        torch.tensor([[C.LABEL_POSITIVE, C.LABEL_NEGATIVE, C.LABEL_PAD],
                      [C.LABEL_BOX_TOP_LEFT, C.LABEL_BOX_BOTTOM_RIGHT, C.LABEL_PAD]], dtype=torch.float32),
        torch.zeros(C.MASK_INPUT.concrete(P=p)),
        torch.zeros(C.HAS_MASK_INPUT.concrete(P=p)),
    )


def write_decoder_graph(module: torch.nn.Module, features: tuple[torch.Tensor, ...], path: Path, outputs, *,
                        is_hq: bool, opset: int = MIN_OPSET, simplify: bool = True) -> None:
    """Trace ``module``, which takes the decoder graph's inputs (``contract.decoder_inputs(is_hq)``: the image's
    ``features``, then the prompts), into ``path`` with its own ``outputs`` (``TensorSpec``s), checked and
    simplified as ``export_model`` does the decoder: for a decoder beside an artifact folder's own (a benchmark's
    older graph, say). P and N stay dynamic; a temporary folder beside ``path`` is used and removed."""
    raw = path.parent / f".raw_{path.name}" / "graph.onnx"
    raw.parent.mkdir()
    _export_graph(module, (*features, *_trace_prompts()), raw, C.decoder_inputs(is_hq), outputs, opset)
    _finish_graph(raw, path, simplify)


def export_model(model: torch.nn.Module, folder: Path, *, opset: int, simplify: bool = True) -> dict[str, dict]:
    """Write the two graphs of ``model`` into ``folder``; return their manifest entries."""
    is_hq = model.is_hq
    graph_model = export_copy(model)
    image = torch.zeros(C.IMAGE.concrete(B=1), dtype=torch.float32)
    raw = {name: folder / f".raw_{name}" / "graph.onnx" for name in (ENCODER_FILE, DECODER_FILE)}
    for path in raw.values():
        path.parent.mkdir()
    encoder = EncoderGraph(graph_model)
    with progress.stage("export: trace the encoder"):
        _export_graph(encoder, (image,), raw[ENCODER_FILE], C.encoder_inputs(), C.encoder_outputs(is_hq), opset)
        with torch.no_grad():
            features = encoder(image)
    decoder = DecoderGraph(graph_model)
    with progress.stage("export: trace the decoder"):
        _export_graph(decoder, (*features, *_trace_prompts()), raw[DECODER_FILE], C.decoder_inputs(is_hq),
                      C.decoder_outputs(is_hq), opset)
    for name, path in raw.items():
        with progress.stage(f"export: {'check and simplify' if simplify else 'check'} {name}"):
            _finish_graph(path, folder / name, simplify)
    outputs = tensor_entries(C.decoder_outputs(is_hq))
    return {
        "encoder": {"file": ENCODER_FILE, "inputs": tensor_entries(C.encoder_inputs()),
                    "outputs": tensor_entries(C.encoder_outputs(is_hq))},
        "decoder": {"file": DECODER_FILE, "inputs": tensor_entries(C.decoder_inputs(is_hq)), "outputs": outputs},
    }
