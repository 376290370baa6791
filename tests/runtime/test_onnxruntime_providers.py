"""ONNX Runtime's execution providers: each graph's TensorRT-provider options, which graph INT8 runs, and that a
request for a provider runs on it or says plainly that it does not.

No GPU provider exists here: every test runs against ``recording_onnxruntime`` (onnxruntime-gpu's provider
handling modelled on the CPU session), installed explicitly, so a machine with onnxruntime-gpu and TensorRT gives
the same answers.
"""

from __future__ import annotations

import shutil
import warnings

import pytest

from hqsam_edge.errors import ArtifactError, BackendUnavailableError, UsageError
from hqsam_edge.export.manifest import Artifact, read_manifest
from hqsam_edge.export.profiles import Limits
from hqsam_edge.runtime import onnxruntime_backend as O
from hqsam_edge.runtime.open import open_backend
from tests.runtime import recording_onnxruntime as RO

GPU_PROVIDERS = [O.TENSORRT, O.CUDA, O.CPU]


@pytest.fixture
def gpu_onnxruntime(monkeypatch):
    """onnxruntime-gpu with TensorRT 10 importable: every provider compiled in and loading."""
    return RO.install(monkeypatch)


@pytest.fixture
def cpu_onnxruntime(monkeypatch):
    """The CPU package, whatever this machine has installed."""
    return RO.install(monkeypatch, compiled_in=[O.CPU], tensorrt_version=None)


@pytest.fixture
def folder(tiny_folder, tmp_path):
    out = tmp_path / "hq_vit_tiny"
    shutil.copytree(tiny_folder, out)
    return out


def test_resolve_providers(gpu_onnxruntime):
    assert O.resolve_providers(None) == GPU_PROVIDERS
    assert O.resolve_providers(["cuda"]) == [O.CUDA, O.CPU]
    assert O.resolve_providers(["cpu"]) == [O.CPU]
    assert O.resolve_providers(["tensorrt"], "fp16") == GPU_PROVIDERS  # TensorRT, then CUDA, then the CPU
    assert O.resolve_providers(None, "fp32") == [O.CUDA, O.CPU]  # fp32 under TensorRT is TF32: left out


def test_resolve_providers_refuses_what_is_missing(cpu_onnxruntime):
    with pytest.raises(BackendUnavailableError, match=r"no TensorrtExecutionProvider here .*onnxruntime-gpu"):
        O.resolve_providers(["tensorrt"])


def test_tensorrt_is_available_only_when_its_libraries_load(gpu_onnxruntime, monkeypatch):
    """Compiled in is not enough: pip TensorRT's libraries load only with `import tensorrt`."""
    RO.install(monkeypatch, tensorrt_version=None)
    with pytest.raises(BackendUnavailableError, match="TensorRT provider needs TensorRT's libraries.*not installed"):
        O.resolve_providers(["tensorrt"], "fp16")
    assert O.resolve_providers(None, "fp16") == [O.CUDA, O.CPU]
    RO.install(monkeypatch, tensorrt_version="8.6.1")  # no strongly typed networks
    with pytest.raises(UsageError, match="strongly typed only on TensorRT 9"):
        O.resolve_providers(["tensorrt"], "fp16")
    assert O.resolve_providers(None, "fp16") == [O.CUDA, O.CPU]


def test_fp32_under_tensorrt_is_refused_and_cuda_is_fp32(gpu_onnxruntime, folder):
    with pytest.raises(UsageError, match="would be TF32"):
        open_backend(folder, backend="onnxruntime", providers=["tensorrt"])
    with open_backend(folder, backend="onnxruntime", precision="fp32") as backend:
        assert backend.providers == {"encoder": [O.CUDA, O.CPU], "decoder": [O.CUDA, O.CPU]}
    assert all(o.options[O.CUDA] == {"use_tf32": "0"} for o in RO.OPENED)


def test_each_graph_gets_its_own_tensorrt_profile_and_cache(gpu_onnxruntime, folder):
    _with_precision_graphs(folder, (("onnxruntime", "fp16"),))
    backend = open_backend(folder, backend="onnxruntime", precision="fp16", providers=["tensorrt"])
    backend.limits = Limits(max_prompts=8, max_points=4, max_batch=2)
    (enc_name, enc), *rest = backend.session_providers("encoder")
    (dec_name, dec), *_ = backend.session_providers("decoder")
    assert enc_name == dec_name == O.TENSORRT and rest == [(O.CUDA, {"use_tf32": "0"}), O.CPU]
    assert enc["trt_profile_min_shapes"] == "image:1x3x1024x1024"
    assert enc["trt_profile_max_shapes"] == "image:2x3x1024x1024"
    assert dec["trt_profile_max_shapes"] == ("point_coords:8x4x2,point_labels:8x4,mask_input:8x1x256x256,"
                                             "has_mask_input:8")
    assert "image" not in dec["trt_profile_max_shapes"] and "point_coords" not in enc["trt_profile_max_shapes"]
    assert enc["trt_engine_cache_path"] != dec["trt_engine_cache_path"]
    assert not enc["trt_fp16_enable"] and not enc["trt_int8_enable"]


