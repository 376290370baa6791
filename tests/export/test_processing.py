"""The processing graphs (preprocess.onnx, postprocess.onnx) against the Python runtime's own processing.

preprocess -> encoder -> decoder -> postprocess under ONNX Runtime, no code between them, must give
Predictor's masks on five kinds of image, and for every choice of masks (``multimask_output``,
``hq_token_only``) of HQ-SAM and plain SAM; the resize is PIL's algorithm in float32, so a resized pixel may
differ from PIL's by one level where its exact value is within ~1e-4 of a rounding boundary: counted here, and
masks may then differ only where the logit is within rounding of 0. The graphs' tensors are the contract's.
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
from hqsam_edge.export.manifest import read_manifest, tensor_entries
from hqsam_edge.export.processing import POSTPROCESS_FILE, PREPROCESS_FILE, postprocess_graph
from hqsam_edge.pipeline.export import ExportSpec, add_processing_graphs, export_artifacts
from hqsam_edge.pipeline.verify import verify_folder
from hqsam_edge.runtime.selection import select_masks

ROOT = Path(__file__).resolve().parents[2]
SIZES = {"portrait": (480, 320), "landscape": (300, 400), "tiny": (7, 5), "photo 4000x3000": (3000, 4000)}
CHOICES = [(False, False), (True, False), (False, True), (True, True)]  # (multimask_output, hq_token_only)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """``export --with-processing``, its stage lines checked (test_export_reports_its_stages)."""
    out = tmp_path_factory.mktemp("processing") / "hq_vit_tiny"
    log = io.StringIO()
    with progress.reporting(progress.Reporter(stream=log, interactive=False)):
        export_artifacts(ExportSpec(random_weights=True, out=str(out), verify=False, with_processing=True))
    (out.parent / "export.log").write_text(log.getvalue())
    return out


@pytest.fixture(scope="module")
def sam_folder(tmp_path_factory):
    """MobileSAM (plain SAM, 4 mask tokens) with the processing graphs."""
    out = tmp_path_factory.mktemp("processing") / "sam_vit_tiny"
    export_artifacts(ExportSpec(variant="sam", random_weights=True, out=str(out), verify=False, with_processing=True))
    return out


def test_export_reports_its_stages_and_records_the_processing_graphs(folder):
    lines = (folder.parent / "export.log").read_text().splitlines()
    stage = re.compile(r"^\[ *(\d+\.\d) s\] export: (.+) \((\d+\.\d) s\)$")
    stages = [m.groups() for m in map(stage.match, lines) if m]
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


@pytest.mark.parametrize("is_hq", [True, False], ids=["hq", "sam"])
def test_the_graphs_tensors_are_the_contracts(folder, sam_folder, is_hq):
    """Names, dtypes and shapes of both graphs and their manifest entries, from ``contract`` alone; the sizes
    are the Triton model's too (one dtype for ``original_size`` everywhere)."""
    from hqsam_edge.serve import triton_model

    path = folder if is_hq else sam_folder
    manifest = read_manifest(path)
    want = {"preprocess": (C.preprocess_inputs(), C.preprocess_outputs()),
            "postprocess": (C.postprocess_inputs(is_hq), C.postprocess_outputs(is_hq))}
    for graph, (inputs, outputs) in want.items():
        assert manifest.graphs[graph]["inputs"] == tensor_entries(inputs)
        assert manifest.graphs[graph]["outputs"] == tensor_entries(outputs)
        session = _session(path / manifest.graphs[graph]["file"])
        for got, specs in ((session.get_inputs(), inputs), (session.get_outputs(), outputs)):
            assert [(t.name, t.type, list(t.shape)) for t in got] == [
                (s.name, _ort_type(s.dtype), list(s.shape)) for s in specs]
    assert [s.name for s in C.postprocess_inputs(is_hq)[:2]] == [s.name for s in C.decoder_outputs()]
    assert triton_model.ORIGINAL_SIZE.dtype is C.ORIGINAL_SIZE.dtype is np.int32


def _ort_type(dtype) -> str:
    return {np.float32: "tensor(float)", np.int32: "tensor(int32)", np.uint8: "tensor(uint8)",
            np.bool_: "tensor(bool)"}[dtype]


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


def _graph_masks(folder, image, box, **choice):
    """The example's masks ``[M,H,W]`` and scores ``[M]``: the four graphs chained, nothing between them."""
    sys.path.insert(0, str(ROOT / "examples"))
    try:
        import onnx_graphs
    finally:
        sys.path.pop(0)
    return onnx_graphs.segment(folder, image, box, **choice)


def _assert_same_masks(masks, logits):
    """Masks ``[..., H, W]`` equal to ``logits > 0`` but where a logit is within rounding of 0."""
    assert masks.shape == logits.shape and masks.dtype == np.bool_
    differ = masks != (logits > 0)
    tolerance = 1e-3 * np.abs(logits).max()
    assert not (differ & (np.abs(logits) > tolerance)).any(), f"{int(differ.sum())} pixels differ"


