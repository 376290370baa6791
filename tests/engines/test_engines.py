"""TensorRT plans and trtexec lines (everywhere); engine build and pycuda runtime (GPU + TensorRT only)."""

from __future__ import annotations

import numpy as np
import pytest
from typer.testing import CliRunner

from hqsam_edge.cli import app
from hqsam_edge.engines.builder import generation_of
from hqsam_edge.export.profiles import decoder_profile
from hqsam_edge.errors import BackendUnavailableError
from hqsam_edge.pipeline.build import BuildSpec, build, trtexec_lines
from hqsam_edge.runtime.environment import tensorrt_status

TRT = tensorrt_status()
needs_trt = pytest.mark.skipif(not TRT.usable, reason=f"TensorRT + pycuda + a GPU are needed: {TRT.detail}")


@pytest.fixture(scope="module")
def folder(tiny_folder):
    return tiny_folder


def test_generations():
    assert [generation_of(v) for v in ("8.5.2", "8.6.1.6", "10.3.0", "10.13.0", "11.1.0")] == ["8", "8", "10", "10", "11"]
    with pytest.raises(BackendUnavailableError, match="too old"):
        generation_of("7.1.3")


def test_decoder_profile_from_contract():
    p = decoder_profile(max_prompts=16, max_points=8)
    assert p.shapes["point_coords"] == ((1, 1, 2), (1, 2, 2), (16, 8, 2))
    assert p.shapes["mask_input"][2] == (16, 1, 256, 256) and p.shapes["has_mask_input"][2] == (16,)


@pytest.mark.parametrize("generation", ["8", "10", "11"])
@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
def test_print_trtexec(folder, generation, precision):
    lines = trtexec_lines(BuildSpec(str(folder), backend="tensorrt", precision=precision, max_prompts=16,
                                            max_points=8, dla_core=0 if generation == "8" else None), generation)
    assert len(lines) == 2
    enc, dec = lines
    assert enc.startswith("trtexec --onnx=") and f"encoder.{precision}.engine" in enc
    assert "--maxShapes=point_coords:16x8x2,point_labels:16x8,mask_input:16x1x256x256,has_mask_input:16" in dec
    assert "--memPoolSize=workspace:4096M" in enc and "--timingCacheFile=" in enc
    flags = {"fp32": [], "fp16": ["--fp16"], "int8": ["--int8", "--fp16"]}[precision]
    if generation == "11":
        assert "--fp16" not in enc and "--int8" not in enc
        if precision != "fp32":
            assert ("encoder.int8.tensorrt.onnx" if precision == "int8" else "encoder.fp16.onnx") in enc
            assert "decoder.fp16.onnx" in dec
    else:
        assert all(f in enc.split() for f in flags)
        if precision == "int8":
            assert "encoder.int8.tensorrt.onnx" in enc and "--onnx=" in dec and "decoder.onnx" in dec
        else:
            assert "encoder.onnx" in enc
    if generation == "8":
        assert "--useDLACore=0 --allowGPUFallback" in enc


def test_cli_print_trtexec_and_missing_tensorrt(folder):
    runner = CliRunner()
    result = runner.invoke(app, ["build", str(folder), "--backend", "tensorrt", "--precision", "fp16",
                                 "--print-trtexec", "10"])
    assert result.exit_code == 0 and result.stdout.count("trtexec --onnx=") == 2
    if not TRT.usable:
        result = runner.invoke(app, ["build", str(folder), "--backend", "tensorrt", "--precision", "fp16"])
        assert result.exit_code != 0 and result.stderr.startswith("error: --backend tensorrt is not usable here")
        assert len(result.stderr.strip().splitlines()) == 1 and "pip install" in result.stderr
        result = runner.invoke(app, ["predict", str(folder), "--backend", "tensorrt", "--image", "x.png", "--box",
                                     "1,1,5,5", "--out", "m.png"])
        assert result.exit_code != 0 and "tensorrt is not usable" in result.stderr


@needs_trt
@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
def test_build_and_run_engines(folder, precision):
    from hqsam_edge import Predictor
    from tests.conftest import test_image

    artifact = build(BuildSpec(str(folder), backend="tensorrt", precision=precision, calib_limit=4,
                                       heldout=1, max_prompts=8, max_points=4))
    assert (folder / artifact.files["encoder"]).exists() and artifact.extra["compute_capability"]
    assert artifact.parity["mean_mask_iou"] >= {"fp32": 0.999, "fp16": 0.99, "int8": 0.97}[precision]
    trt_p = Predictor.from_artifacts(folder, backend="tensorrt", precision=precision)
    ort_p = Predictor.from_artifacts(folder, backend="onnxruntime", precision="fp32")
    image = test_image()
    for p in (trt_p, ort_p):
        p.set_image(image)
    boxes = np.array([[100, 80, 500, 400], [10, 10, 200, 200]])
    m1 = trt_p.predict_boxes(boxes)[0]
    m2 = ort_p.predict_boxes(boxes)[0]
    iou = (m1 & m2).sum() / max((m1 | m2).sum(), 1)
    assert iou >= 0.97