def _with_precision_graphs(folder, precisions: tuple[str, ...]):
    """Artifacts that stand for the precision graphs (copies of the fp32 ones: only names and files matter here)."""
    manifest = read_manifest(folder)
    for backend, precision in precisions:
        if precision == "fp16":
            files = {"encoder": "encoder.fp16.onnx", "decoder": "decoder.fp16.onnx"}
        else:
            files = {"encoder": f"encoder.int8.{backend}.onnx", "decoder": "decoder.onnx"}
        for graph, name in files.items():
            if name != "decoder.onnx":
                shutil.copy(folder / f"{graph}.onnx", folder / name)
        manifest.add(Artifact(backend, precision, files))
        manifest.record_files(folder, [n for n in files.values() if n != "decoder.onnx"])
    manifest.write(folder)
    return folder


def test_a_fresh_folder_runs_on_tensorrt(gpu_onnxruntime, folder):
    """The provider makes its cache folders one level at a time: they are made first, and both graphs run on
    TensorRT with the FP16 graphs and no precision flag (strongly typed: the FP32 islands hold)."""
    _with_precision_graphs(folder, (("onnxruntime", "fp16"),))
    assert not (folder / O.TENSORRT_CACHE).exists()
    with open_backend(folder, backend="onnxruntime", precision="fp16", providers=["tensorrt"]) as backend:
        assert backend.providers["encoder"][0] == backend.providers["decoder"][0] == O.TENSORRT
        assert backend.device == "tensorrt" and backend.max_prompts == Limits().max_prompts
    for opened in RO.OPENED:
        options = opened.options[O.TENSORRT]
        assert opened.path.endswith(".fp16.onnx") and opened.ran[0] == O.TENSORRT
        assert options["trt_fp16_enable"] is False and options["trt_int8_enable"] is False
        assert "trt_layer_norm_fp32_fallback" not in options
    assert all((folder / O.TENSORRT_CACHE / f"{graph}.fp16").is_dir() for graph in ("encoder", "decoder"))


def test_the_stand_in_falls_back_as_onnxruntime_does(gpu_onnxruntime, folder, capsys):
    """Without its cache folder's parent, the provider's constructor throws and ONNX Runtime retries on CUDA: the
    stand-in does what the backend guards against."""
    import onnxruntime as ort

    path = folder / "missing" / "encoder.fp16"
    session = ort.InferenceSession(str(folder / "encoder.onnx"), providers=[
        (O.TENSORRT, {"trt_engine_cache_enable": True, "trt_engine_cache_path": str(path)}), O.CUDA, O.CPU])
    assert session.get_providers() == [O.CUDA, O.CPU] and "Falling back to" in capsys.readouterr().out


def test_a_tensorrt_request_that_does_not_start_is_refused(gpu_onnxruntime, folder, monkeypatch):
    """ONNX Runtime drops a provider it cannot create and runs on the rest: an explicit request says so, an automatic
    choice moves on to CUDA."""
    _with_precision_graphs(folder, (("onnxruntime", "fp16"),))
    monkeypatch.setattr(O, "tensorrt_libraries", lambda: (True, "10.13.0"))  # the module imports, libnvinfer does not
    gpu_onnxruntime.tensorrt_loads = False
    backend = open_backend(folder, backend="onnxruntime", precision="fp16", providers=["tensorrt"])
    with pytest.raises(BackendUnavailableError, match=r"TensorrtExecutionProvider did not start \(the encoder on "
                                                      r"CUDAExecutionProvider"):
        backend.activate()
    with open_backend(folder, backend="onnxruntime", precision="fp16") as auto:
        assert auto.device == "cuda" and auto.max_prompts is None  # no TensorRT profile bounds
    gpu_onnxruntime.cuda_loads = False
    with pytest.raises(BackendUnavailableError, match="CUDAExecutionProvider did not start"):
        open_backend(folder, backend="onnxruntime", precision="fp16", providers=["cuda"]).activate()


def test_int8_under_tensorrt_runs_the_tensorrt_layout(gpu_onnxruntime, folder):
    _with_precision_graphs(folder, (("onnxruntime", "fp16"), ("onnxruntime", "int8"), ("tensorrt", "int8")))
    backend = open_backend(folder, backend="onnxruntime", precision="int8", providers=["tensorrt"])
    assert backend.tensorrt_paths["encoder"].name == "encoder.int8.tensorrt.onnx"
    assert backend.tensorrt_paths["decoder"].name == "decoder.fp16.onnx"  # strongly typed: the FP16 decoder
    with backend:
        assert [o.path.rsplit("/", 1)[1] for o in RO.OPENED] == ["encoder.int8.tensorrt.onnx", "decoder.fp16.onnx"]
    (_, enc), *_ = backend.session_providers("encoder")
    assert not enc["trt_int8_enable"] and not enc["trt_fp16_enable"]  # the Q/DQ graph carries its precision
    cpu = open_backend(folder, backend="onnxruntime", precision="int8", providers=["cpu"])
    assert cpu.paths["encoder"].name == "encoder.int8.onnxruntime.onnx"


