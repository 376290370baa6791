"""The processing graphs (preprocess.onnx, postprocess.onnx) against the Python runtime's own processing.

preprocess -> encoder -> decoder -> postprocess under ONNX Runtime must give Predictor's masks on five kinds
of image; the resize is PIL's algorithm in float32, so a resized pixel may differ from PIL's by one level
where its exact value is within ~1e-4 of a rounding boundary: counted here, and masks may then differ only
where the logit is within rounding of 0.
"""

from __future__ import annotations

import io
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from PIL import Image

from hqsam_edge import Predictor, progress
from hqsam_edge.data import transforms as T
from hqsam_edge.data.synthetic import demo_image
from hqsam_edge.export import contract as C
from hqsam_edge.export.processing import POSTPROCESS_FILE, PREPROCESS_FILE
from hqsam_edge.export.manifest import read_manifest, tensor_entries
from hqsam_edge.pipeline.export import ExportSpec, add_processing_graphs, export_artifacts
from hqsam_edge.pipeline.verify import verify_folder

ROOT = Path(__file__).resolve().parents[2]
SIZES = {"portrait": (480, 320), "landscape": (300, 400), "tiny": (7, 5), "photo 4000x3000": (3000, 4000)}


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """``export --with-processing``, its stage lines checked (test_export_reports_its_stages)."""
    out = tmp_path_factory.mktemp("processing") / "hq_vit_tiny"
    log = io.StringIO()
    with progress.reporting(progress.Reporter(stream=log, interactive=False)):
        export_artifacts(ExportSpec(random_weights=True, out=str(out), verify=False, with_processing=True))
    (out.parent / "export.log").write_text(log.getvalue())
    return out


def test_export_reports_its_stages_and_records_the_processing_graphs(folder):
    lines = (folder.parent / "export.log").read_text().splitlines()
    stages = [m.groups() for m in map(re.compile(r"^\[ *(\d+\.\d) s\] export: (.+) \((\d+\.\d) s\)$").match, lines) if m]
    assert [name for _, name, _ in stages] == [
        "build the model", "trace the encoder", "trace the decoder", "check and simplify encoder.onnx",
        "check and simplify decoder.onnx", "processing graphs (preprocess.onnx, postprocess.onnx)"], lines
    elapsed = [float(t) for t, _, _ in stages]
    assert elapsed == sorted(elapsed) and elapsed[-1] >= sum(float(s) for _, _, s in stages) - 0.5
    manifest = read_manifest(folder)
    assert {name: g["file"] for name, g in manifest.graphs.items() if name.endswith("process")} == {
        "preprocess": PREPROCESS_FILE, "postprocess": POSTPROCESS_FILE}
    assert list(manifest.files) == ["encoder.onnx", "decoder.onnx", PREPROCESS_FILE, POSTPROCESS_FILE]
    assert verify_folder(folder).problems == []
    assert manifest.graphs["preprocess"]["outputs"] == tensor_entries(C.preprocess_outputs())


def test_processing_graphs_added_to_an_exported_folder(tiny_folder, folder, tmp_path):
    out = tmp_path / "hq_vit_tiny"
    shutil.copytree(tiny_folder, out)
    add_processing_graphs(out)
    assert read_manifest(out).graphs["preprocess"] == read_manifest(folder).graphs["preprocess"]
    assert (out / PREPROCESS_FILE).read_bytes() == (folder / PREPROCESS_FILE).read_bytes()
    assert verify_folder(out).problems == []


def _session(path):
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def _images():
    for name, (h, w) in SIZES.items():
        yield name, demo_image(h, w, seed=3) if min(h, w) > 16 else np.random.default_rng(3).integers(
            0, 256, (h, w, 3), dtype=np.uint8)
    gray = Image.fromarray(demo_image(360, 500, seed=4)).convert("L")  # a grayscale file, read as RGB
    yield "grayscale", np.asarray(gray.convert("RGB"))


@pytest.mark.parametrize("name,image", list(_images()), ids=[n for n, _ in _images()])
def test_preprocess_is_pils_resize(folder, name, image):
    tensor, original_size, input_size = _session(folder / PREPROCESS_FILE).run(None, {"image_rgb": image})
    ref, ref_input_size = T.preprocess_image(image)
    assert tuple(original_size) == image.shape[:2] and tuple(input_size) == ref_input_size
    assert original_size.dtype == C.ORIGINAL_SIZE.dtype == np.int32 == input_size.dtype  # TensorRT's shape tensors
    levels = np.abs(tensor - ref) * np.array(T.PIXEL_STD, np.float32).reshape(1, 3, 1, 1)
    assert levels.max() <= 1.0 + 1e-4  # at most one uint8 level, and only rarely:
    assert (levels > 0.01).mean() <= 1e-3, f"{(levels > 0.01).mean():.2e} of the values differ"


def _graph_masks(folder, image, box):
    sys.path.insert(0, str(ROOT / "examples"))
    try:
        import onnx_pipeline
    finally:
        sys.path.pop(0)
    return onnx_pipeline.segment(folder, image, box)


@pytest.mark.parametrize("name,image", list(_images()), ids=[n for n, _ in _images()])
def test_four_graphs_give_predictors_masks(folder, name, image):
    h, w = image.shape[:2]
    box = [0.1 * w, 0.15 * h, 0.8 * w, 0.9 * h]
    masks = _graph_masks(folder, image, box)
    with Predictor.from_artifacts(folder, backend="onnxruntime") as predictor:
        predictor.set_image(image)
        logits, _, _ = predictor.predict(box=np.array(box), return_logits=True)
    assert masks.shape == (h, w) and masks.dtype == np.bool_
    differ = masks != (logits[0] > 0)
    tolerance = 1e-3 * np.abs(logits).max()
    assert not (differ & (np.abs(logits[0]) > tolerance)).any(), f"{int(differ.sum())} pixels differ"


def test_the_example_runs_with_onnxruntime_alone(folder, tmp_path):
    image = demo_image(240, 320, seed=5)
    Image.fromarray(image).save(tmp_path / "scene.png")
    code = ("import sys; sys.modules['hqsam_edge'] = None; sys.argv = sys.argv[1:]; "  # the package is off limits
            "import runpy; runpy.run_path(sys.argv[0], run_name='__main__')")
    done = subprocess.run([sys.executable, "-c", code, str(ROOT / "examples" / "onnx_pipeline.py"), str(folder),
                           "--image", str(tmp_path / "scene.png"), "--box", "30,20,250,200", "--out",
                           str(tmp_path / "mask.png")], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    written = np.asarray(Image.open(tmp_path / "mask.png")) > 0
    np.testing.assert_array_equal(written, _graph_masks(folder, image, [30, 20, 250, 200]))


def test_polygraphy_accepts_the_processing_graphs(folder):
    poly = shutil.which("polygraphy") or str(Path(sys.executable).parent / "polygraphy")
    for graph in (PREPROCESS_FILE, POSTPROCESS_FILE):
        done = subprocess.run([poly, "inspect", "model", str(folder / graph)], capture_output=True, text=True)
        out = done.stdout + done.stderr
        assert done.returncode == 0 and f"Name: {graph.removesuffix('.onnx')}" in out, out[-1000:]
