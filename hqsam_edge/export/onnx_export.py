"""Export a model to the two ONNX graphs, check, simplify and verify them.

``export_artifacts(ExportSpec(...))`` writes ``encoder.onnx``,
``decoder.onnx`` and ``manifest.json`` into a temporary folder beside the
target, verifies the graphs under ONNX Runtime against the PyTorch model, and
only then renames the folder into place: a failure leaves nothing behind.
"""

from __future__ import annotations

import datetime as _dt
import shutil
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch

from ..atomic import staged_folder
from ..errors import UsageError
from . import contract as C
from .manifest import Artifact, Manifest, tensor_entries
from .wrappers import DecoderGraph, EncoderGraph, export_copy

ENCODER_FILE = "encoder.onnx"
DECODER_FILE = "decoder.onnx"
TWO_GIB = 2**31
MIN_OPSET = 17  # LayerNormalization


@dataclass(frozen=True)
class ExportSpec:
    """Everything ``hqsam-edge export`` decides; the defaults are the real ones."""

    backbone: str = "vit_tiny"
    variant: str = "hq"
    checkpoint: str | None = None
    random_weights: bool = False
    out: str | None = None  # default build/<variant>_<backbone>
    opset: int = 17
    hq_token_only: bool = False
    multimask_output: bool = False
    seed: int = 0  # random weights are reproducible: the torch backend can rebuild them
    simplify: bool = True
    verify: bool = True
    overwrite: bool = False

    @property
    def out_dir(self) -> Path:
        return Path(self.out or f"build/{self.variant}_{self.backbone}")


def tool_versions() -> dict[str, str]:
    import onnx
    import onnxruntime

    import hqsam_edge

    return {"hqsam_edge": hqsam_edge.__version__, "torch": torch.__version__, "onnx": onnx.__version__,
            "onnxruntime": onnxruntime.__version__}


def _check_spec(spec: ExportSpec) -> None:
    from ..model.build import backbone_spec, check_variant
    from ..model.checkpoint import check_weights_choice

    backbone_spec(spec.backbone)
    check_variant(spec.variant)
    check_weights_choice(spec.checkpoint, spec.random_weights)
    if spec.opset < MIN_OPSET:
        raise UsageError(f"--opset {spec.opset} is too old: LayerNormalization needs opset {MIN_OPSET} or newer")
    if spec.hq_token_only and spec.variant != "hq":
        raise UsageError("--hq-token-only applies to HQ-SAM only (--variant hq)")
    out = spec.out_dir
    if out.exists() and not spec.overwrite and any(out.iterdir()):
        raise UsageError(f"{out} exists and is not empty; pass --overwrite or choose another --out")


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
    if large or model.ByteSize() >= TWO_GIB:
        onnx.save(model, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
                  location=path.name + ".data", size_threshold=1024)
    else:
        onnx.save(model, str(path))
    shutil.rmtree(raw.parent)
    onnx.checker.check_model(str(path))


def export_model(model: torch.nn.Module, folder: Path, *, opset: int, multimask_output: bool,
                 hq_token_only: bool, simplify: bool = True) -> dict[str, dict]:
    """Write the two graphs of ``model`` into ``folder``; return their manifest entries."""
    is_hq = model.is_hq
    graph_model = export_copy(model)
    image = torch.zeros(C.IMAGE.concrete(B=1), dtype=torch.float32)
    raw = {name: folder / f".raw_{name}" / "graph.onnx" for name in (ENCODER_FILE, DECODER_FILE)}
    for path in raw.values():
        path.parent.mkdir()
    encoder = EncoderGraph(graph_model)
    _export_graph(encoder, (image,), raw[ENCODER_FILE], C.encoder_inputs(), C.encoder_outputs(is_hq), opset)
    with torch.no_grad():
        features = encoder(image)
    p, n = 2, 3
    prompts = (
        torch.rand(C.POINT_COORDS.concrete(P=p, N=n)) * C.IMAGE_SIZE,
        torch.tensor([[1.0, 0.0, -1.0], [2.0, 3.0, -1.0]]),
        torch.zeros(C.MASK_INPUT.concrete(P=p)),
        torch.zeros(C.HAS_MASK_INPUT.concrete(P=p)),
    )
    decoder = DecoderGraph(graph_model, multimask_output=multimask_output, hq_token_only=hq_token_only)
    _export_graph(decoder, (*features, *prompts), raw[DECODER_FILE], C.decoder_inputs(is_hq),
                  C.decoder_outputs(), opset)
    for name, path in raw.items():
        _finish_graph(path, folder / name, simplify)
    m = C.num_masks(is_hq, multimask_output)
    outputs = [dict(e, shape=[m if d == "M" else d for d in e["shape"]]) for e in tensor_entries(C.decoder_outputs())]
    return {
        "encoder": {"file": ENCODER_FILE, "inputs": tensor_entries(C.encoder_inputs()),
                    "outputs": tensor_entries(C.encoder_outputs(is_hq))},
        "decoder": {"file": DECODER_FILE, "inputs": tensor_entries(C.decoder_inputs(is_hq)), "outputs": outputs},
    }


def export_artifacts(spec: ExportSpec) -> Manifest:
    """Build the model, export, verify, and move the finished folder to ``spec.out_dir``."""
    from ..model import build_model
    from ..model.checkpoint import sha256_file
    from ..hardware import this_platform
    from .parity import verify_onnx_export

    _check_spec(spec)
    out = spec.out_dir
    with staged_folder(out, "artifact folder") as tmp:
        if spec.random_weights:
            torch.manual_seed(spec.seed)
        model = build_model(spec.backbone, spec.variant, spec.checkpoint)
        graphs = export_model(model, tmp, opset=spec.opset, multimask_output=spec.multimask_output,
                              hq_token_only=spec.hq_token_only, simplify=spec.simplify)
        parity = {}
        if spec.verify:
            parity = verify_onnx_export(model, tmp / ENCODER_FILE, tmp / DECODER_FILE,
                                        multimask_output=spec.multimask_output, hq_token_only=spec.hq_token_only)
        versions = tool_versions()
        manifest = Manifest(
            backbone=spec.backbone,
            variant=spec.variant,
            image_size=C.IMAGE_SIZE,
            checkpoint=None if spec.checkpoint is None else str(Path(spec.checkpoint).resolve()),
            checkpoint_sha256=None if spec.checkpoint is None else sha256_file(spec.checkpoint),
            random_seed=spec.seed if spec.random_weights else None,
            hq_token_only=spec.hq_token_only,
            multimask_output=spec.multimask_output,
            opset=spec.opset,
            graphs=graphs,
            parity=parity,
            artifacts=[Artifact("onnxruntime", "fp32", {"encoder": ENCODER_FILE, "decoder": DECODER_FILE},
                                tool_versions=versions, device="cpu", parity=parity)],
            tool_versions=versions,
            created=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            platform=this_platform().to_dict(),
        )
        manifest.write(tmp)
    return manifest