def test_int8_layout_follows_what_runs(gpu_onnxruntime, folder, monkeypatch):
    """Automatic choice: the TensorRT layout only once TensorRT has started; otherwise the ONNX Runtime layout on
    CUDA."""
    _with_precision_graphs(folder, (("onnxruntime", "int8"), ("tensorrt", "int8")))
    monkeypatch.setattr(O, "tensorrt_libraries", lambda: (True, "10.13.0"))
    gpu_onnxruntime.tensorrt_loads = False
    with open_backend(folder, backend="onnxruntime", precision="int8") as backend:
        assert backend.device == "cuda"
    opened = [(o.path.rsplit("/", 1)[1], o.providers[0]) for o in RO.OPENED]
    assert opened[0] == ("encoder.int8.tensorrt.onnx", O.TENSORRT)  # tried, TensorRT did not start
    assert opened[-2:] == [("encoder.int8.onnxruntime.onnx", O.CUDA), ("decoder.onnx", O.CUDA)]


def test_int8_without_the_tensorrt_layout(gpu_onnxruntime, folder):
    _with_precision_graphs(folder, (("onnxruntime", "int8"),))
    with pytest.raises(ArtifactError, match="--precision int8 --graphs-for tensorrt"):
        open_backend(folder, backend="onnxruntime", precision="int8", providers=["tensorrt"])
    auto = open_backend(folder, backend="onnxruntime", precision="int8")  # TensorRT left out, not refused
    assert auto.wanted_providers() == [O.CUDA, O.CPU]
    assert auto.paths["encoder"].name == "encoder.int8.onnxruntime.onnx"


def _dynamic(folder):
    """Mark the folder's ONNX Runtime INT8 graph as ranged per call (``build``'s default INT8 recipe)."""
    from dataclasses import replace

    from hqsam_edge.export.records import Calibration

    manifest = read_manifest(folder)
    int8 = manifest.find("onnxruntime", "int8")
    manifest.add(replace(int8, calibration=Calibration("dynamic", "none", 0, 40, 40, weight_bits=8)))
    manifest.write(folder)


def test_dynamic_int8_is_a_cpu_graph(gpu_onnxruntime, folder, monkeypatch):
    """Activations ranged per call are uint8 GEMMs, which ONNX Runtime's CUDA kernels do not run: an automatic choice
    takes the CPU, a CUDA request is refused with what to use instead; TensorRT still runs its own Q/DQ layout."""
    from hqsam_edge import hardware

    monkeypatch.setattr(hardware, "u8s8_saturates", lambda *a, **k: False)  # no saturation warning on any host
    _with_precision_graphs(folder, (("onnxruntime", "fp16"), ("onnxruntime", "int8"), ("tensorrt", "int8")))
    _dynamic(folder)
    auto = open_backend(folder, backend="onnxruntime", precision="int8")
    assert auto.wanted_providers() == [O.CPU] and auto.paths["encoder"].name == "encoder.int8.onnxruntime.onnx"
    with pytest.raises(UsageError, match="ranges its activations per call.*--precision fp16"):
        open_backend(folder, backend="onnxruntime", precision="int8", providers=["cuda"])
    trt = open_backend(folder, backend="onnxruntime", precision="int8", providers=["tensorrt", "cuda"])
    assert trt.tensorrt_paths["encoder"].name == "encoder.int8.tensorrt.onnx"
    # a calibrated (static) ONNX Runtime INT8 graph keeps the GPU choice
    manifest = read_manifest(folder)
    from dataclasses import replace

    manifest.add(replace(manifest.find("onnxruntime", "int8"), calibration=None))
    manifest.write(folder)
    assert open_backend(folder, backend="onnxruntime", precision="int8", providers=["cuda"]).wanted_providers()[0] \
        == O.CUDA


def test_an_8_bit_dynamic_graph_warns_on_a_cpu_that_saturates(gpu_onnxruntime, folder, monkeypatch):
    """Built and checked where uint8 x int8 GEMMs accumulate in int32 (VNNI), opened where they saturate."""
    from hqsam_edge import hardware

    _with_precision_graphs(folder, (("onnxruntime", "int8"),))
    _dynamic(folder)
    monkeypatch.setattr(hardware, "u8s8_saturates", lambda *a, **k: False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        open_backend(folder, backend="onnxruntime", precision="int8")
    monkeypatch.setattr(hardware, "u8s8_saturates", lambda *a, **k: True)
    with pytest.warns(UserWarning, match="8-bit weights, checked on a CPU with VNNI.*build the int8 graph again here"):
        open_backend(folder, backend="onnxruntime", precision="int8")
