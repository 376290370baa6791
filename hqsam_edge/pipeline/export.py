"""``hqsam-edge export``: build the model, export its two graphs, verify them, write the artifact folder.

``export_artifacts(ExportSpec(...))`` writes ``encoder.onnx``,
``decoder.onnx`` and ``manifest.json`` (with the graphs' sizes and sha256)
into a temporary folder beside the target, verifies the graphs under ONNX Runtime against the PyTorch model
(``runtime.compare``), and only then renames the folder into place: a failure
leaves nothing behind.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .. import progress
from ..atomic import staged_folder
from ..errors import UsageError
from ..runtime.environment import require_onnxruntime
from ..export import contract as C
from ..export.manifest import Artifact, Manifest, provenance, tool_versions
from ..export.onnx_export import DECODER_FILE, ENCODER_FILE, MIN_OPSET

CHECK_IMAGE_HW = (768, 1024)  # the export check's picture (data.synthetic.demo_image)


@dataclass(frozen=True)
class ExportSpec:
    """Everything ``hqsam-edge export`` decides; the defaults are the real ones."""

    backbone: str = "vit_tiny"
    variant: str = "hq"
    checkpoint: str | None = None
    random_weights: bool = False
    out: str | None = None  # default build/<variant>_<backbone>
    opset: int = MIN_OPSET
    hq_token_only: bool = False  # the folder's defaults for calls that do not choose (the graphs return every mask)
    multimask_output: bool = False
    seed: int = 0  # random weights are reproducible: the torch backend can rebuild them
    simplify: bool = True
    verify: bool = True
    overwrite: bool = False
    with_processing: bool = False  # also preprocess.onnx / postprocess.onnx (resize, normalise, pad; upscale)

    @property
    def out_dir(self) -> Path:
        return Path(self.out or f"build/{self.variant}_{self.backbone}")


def check_spec(spec: ExportSpec) -> None:
    """Every option checked before anything heavy runs."""
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


def verify_export(model, folder: Path, *, multimask_output: bool, hq_token_only: bool) -> dict:
    """The fp32 graphs in ``folder`` under ONNX Runtime (CPU) vs ``model``, every choice of masks a call can
    make (the default one, ``multimask_output`` / ``hq_token_only``, under the plain prompt set names);
    ``ParityError`` on a miss."""
    from ..data.synthetic import demo_image
    from ..runtime.base import ModelInfo
    from ..runtime.compare import EXPORT_BOUNDS, check, compare, mask_choices
    from ..runtime.onnxruntime_backend import OnnxRuntimeBackend
    from ..runtime.torch_backend import TorchBackend

    info = ModelInfo(model.backbone, model.variant, model.image_size, multimask_output, hq_token_only)
    reference = TorchBackend(model, device="cpu", info=info)
    candidate = OnnxRuntimeBackend(info, folder / ENCODER_FILE, folder / DECODER_FILE, providers=["cpu"])
    figures = compare(reference, candidate, [demo_image(*CHECK_IMAGE_HW)], choices=mask_choices(model.is_hq))
    return check(figures, EXPORT_BOUNDS, "the exported ONNX graph")


def export_artifacts(spec: ExportSpec) -> Manifest:
    """Build the model, export, verify, and move the finished folder to ``spec.out_dir``."""
    import torch

    from ..model import build_model
    from ..digest import sha256_file
    from ..export.onnx_export import export_model

    check_spec(spec)
    if spec.verify:
        require_onnxruntime()  # the graphs are checked under it
    with staged_folder(spec.out_dir, "artifact folder") as tmp:
        if spec.random_weights:
            torch.manual_seed(spec.seed)
        with progress.stage("export: build the model"):
            model = build_model(spec.backbone, spec.variant, spec.checkpoint)
        graphs = export_model(model, tmp, opset=spec.opset, simplify=spec.simplify)
        parity = {}
        if spec.verify:
            with progress.stage("export: check the graphs against PyTorch (ONNX Runtime, CPU)"):
                parity = verify_export(model, tmp, multimask_output=spec.multimask_output,
                                       hq_token_only=spec.hq_token_only)
        versions = tool_versions()
        stamp = provenance()
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
            created=stamp.created,
            platform=stamp.platform,
            files={},
        )
        manifest.record_files(tmp, [ENCODER_FILE, DECODER_FILE])
        if spec.with_processing:
            _add_processing(manifest, tmp)
        manifest.write(tmp)
    return manifest


def summary(spec: ExportSpec, manifest: Manifest) -> str:
    """The command's last line: the folder, its files, and the check's worst error."""
    line = f"wrote {spec.out_dir}: {', '.join([*manifest.files, 'manifest.json'])}"
    decoder = manifest.parity.get("decoder", {})
    errors = [v for figures in decoder.values() for k, v in figures.items() if "rel" in k]
    if errors:
        line += f" (ONNX Runtime vs PyTorch: max relative logit error {max(errors):.1e})"
    return line


def _add_processing(manifest: Manifest, folder: Path) -> dict[str, dict]:
    from ..export.processing import export_processing

    with progress.stage("export: processing graphs (preprocess.onnx, postprocess.onnx)"):
        entries = export_processing(folder, manifest.is_hq)
    manifest.graphs.update(entries)
    manifest.record_files(folder, [e["file"] for e in entries.values()])
    return entries


def add_processing_graphs(folder: str | Path) -> dict[str, dict]:
    """Write ``preprocess.onnx`` / ``postprocess.onnx`` into an artifact folder and record them in its manifest
    (``graphs.preprocess``, ``graphs.postprocess``); again on a folder that has them, the current ones."""
    from ..export.manifest import read_manifest, remove_stale_temporaries

    manifest = read_manifest(folder)
    remove_stale_temporaries(folder)
    entries = _add_processing(manifest, Path(folder))
    manifest.write(folder)
    return entries
