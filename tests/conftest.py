"""Shared fixtures: checkpoints in the official formats with random weights.

No pretrained weights exist on the test machines, so the official builders
(``segment_anything_hq``, the test oracle) make the models, their weights are
perturbed with a fixed seed (so that zero-initialised parts such as TinyViT's
attention biases matter), and the state dict is saved exactly as the
published ``.pth`` files are.
"""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from hqsam_edge.model.random_weights import perturb_

# Reduced ViT configurations: 4 blocks, global attention at 1 and 3 (early feature = block 1).
REDUCED_DEPTH = 4
VIT_DIMS = {"vit_b": (768, 12), "vit_l": (1024, 16), "vit_h": (1280, 16)}


def randomize_(model: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Perturb every floating-point tensor of ``model`` in place, deterministically (``random_weights.perturb_``)."""
    return perturb_(model, seed)


def official_model(backbone: str, variant: str, depth: int | None = None) -> torch.nn.Module:
    """The reference model from ``segment_anything_hq`` (HQ) or its baseline builder (SAM)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import importlib

        mod = importlib.import_module(
            "segment_anything_hq.build_sam" if variant == "hq" else "segment_anything_hq.build_sam_baseline"
        )
    if backbone == "vit_tiny":
        return mod.build_sam_vit_t()
    dim, heads = VIT_DIMS[backbone]
    if depth is None:
        return {"vit_b": mod.build_sam_vit_b, "vit_l": mod.build_sam_vit_l, "vit_h": mod.build_sam_vit_h}[backbone]()
    return mod._build_sam(
        encoder_embed_dim=dim,
        encoder_depth=depth,
        encoder_num_heads=heads,
        encoder_global_attn_indexes=list(range(1, depth, 2)),
    )


def reduced_spec(backbone: str, depth: int | None):
    from hqsam_edge.model.build import backbone_spec

    spec = backbone_spec(backbone)
    return spec if depth is None else spec.reduced(depth)


def load_official(backbone: str, variant: str, path: Path, depth: int | None = None) -> torch.nn.Module:
    """The oracle with ``path`` loaded strictly; ``.eval()`` after loading refreshes TinyViT's bias cache."""
    model = official_model(backbone, variant, depth)
    model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True), strict=True)
    return model.eval()


def official_predictor(model: torch.nn.Module, image: np.ndarray):
    """``segment_anything_hq.SamPredictor`` with ``image`` set."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from segment_anything_hq import SamPredictor
    predictor = SamPredictor(model)
    predictor.set_image(image)
    return predictor


_CACHE: dict[tuple, Path] = {}


@pytest.fixture(scope="session")
def make_checkpoint(tmp_path_factory):
    """``make_checkpoint(backbone, variant, depth=None, seed=0)`` -> path of an official-format .pth."""

    def make(backbone: str, variant: str = "hq", depth: int | None = None, seed: int = 0) -> Path:
        key = (backbone, variant, depth, seed)
        if key not in _CACHE:
            model = randomize_(official_model(backbone, variant, depth), seed)
            path = tmp_path_factory.mktemp("ckpt") / f"{variant}_{backbone}_d{depth}_s{seed}.pth"
            torch.save(model.state_dict(), path)
            _CACHE[key] = path
        return _CACHE[key]

    return make


@pytest.fixture(scope="session")
def checkpoint_export(make_checkpoint, tmp_path_factory):
    """``checkpoint_export(variant)`` -> (folder, manifest): ``export`` of the checkpoint ``make_checkpoint("vit_tiny",
    variant)`` with its verification, as the command does it (20 to 45 s on a 2-core CPU), made once per session.
    Tests read it; one that changes a folder copies it first."""
    from hqsam_edge.pipeline.export import ExportSpec, export_artifacts

    made: dict[str, tuple] = {}

    def export(variant: str) -> tuple:
        if variant not in made:
            out = tmp_path_factory.mktemp("ckpt_export") / f"{variant}_vit_tiny"
            manifest = export_artifacts(ExportSpec(backbone="vit_tiny", variant=variant,
                                                   checkpoint=str(make_checkpoint("vit_tiny", variant)), out=str(out)))
            made[variant] = (out, manifest)
        return made[variant]

    return export


def external_data_graph(path: Path) -> Path:
    """A one-MatMul ONNX graph at ``path`` whose 4x4 weight of ones lives in ``<name>.data`` beside it."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    weight = numpy_helper.from_array(np.ones((4, 4), np.float32), "w")
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])], [weight])
    onnx.save(helper.make_model(graph), str(path), save_as_external_data=True, location=f"{path.name}.data",
              size_threshold=0)
    return path


def table_rows(output: str) -> list[list[str]]:
    """The cells of every row of the markdown tables in ``output`` (what a command prints off a terminal),
    header rows included, separator rows not."""
    rows = []
    for line in output.splitlines():
        if line.startswith("|") and not set(line) <= set("|-: "):
            rows.append([c.strip() for c in line.strip().strip("|").split("|")])
    return rows


def test_image(h: int = 480, w: int = 640, seed: int = 0) -> np.ndarray:
    """A deterministic RGB image with structure (see ``hqsam_edge.data.synthetic.demo_image``)."""
    from hqsam_edge.data.synthetic import demo_image

    return demo_image(h, w, seed)


test_image.__test__ = False  # not a test


@pytest.fixture(scope="session")
def _pristine_tiny(tmp_path_factory) -> Path:
    """The one export of Light HQ-SAM with random weights (unverified, for speed) that the session makes (about 20 s
    on a 2-core CPU). No test uses or changes it directly: ``tiny_folder`` and ``fresh_tiny_folder`` copy it."""
    from hqsam_edge.pipeline.export import ExportSpec, export_artifacts

    out = tmp_path_factory.mktemp("tiny_pristine") / "hq_vit_tiny"
    export_artifacts(ExportSpec(random_weights=True, out=str(out), verify=False))
    return out


@pytest.fixture(scope="session")
def tiny_folder(_pristine_tiny, tmp_path_factory):
    """An artifact folder of Light HQ-SAM with random weights (export unverified, for speed).
    Tests may add artifacts to it but must not depend on others' additions."""
    out = tmp_path_factory.mktemp("tiny") / "hq_vit_tiny"
    shutil.copytree(_pristine_tiny, out)
    return out


@pytest.fixture(scope="session")
def fresh_tiny_folder(_pristine_tiny):
    """``fresh_tiny_folder(dest)`` -> ``dest``: a folder of its own, as ``export --random-weights`` of Light HQ-SAM
    leaves it (fp32 graphs only, nobody's additions), copied in a moment instead of exported again."""

    def copy(dest: Path) -> Path:
        shutil.copytree(_pristine_tiny, dest)
        return dest

    return copy


def exif_rotated_jpeg(path: Path, stored_h: int = 30, stored_w: int = 40) -> Path:
    """A phone photo: a JPEG stored ``stored_w`` wide and ``stored_h`` high with EXIF orientation 6 ("rotate 90
    degrees clockwise to view"), so shown (and to be segmented) ``stored_h`` wide and ``stored_w`` high."""
    from PIL import Image

    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(test_image(stored_h, stored_w)).save(path, exif=exif.tobytes(), quality=95)
    return path
