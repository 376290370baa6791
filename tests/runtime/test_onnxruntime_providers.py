"""ONNX Runtime's execution providers: each graph's TensorRT-provider options, and which graph INT8 runs.

No GPU provider exists here, so the provider list is what a machine with onnxruntime-gpu and TensorRT would
report; sessions are not created with it (that is the GPU check's job), the options and choices are tested.
"""

from __future__ import annotations

import shutil

import pytest

from hqsam_edge.errors import ArtifactError, BackendUnavailableError
from hqsam_edge.export.manifest import Artifact, read_manifest
from hqsam_edge.export.profiles import Limits
from hqsam_edge.runtime import onnxruntime_backend as O
from hqsam_edge.runtime.open import open_backend

GPU_PROVIDERS = [O.TENSORRT, O.CUDA, O.CPU]


@pytest.fixture
def gpu_onnxruntime(monkeypatch):
    monkeypatch.setattr(O, "available_providers", lambda: list(GPU_PROVIDERS))


def test_resolve_providers(gpu_onnxruntime):
    assert O.resolve_providers(None) == GPU_PROVIDERS
    assert O.resolve_providers(["cuda"]) == [O.CUDA, O.CPU]
    assert O.resolve_providers(["cpu"]) == [O.CPU]


def test_resolve_providers_refuses_what_is_missing():
    with pytest.raises(BackendUnavailableError, match=r"no TensorrtExecutionProvider here .*onnxruntime-gpu"):
        O.resolve_providers(["tensorrt"])


def test_each_graph_gets_its_own_tensorrt_profile_and_cache(gpu_onnxruntime, tiny_folder):
    backend = open_backend(tiny_folder, backend="onnxruntime", providers=["tensorrt"])
    backend.limits = Limits(max_prompts=8, max_points=4, max_batch=2)
    (enc_name, enc), *rest = backend.session_providers("encoder")
    (dec_name, dec), *_ = backend.session_providers("decoder")
    assert enc_name == dec_name == O.TENSORRT and rest == [O.CPU]
    assert enc["trt_profile_min_shapes"] == "image:1x3x1024x1024"
    assert enc["trt_profile_max_shapes"] == "image:2x3x1024x1024"
    assert dec["trt_profile_max_shapes"] == ("point_coords:8x4x2,point_labels:8x4,mask_input:8x1x256x256,"
                                             "has_mask_input:8")
    assert "image" not in dec["trt_profile_max_shapes"] and "point_coords" not in enc["trt_profile_max_shapes"]
    assert enc["trt_engine_cache_path"] != dec["trt_engine_cache_path"]
    assert not enc["trt_fp16_enable"] and not enc["trt_int8_enable"]


def _with_int8(folder, tmp_path, tensorrt_layout: bool):
    out = tmp_path / "f"
    shutil.copytree(folder, out)
    manifest = read_manifest(out)
    for backend in ("onnxruntime", "tensorrt") if tensorrt_layout else ("onnxruntime",):
        name = f"encoder.int8.{backend}.onnx"
        shutil.copy(out / "encoder.onnx", out / name)  # stands for the Q/DQ graph: only names matter here
        manifest.add(Artifact(backend, "int8", {"encoder": name, "decoder": "decoder.onnx"}))
        manifest.record_files(out, [name])
    manifest.write(out)
    return out


def test_int8_under_tensorrt_runs_the_tensorrt_layout(gpu_onnxruntime, tiny_folder, tmp_path):
    folder = _with_int8(tiny_folder, tmp_path, tensorrt_layout=True)
    backend = open_backend(folder, backend="onnxruntime", precision="int8", providers=["tensorrt"])
    assert backend.paths["encoder"].name == "encoder.int8.tensorrt.onnx"
    (_, enc), *_ = backend.session_providers("encoder")
    (_, dec), *_ = backend.session_providers("decoder")
    assert enc["trt_int8_enable"] and enc["trt_fp16_enable"]
    assert not dec["trt_int8_enable"] and dec["trt_fp16_enable"]  # the decoder has no Q/DQ nodes
    cpu = open_backend(folder, backend="onnxruntime", precision="int8", providers=["cpu"])
    assert cpu.paths["encoder"].name == "encoder.int8.onnxruntime.onnx"


def test_int8_without_the_tensorrt_layout(gpu_onnxruntime, tiny_folder, tmp_path):
    folder = _with_int8(tiny_folder, tmp_path, tensorrt_layout=False)
    with pytest.raises(ArtifactError, match="--precision int8 --flavour tensorrt"):
        open_backend(folder, backend="onnxruntime", precision="int8", providers=["tensorrt"])
    auto = open_backend(folder, backend="onnxruntime", precision="int8")  # TensorRT left out, not refused
    assert auto.requested_providers == [O.CUDA, O.CPU]
    assert auto.paths["encoder"].name == "encoder.int8.onnxruntime.onnx"