@pytest.mark.parametrize("name,image", list(_images()), ids=[n for n, _ in _images()])
def test_four_graphs_give_predictors_masks(folder, name, image):
    h, w = image.shape[:2]
    box = [0.1 * w, 0.15 * h, 0.8 * w, 0.9 * h]
    masks, _ = _graph_masks(folder, image, box)
    with Predictor.from_artifacts(folder, backend="onnxruntime") as predictor:
        predictor.set_image(image)
        logits, _, _ = predictor.predict(box=np.array(box), return_logits=True)
    assert masks.shape == (1, h, w)
    _assert_same_masks(masks, logits)


@pytest.mark.parametrize("is_hq", [True, False], ids=["hq", "sam"])
@pytest.mark.parametrize(("multimask", "hq_only"), CHOICES, ids=["single", "multimask", "hq-only", "multimask-hq-only"])
def test_every_choice_gives_predictors_masks(folder, sam_folder, is_hq, multimask, hq_only):
    path, image = (folder if is_hq else sam_folder), demo_image(300, 400, seed=6)
    box = [40.0, 45.0, 320.0, 270.0]
    masks, scores = _graph_masks(path, image, box, multimask_output=multimask, hq_token_only=hq_only)
    with Predictor.from_artifacts(path, backend="onnxruntime") as predictor:
        predictor.set_image(image)
        logits, want, _ = predictor.predict(box=np.array(box), multimask_output=multimask, hq_token_only=hq_only,
                                            return_logits=True)
    assert masks.shape == (C.num_masks(is_hq, multimask), 300, 400)
    _assert_same_masks(masks, logits)
    np.testing.assert_allclose(scores, want, rtol=0, atol=1e-5)


@pytest.mark.parametrize("is_hq", [True, False], ids=["hq", "sam"])
@pytest.mark.parametrize(("multimask", "hq_only"), CHOICES, ids=["single", "multimask", "hq-only", "multimask-hq-only"])
def test_postprocess_chooses_as_the_runtime(is_hq, multimask, hq_only):
    """On the decoder's outputs alone, ties of IoU included: the scores of ``selection.select_masks`` exactly, its
    masks upscaled as ``Predictor`` does."""
    rng = np.random.default_rng(1)
    low_res = rng.normal(size=(5, C.mask_tokens(is_hq), C.LOW_RES_SIZE, C.LOW_RES_SIZE)).astype(np.float32)
    iou = rng.uniform(size=(5, C.SAM_MASK_TOKENS)).astype(np.float32)
    iou[0, 1:] = 0.5  # a tie: the first of equal scores, as torch.max
    iou[1, 2] = iou[1, 3] = 0.99
    iou[2, 3] = 2.0  # the last of the three
    sizes = {C.INPUT_SIZE.name: np.array([768, 1024], np.int32), C.ORIGINAL_SIZE.name: np.array([300, 400], np.int32)}
    choice = {C.MULTIMASK_OUTPUT.name: np.array(multimask), C.HQ_TOKEN_ONLY.name: np.array(hq_only)}
    feeds = {C.LOW_RES_MASKS.name: low_res, C.IOU_PREDICTIONS.name: iou, **sizes, **choice}
    session = ort.InferenceSession(postprocess_graph(is_hq).SerializeToString(), providers=["CPUExecutionProvider"])
    masks, scores = session.run(None, {i.name: feeds[i.name] for i in session.get_inputs()})
    chosen, want = select_masks(low_res, iou, is_hq=is_hq, multimask_output=multimask, hq_token_only=hq_only)
    np.testing.assert_array_equal(scores, want)
    _assert_same_masks(masks, T.postprocess_masks(chosen, (768, 1024), (300, 400)))


def test_the_example_runs_with_onnxruntime_alone(folder, tmp_path):
    image = demo_image(240, 320, seed=5)
    Image.fromarray(image).save(tmp_path / "scene.png")
    code = ("import sys; sys.modules['hqsam_edge'] = None; sys.argv = sys.argv[1:]; "  # the package is off limits
            "import runpy; runpy.run_path(sys.argv[0], run_name='__main__')")
    done = subprocess.run([sys.executable, "-c", code, str(ROOT / "examples" / "onnx_graphs.py"), str(folder),
                           "--image", str(tmp_path / "scene.png"), "--box", "30,20,250,200", "--out",
                           str(tmp_path / "mask.png")], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    written = np.asarray(Image.open(tmp_path / "mask.png")) > 0
    np.testing.assert_array_equal(written, _graph_masks(folder, image, [30, 20, 250, 200])[0][0])


@pytest.mark.parametrize("is_hq", [True, False], ids=["hq", "sam"])
def test_polygraphy_accepts_the_processing_graphs(folder, sam_folder, is_hq):
    poly = shutil.which("polygraphy") or str(Path(sys.executable).parent / "polygraphy")
    for graph in (PREPROCESS_FILE, POSTPROCESS_FILE):
        path = (folder if is_hq else sam_folder) / graph
        done = subprocess.run([poly, "inspect", "model", str(path)], capture_output=True, text=True)
        out = done.stdout + done.stderr
        assert done.returncode == 0 and f"Name: {graph.removesuffix('.onnx')}" in out, out[-1000:]
