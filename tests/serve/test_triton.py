"""The Triton model repository: configs parsed with Triton's own protobuf, files, options, errors, and
the served model's logic run with ONNX Runtime on the repository's graphs against ``Predictor``.

No Triton server runs here: the BLS wrapper (``TritonPythonModel``) and the client's round trip are
not exercised; everything under them is.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import shutil
import os
import subprocess
import sys
import time
import types
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from hqsam_edge.cli import app
from hqsam_edge.errors import ArtifactError, UsageError
from hqsam_edge.export import contract as C
from hqsam_edge.export.manifest import Artifact, read_manifest
from hqsam_edge.export.profiles import Limits
from hqsam_edge.export.records import EngineRecord
from hqsam_edge.serve import triton_model as S
from hqsam_edge.serve.triton import TritonSpec, write_repository
from tests.conftest import external_data_graph, test_image
from tests.model.test_model_parity import assert_close, assert_same_masks

model_config_pb2 = pytest.importorskip("tritonclient.grpc.model_config_pb2", reason="tritonclient[grpc] (dev extra)")

ROOT = Path(__file__).resolve().parents[2]
CLIENT = ROOT / "examples" / "triton_client.py"
IMAGE = test_image(300, 400)
BOXES = np.array([[50.0, 40.0, 300.0, 250.0], [10.0, 10.0, 120.0, 90.0], [200.0, 100.0, 399.0, 299.0]])


def parse_config(model_dir: Path):
    from google.protobuf import text_format

    return text_format.Parse((model_dir / "config.pbtxt").read_text(), model_config_pb2.ModelConfig())


def io(entries):
    """[(name, TYPE_x, dims)] of ModelInput / ModelOutput messages."""
    return [(e.name, model_config_pb2.DataType.Name(e.data_type), list(e.dims)) for e in entries]


def kinds(config):
    return [(g.count, model_config_pb2.ModelInstanceGroup.Kind.Name(g.kind)) for g in config.instance_group]


@pytest.fixture(scope="module")
def repo(tiny_folder, tmp_path_factory):
    spec = TritonSpec(folder=str(tiny_folder), out=str(tmp_path_factory.mktemp("triton") / "repo"), instances=2,
                      max_queue_delay_us=100, preferred_batch_sizes=(2, 4))
    return write_repository(spec)


@pytest.fixture(scope="module")
def configs(repo):
    return {d.name: parse_config(d) for d in sorted(repo.path.iterdir())}


def test_configs_parse_and_declare_the_contract(repo, configs):
    assert sorted(configs) == ["hq_vit_tiny", "hq_vit_tiny_decoder", "hq_vit_tiny_encoder"]
    assert all(config.name == name for name, config in configs.items())

    enc = configs["hq_vit_tiny_encoder"]
    assert enc.platform == "onnxruntime_onnx" and enc.max_batch_size == 4  # B is Triton's batch dimension
    assert io(enc.input) == [(C.IMAGE.name, "TYPE_FP32", [3, 1024, 1024])]
    assert io(enc.output) == [(C.IMAGE_EMBEDDINGS.name, "TYPE_FP32", [256, 64, 64]),
                              (C.HQ_FEATURES.name, "TYPE_FP32", [32, 256, 256])]
    assert list(enc.dynamic_batching.preferred_batch_size) == [2, 4]
    assert enc.dynamic_batching.max_queue_delay_microseconds == 100
    assert kinds(enc) == [(2, "KIND_GPU")]

    dec = configs["hq_vit_tiny_decoder"]
    assert dec.platform == "onnxruntime_onnx" and dec.max_batch_size == 0 and not dec.HasField("dynamic_batching")
    assert io(dec.input) == [(s.name, "TYPE_FP32", [-1 if isinstance(d, str) else d for d in s.shape])
                             for s in C.decoder_inputs(is_hq=True)]
    assert io(dec.output) == [(C.LOW_RES_MASKS.name, "TYPE_FP32", [-1, 5, 256, 256]),  # every mask token
                              (C.IOU_PREDICTIONS.name, "TYPE_FP32", [-1, 4])]
    assert kinds(dec) == [(2, "KIND_GPU")]

    py = configs["hq_vit_tiny"]
    # max_batch instances: that many requests in flight reach the encoder's batcher together (one instance sends
    # its BLS requests one at a time)
    assert py.backend == "python" and py.max_batch_size == 0 and kinds(py) == [(4, "KIND_CPU")]
    assert [e.name for e in py.input] == [s.name for s in S.serve_inputs(is_hq=True)]
    assert all(e.optional for e in py.input)
    assert io(py.input)[0] == (S.IMAGE_RGB.name, "TYPE_UINT8", [-1, -1, 3])
    assert (S.ORIGINAL_SIZE.name, "TYPE_INT32", [2]) in io(py.input)  # the contract's, as preprocess.onnx gives it
    assert io(py.output)[:3] == [(S.MASKS.name, "TYPE_BOOL", [-1, 1, -1, -1]), (S.SCORES.name, "TYPE_FP32", [-1, 1]),
                                 (S.LOW_RES_MASKS.name, "TYPE_FP32", [-1, 1, 256, 256])]
    params = S.ServeParameters.from_strings({k: v.string_value for k, v in py.parameters.items()})
    assert (params.encoder_model, params.decoder_model) == ("hq_vit_tiny_encoder", "hq_vit_tiny_decoder")
    assert (params.backbone, params.variant, params.max_prompts, params.max_points) == ("vit_tiny", "hq", 64, 0)


def test_files_are_the_manifests_and_model_py_loads(repo, tiny_folder):
    files = read_manifest(tiny_folder).find("onnxruntime", "fp32").files
    for graph in ("encoder", "decoder"):
        copied = repo.path / f"hq_vit_tiny_{graph}" / "1" / "model.onnx"
        assert copied.read_bytes() == (tiny_folder / files[graph]).read_bytes()
    model_py = repo.path / "hq_vit_tiny" / "1" / "model.py"
    spec = importlib.util.spec_from_file_location("served_model", model_py)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # what the Python backend stub does
    assert module.TritonPythonModel is S.TritonPythonModel
    assert not any(p.name.startswith(".") for p in repo.path.parent.iterdir())  # no staging left behind


def fp32_only(tiny_folder: Path, folder: Path):
    """``folder``: the tiny folder's fp32 graphs (linked) and manifest, without what other tests may add."""
    folder.mkdir()
    manifest = read_manifest(tiny_folder)
    manifest.artifacts = [manifest.find("onnxruntime", "fp32")]
    for name in manifest.artifacts[0].files.values():
        os.symlink(tiny_folder / name, folder / name)
    manifest.write(folder)
    return manifest


@pytest.fixture(scope="module")
def variant_folder(tiny_folder, tmp_path_factory):
    """The tiny folder plus a fake TensorRT fp16 artifact and an fp16 graph with external data."""
    folder = tmp_path_factory.mktemp("variants") / "hq_vit_tiny"
    manifest = fp32_only(tiny_folder, folder)
    external_data_graph(folder / "encoder.external.onnx")
    for graph_name in ("encoder", "decoder"):
        (folder / f"{graph_name}.test.engine").write_bytes(f"plan of the {graph_name}".encode())
    manifest.add(Artifact("onnxruntime", "fp16", {"encoder": "encoder.external.onnx", "decoder": "decoder.onnx"}))
    manifest.add(Artifact("tensorrt", "fp16", {"encoder": "encoder.test.engine", "decoder": "decoder.test.engine"},
                          format="engine", tool_versions={"tensorrt": "10.3.0"}, device="Orin",
                          engine=EngineRecord(limits=Limits(max_prompts=8, max_points=4))))
    manifest.record_files(folder, ["encoder.external.onnx", "encoder.test.engine", "decoder.test.engine"])
    manifest.write(folder)
    return folder


def test_external_data_goes_into_a_model_folder(variant_folder, tmp_path):
    import onnx

    repo = write_repository(TritonSpec(folder=str(variant_folder), out=str(tmp_path / "r"), precision="fp16",
                                       kind="cpu", name="tiny"))
    target = repo.path / "tiny_encoder" / "1" / "model.onnx"
    assert target.is_dir() and sorted(p.name for p in target.iterdir()) == ["encoder.external.onnx.data", "model.onnx"]
    records = json.loads((repo.path / "tiny" / S.FILES_JSON).read_text())["files"]
    assert sorted(records) == ["tiny_decoder/1/model.onnx", "tiny_encoder/1/model.onnx/encoder.external.onnx.data",
                               "tiny_encoder/1/model.onnx/model.onnx"]
    S.check_repository(repo.path / "tiny")
    onnx.checker.check_model(onnx.load(str(target / "model.onnx")))  # the data resolves beside the graph
    assert (repo.path / "tiny_decoder" / "1" / "model.onnx").is_file()
    assert kinds(parse_config(repo.path / "tiny_encoder")) == [(1, "KIND_CPU")]


def test_tensorrt_plans_and_profile_bounds(variant_folder, tmp_path):
    repo = write_repository(TritonSpec(folder=str(variant_folder), out=str(tmp_path / "r"), backend="tensorrt"))
    for graph in ("encoder", "decoder"):
        model = repo.path / f"hq_vit_tiny_{graph}"
        assert (model / "1" / "model.plan").read_bytes() == f"plan of the {graph}".encode()
        assert parse_config(model).platform == "tensorrt_plan"
    assert parse_config(repo.path / "hq_vit_tiny_encoder").max_batch_size == 1  # the engine profile's B
    py = parse_config(repo.path / "hq_vit_tiny")
    params = S.ServeParameters.from_strings({k: v.string_value for k, v in py.parameters.items()})
    assert (params.max_prompts, params.max_points) == (8, 4)
    assert "TensorRT 10.3.0" in repo.summary()
    with pytest.raises(UsageError, match="exceeds the TensorRT engines' prompts per call"):
        write_repository(TritonSpec(folder=str(variant_folder), out=str(tmp_path / "r2"), backend="tensorrt",
                                    max_prompts=16))
    with pytest.raises(UsageError, match="--kind gpu"):
        write_repository(TritonSpec(folder=str(variant_folder), out=str(tmp_path / "r3"), backend="tensorrt",
                                    kind="cpu"))
    assert not (tmp_path / "r2").exists() and not (tmp_path / "r3").exists()


def test_a_dynamic_int8_graph_is_served_on_cpu_instances_only(tiny_folder, tmp_path):
    """ONNX Runtime's default INT8 graph (activations ranged per call) has no CUDA kernels: GPU instances refused."""
    from hqsam_edge.export.records import Calibration

    folder = tmp_path / "hq_vit_tiny"
    manifest = fp32_only(tiny_folder, folder)
    shutil.copy(folder / "encoder.onnx", folder / "encoder.int8.onnxruntime.onnx")
    files = {"encoder": "encoder.int8.onnxruntime.onnx", "decoder": "decoder.onnx"}
    calibration = Calibration("dynamic", "none", 0, 40, 40, weight_bits=8)
    manifest.add(Artifact("onnxruntime", "int8", files, calibration=calibration))
    manifest.record_files(folder, ["encoder.int8.onnxruntime.onnx"])
    manifest.write(folder)
    with pytest.raises(UsageError, match="ranges its activations per call.*--kind cpu"):
        write_repository(TritonSpec(folder=str(folder), out=str(tmp_path / "gpu"), precision="int8"))
    assert not (tmp_path / "gpu").exists()
    repo = write_repository(TritonSpec(folder=str(folder), out=str(tmp_path / "cpu"), precision="int8", kind="cpu"))
    assert kinds(parse_config(repo.path / "hq_vit_tiny_encoder")) == [(1, "KIND_CPU")]


def test_copies_keep_their_hashes_and_the_model_checks_them_when_loaded(variant_folder, tmp_path, monkeypatch):
    from google.protobuf import json_format

    repo = write_repository(TritonSpec(folder=str(variant_folder), out=str(tmp_path / "r"), backend="tensorrt"))
    records = json.loads((repo.path / repo.name / S.FILES_JSON).read_text())["files"]
    manifest = read_manifest(variant_folder)
    assert records == {f"hq_vit_tiny_{g}/1/model.plan": {k: manifest.files[f"{g}.test.engine"][k]
                                                         for k in ("size", "sha256")} for g in ("encoder", "decoder")}
    # what Triton's Python backend stub hands initialize; BLS is not called there
    monkeypatch.setitem(sys.modules, "triton_python_backend_utils", types.ModuleType("triton_python_backend_utils"))
    config = json_format.MessageToDict(parse_config(repo.path / repo.name), preserving_proto_field_name=True)
    args = {"model_config": json.dumps(config), "model_repository": str(repo.path / repo.name), "model_version": "1"}
    S.TritonPythonModel().initialize(args)
    plan = repo.path / "hq_vit_tiny_decoder" / "1" / "model.plan"
    plan.unlink()
    plan.write_bytes(b"plan of the encoder")  # another plan of the same size
    with pytest.raises(ArtifactError, match=r"hq_vit_tiny_decoder/1/model\.plan is not the file .*/files\.json "
                                            r"records \(sha256 .*same size\).*`hqsam-edge triton`"):
        S.TritonPythonModel().initialize(args)  # the model's load fails, with this reason
    (repo.path / repo.name / S.FILES_JSON).unlink()
    with pytest.raises(ArtifactError, match=r"files\.json is missing or damaged"):
        S.TritonPythonModel().initialize(args)


def test_tensorrt_without_engines_says_which_build_makes_them(tiny_folder, tmp_path):
    folder = tmp_path / "hq_vit_tiny"
    fp32_only(tiny_folder, folder)
    with pytest.raises(ArtifactError) as err:
        write_repository(TritonSpec(folder=str(folder), out=str(tmp_path / "r"), backend="tensorrt",
                                    precision="fp16"))
    assert f"hqsam-edge build {folder} --backend tensorrt --precision fp16" in str(err.value)
    assert not (tmp_path / "r").exists()


def test_cli_refuses_an_existing_repository(repo, tiny_folder, tmp_path):
    runner = CliRunner()
    before = sorted(str(p.relative_to(repo.path)) for p in repo.path.rglob("*"))
    result = runner.invoke(app, ["triton", str(tiny_folder), "--out", str(repo.path)])
    assert result.exit_code != 0
    err = result.stderr.strip()
    assert err.startswith("error: ") and len(err.splitlines()) == 1 and "--overwrite" in err, err
    assert sorted(str(p.relative_to(repo.path)) for p in repo.path.rglob("*")) == before

    other = tmp_path / "notes"
    other.mkdir()
    (other / "keep.txt").write_text("mine")
    result = runner.invoke(app, ["triton", str(tiny_folder), "--out", str(other), "--overwrite"])
    assert result.exit_code != 0 and "not a Triton model repository" in result.stderr
    assert (other / "keep.txt").read_text() == "mine"

    out = tmp_path / "repo"
    for _ in range(2):  # the second run replaces the first
        result = runner.invoke(app, ["triton", str(tiny_folder), "--out", str(out), "--overwrite", "--name", "seg",
                                     "--kind", "cpu", "--max-prompts", "2"])
        assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == ["seg", "seg_decoder", "seg_encoder"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes", "repo"]


# -- the served model's logic, on the repository's graphs under ONNX Runtime ----------------------

@pytest.fixture(scope="module")
def segmenter(repo):
    import onnxruntime as ort
    from google.protobuf import json_format

    def session_call(model: str):
        session = ort.InferenceSession(str(repo.path / model / "1" / "model.onnx"), providers=["CPUExecutionProvider"])
        names = [o.name for o in session.get_outputs()]
        calls = []

        def call(feeds):
            calls.append({k: np.shape(v) for k, v in feeds.items()})
            return dict(zip(names, session.run(None, feeds)))

        call.calls = calls
        return call

    # The model configuration as Triton hands it to TritonPythonModel.initialize (JSON of the protobuf).
    config = json_format.MessageToDict(parse_config(repo.path / repo.name), preserving_proto_field_name=True)
    params = S.ServeParameters.from_model_config(json.loads(json.dumps(config)))
    params = dataclasses.replace(params, max_prompts=2)  # three boxes -> two decoder calls
    return S.Segmenter(params, session_call(params.encoder_model), session_call(params.decoder_model))


@pytest.fixture(scope="module")
def reference(tiny_folder):
    from hqsam_edge import Predictor

    predictor = Predictor.from_artifacts(tiny_folder, backend="onnxruntime")
    predictor.set_image(IMAGE)
    return predictor


@pytest.fixture(scope="module")
def served(segmenter):
    wanted = [s.name for s in S.serve_outputs(is_hq=True)]
    return segmenter({S.IMAGE_RGB.name: IMAGE, S.BOXES.name: BOXES.astype(np.float32)}, wanted)


def test_served_masks_equal_predictor(served, segmenter, reference):
    masks, scores, low_res = reference.predict_boxes(BOXES)
    logits = reference.predict_boxes(BOXES, return_logits=True)[0]
    assert served[S.MASKS.name].dtype == bool and served[S.MASKS.name].shape == masks.shape == (3, 1, 300, 400)
    assert_same_masks(np.where(served[S.MASKS.name], 1.0, -1.0) * np.abs(logits), logits)
    assert np.abs(served[S.SCORES.name] - scores).max() <= 1e-4
    assert_close(served[S.LOW_RES_MASKS.name], low_res, "low-res logits")
    decoder_calls = segmenter.predictor.backend.decoder.calls
    assert [c[C.POINT_COORDS.name][0] for c in decoder_calls[:2]] == [2, 1]  # in chunks of max_prompts


def test_encoded_image_path_gives_the_same_masks(served, segmenter, reference):
    features = {s.name: served[s.name] for s in S.feature_specs(is_hq=True)}
    again = segmenter({**features, S.ORIGINAL_SIZE.name: np.array([300, 400]), S.BOXES.name: BOXES})
    assert sorted(again) == sorted(s.name for s in S.MASK_OUTPUTS)  # prompts: masks by default
    assert np.array_equal(again[S.MASKS.name], served[S.MASKS.name])
    assert np.array_equal(again[S.SCORES.name], served[S.SCORES.name])

    points, labels, box = np.array([[120.0, 100.0], [30.0, 30.0]]), np.array([1, 0]), BOXES[0]
    out = segmenter({**features, S.ORIGINAL_SIZE.name: np.array([300, 400]),
                     S.POINT_COORDS.name: points[None].astype(np.float32),
                     S.POINT_LABELS.name: labels[None].astype(np.int32), S.BOXES.name: box[None]})
    ref_masks, ref_scores, _ = reference.predict(points, labels, box)
    ref_logits = reference.predict(points, labels, box, return_logits=True)[0]
    assert_same_masks(np.where(out[S.MASKS.name][0], 1.0, -1.0) * np.abs(ref_logits), ref_logits)
    assert np.abs(out[S.SCORES.name][0] - ref_scores).max() <= 1e-4


def test_requests_that_cannot_be_served(served, segmenter):
    features = {s.name: served[s.name] for s in S.feature_specs(is_hq=True)}
    size = {S.ORIGINAL_SIZE.name: np.array([300, 400])}
    encoded = segmenter({**features, **size})  # no prompts: the encoding by default
    assert sorted(encoded) == sorted(features)
    cases = [
        ({S.BOXES.name: BOXES}, "send an image"),
        ({S.IMAGE_RGB.name: IMAGE, **features, S.BOXES.name: BOXES}, "not both"),
        ({**features, S.BOXES.name: BOXES}, S.ORIGINAL_SIZE.name),
        ({C.IMAGE_EMBEDDINGS.name: features[C.IMAGE_EMBEDDINGS.name][:, :8], C.HQ_FEATURES.name:
          features[C.HQ_FEATURES.name], **size, S.BOXES.name: BOXES}, r"must be \[1, 256, 64, 64\]"),
        ({**features, **size, S.BOXES.name: np.array([[0.0, 0.0, 500.0, 50.0], [450, 10, 480, 20]])}, "outside"),
    ]
    for inputs, message in cases:
        with pytest.raises(UsageError, match=message):
            segmenter(inputs)
    with pytest.raises(UsageError, match="masks need prompts"):
        segmenter({**features, **size}, [S.MASKS.name])


# -- the client example -----------------------------------------------------------------------------

def load_client():
    spec = importlib.util.spec_from_file_location("triton_client", CLIENT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_client_help_runs_without_importing_tritonclient():
    result = subprocess.run([sys.executable, str(CLIENT), "--help"], capture_output=True, text=True, check=True)
    assert "--image" in result.stdout and "--box" in result.stdout
    code = (f"import importlib.util, sys; s = importlib.util.spec_from_file_location('c', {str(CLIENT)!r}); "
            "m = importlib.util.module_from_spec(s); s.loader.exec_module(m); "
            "assert not [k for k in sys.modules if k.startswith('tritonclient')]")
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_client_builds_the_served_inputs(protocol):
    client = pytest.importorskip(f"tritonclient.{protocol}")
    module = load_client()
    prompts = module.prompts_from_args(["50,40,300,250"], ["120,100", "30,30,0"])
    inputs, outputs = module.build_request(client, image=IMAGE, **prompts)
    assert [(i.name(), i.datatype(), list(i.shape())) for i in inputs] == [
        (S.IMAGE_RGB.name, "UINT8", [300, 400, 3]), (S.BOXES.name, "FP32", [1, 4]),
        (S.POINT_COORDS.name, "FP32", [1, 2, 2]), (S.POINT_LABELS.name, "INT32", [1, 2])]
    assert [o.name() for o in outputs] == [S.MASKS.name, S.SCORES.name]

    features = {C.IMAGE_EMBEDDINGS.name: np.zeros(C.DECODER_IMAGE_EMBEDDINGS.shape, np.float32),
                C.HQ_FEATURES.name: np.zeros(C.DECODER_HQ_FEATURES.shape, np.float32)}
    inputs, _ = module.build_request(client, features=features, original_size=(300, 400), boxes=BOXES)
    assert [(i.name(), i.datatype(), list(i.shape())) for i in inputs] == [
        (C.IMAGE_EMBEDDINGS.name, "FP32", [1, 256, 64, 64]), (C.HQ_FEATURES.name, "FP32", [1, 32, 256, 256]),
        (S.ORIGINAL_SIZE.name, "INT32", [2]), (S.BOXES.name, "FP32", [3, 4])]
    with pytest.raises(UsageError, match="at most one box"):
        module.prompts_from_args(["1,2,3,4", "5,6,7,8"], ["3,3"])


def test_bls_requests_ask_for_host_outputs(monkeypatch):
    """Decoder outputs on the GPU would come back through torch DLPack, creating a torch CUDA context in every
    Python-model instance: BLS requests ask for CPU outputs where Triton (23.04+) offers preferred_memory."""
    import sys
    import types

    from hqsam_edge.serve import triton_model

    sent = {}

    class Response:
        def has_error(self):
            return False

    class InferenceRequest:
        def __init__(self, **kwargs):
            sent.update(kwargs)

        def exec(self):
            return Response()

    pb_utils = types.SimpleNamespace(
        InferenceRequest=InferenceRequest, Tensor=lambda name, value: (name, value),
        PreferredMemory=lambda kind, device: ("preferred", kind, device), TRITONSERVER_MEMORY_CPU="cpu",
        get_output_tensor_by_name=lambda response, name: types.SimpleNamespace(is_cpu=lambda: True,
                                                                               as_numpy=lambda: np.zeros(1)))
    monkeypatch.setitem(sys.modules, "triton_python_backend_utils", pb_utils)
    call = triton_model.bls_call("m_decoder", ("low_res_masks",))
    out = call({"point_coords": np.zeros((1, 2, 2), np.float32)})
    assert sent["preferred_memory"] == ("preferred", "cpu", 0) and sent["model_name"] == "m_decoder"
    assert set(out) == {"low_res_masks"}
    del pb_utils.PreferredMemory  # a Triton before 23.04: no such option, nothing passed
    sent.clear()
    triton_model.bls_call("m_decoder", ("low_res_masks",))({"point_coords": np.zeros((1, 2, 2), np.float32)})
    assert "preferred_memory" not in sent


# -- the python runtime: the graphs inside Triton's Python backend ----------------------------------

@pytest.fixture(scope="module")
def python_repo(tiny_folder, tmp_path_factory):
    spec = TritonSpec(folder=str(tiny_folder), out=str(tmp_path_factory.mktemp("py") / "repo"), runtime="python",
                      kind="cpu", python_instances=3, max_request_prompts=8, max_image_pixels=1000 * 1000)
    return write_repository(spec)


def test_python_runtime_configs_files_and_summary(python_repo):
    from hqsam_edge.serve.triton_graph import GraphParameters

    configs = {d.name: parse_config(d) for d in sorted(python_repo.path.iterdir())}
    enc, dec, py = configs["hq_vit_tiny_encoder"], configs["hq_vit_tiny_decoder"], configs["hq_vit_tiny"]
    for config, graph in ((enc, "encoder"), (dec, "decoder")):
        assert config.backend == "python" and not config.platform
        params = {k: {"string_value": v.string_value} for k, v in config.parameters.items()}
        assert GraphParameters.from_model_config({"parameters": params}) == GraphParameters(graph, True)
        model_dir = python_repo.path / config.name
        assert "serve.triton_graph import TritonPythonModel" in (model_dir / "1" / "model.py").read_text()
        assert sorted(json.loads((model_dir / S.FILES_JSON).read_text())["files"]) == [f"{config.name}/1/model.onnx"]
        S.check_repository(model_dir)
    assert enc.max_batch_size == 4 and enc.HasField("dynamic_batching") and kinds(enc) == [(1, "KIND_CPU")]
    assert io(enc.input) == [(C.IMAGE.name, "TYPE_FP32", [3, 1024, 1024])]  # as the onnxruntime backend's
    assert dec.max_batch_size == 0 and kinds(py) == [(3, "KIND_CPU")]
    params = S.ServeParameters.from_strings({k: v.string_value for k, v in py.parameters.items()})
    assert (params.max_request_prompts, params.max_image_pixels) == (8, 1000 * 1000)
    assert params.shm_bytes == python_repo.shm.total > 0
    summary = python_repo.summary()
    assert "numpy<2" in summary and "--shm-size=" in summary and "Python backend, ONNX Runtime" in summary


def test_python_runtime_needs_onnx_graphs(variant_folder, tmp_path):
    with pytest.raises(UsageError, match="--backend onnxruntime"):
        write_repository(TritonSpec(folder=str(variant_folder), out=str(tmp_path / "r"), backend="tensorrt",
                                    runtime="python"))
    with pytest.raises(UsageError, match="choose native or python"):
        write_repository(TritonSpec(folder=str(variant_folder), out=str(tmp_path / "r"), runtime="java"))


def test_graph_model_batches_encoder_requests_and_refuses_bad_ones(python_repo):
    from hqsam_edge.serve.triton_graph import GraphModel, GraphParameters, graph_file

    encoder = GraphModel(graph_file(python_repo.path / python_repo.encoder / "1"), GraphParameters("encoder", True))
    images = [np.random.default_rng(i).standard_normal((1, 3, 1024, 1024)).astype(np.float32) for i in range(2)]
    calls = []
    run = encoder.session.run
    encoder.session.run = lambda names, feeds: calls.append(feeds[C.IMAGE.name].shape) or run(names, feeds)
    answers = encoder.run([{C.IMAGE.name: images[0]}, {C.IMAGE.name: images[1][:, :2]}, {C.IMAGE.name: images[1]}])
    assert calls == [(2, 3, 1024, 1024)]  # the two good requests in one call
    assert isinstance(answers[1], UsageError) and "must be ['B', 3, 1024, 1024]" in str(answers[1])
    alone = run(None, {C.IMAGE.name: images[1]})
    assert np.allclose(answers[2][C.IMAGE_EMBEDDINGS.name], alone[0], atol=1e-4)
    assert isinstance(encoder.run([{}])[0], UsageError)
    # batches of any size meet the session: no memory pattern cached per shape (they grew a server without end)
    assert encoder.session.get_session_options().enable_mem_pattern is False


def test_request_bounds_and_shared_memory_check(python_repo, tiny_folder, monkeypatch):
    from hqsam_edge.serve import shm

    params = S.ServeParameters.from_strings({k: v.string_value for k, v in
                                             parse_config(python_repo.path / python_repo.name).parameters.items()})
    never = S.Segmenter(params, encoder=None, decoder=None)  # refused before any graph runs
    with pytest.raises(UsageError, match="9 prompts in one request; this model takes at most 8"):
        never({S.IMAGE_RGB.name: IMAGE, S.BOXES.name: np.tile(BOXES[:1], (9, 1)).astype(np.float32)})
    with pytest.raises(UsageError, match=r"1200000 pixels \(1000x1200\); this model takes at most 1000000"):
        never({S.IMAGE_RGB.name: np.zeros((1000, 1200, 3), np.uint8), S.BOXES.name: BOXES})
    features = {s.name: np.zeros(s.shape, np.float32) for s in S.feature_specs(is_hq=True)}
    with pytest.raises(UsageError, match="at most 1000000"):
        never({**features, S.ORIGINAL_SIZE.name: np.array([2000, 2000], np.int32), S.BOXES.name: BOXES})

    budget = python_repo.shm
    answer = 8 * 1000 * 1000  # 8 prompts' masks at the largest image, one byte a pixel
    assert budget.python_instances == 3 and budget.graph_instances == 1 and budget.request > answer
    assert budget.total == 3 * budget.request + budget.graphs
    monkeypatch.setattr(shm.shutil, "disk_usage", lambda path: types.SimpleNamespace(total=64 * shm.MIB))
    with pytest.raises(ArtifactError, match=r"/dev/shm holds 64 MiB, but .* need up to .*`--shm-size=\d+m`"):
        shm.check_shm(budget.total)
    shm.check_shm(32 * shm.MIB)
    native = write_repository(TritonSpec(folder=str(tiny_folder), out=str(python_repo.path.parent / "native"),
                                         kind="cpu"))
    assert native.shm.graph_instances == 0 and native.shm.python_instances == 4


def test_cli_writes_the_python_runtime(tiny_folder, tmp_path):
    out = tmp_path / "repo"
    result = CliRunner().invoke(app, ["triton", str(tiny_folder), "--out", str(out), "--runtime", "python",
                                      "--kind", "cpu", "--python-instances", "2", "--max-request-prompts", "8",
                                      "--max-image-pixels", "1000000"])
    assert result.exit_code == 0, result.output
    assert "numpy<2" in result.output and "--shm-size=" in result.output
    enc, py = parse_config(out / "hq_vit_tiny_encoder"), parse_config(out / "hq_vit_tiny")
    assert enc.backend == "python" and kinds(py) == [(2, "KIND_CPU")]
    params = S.ServeParameters.from_strings({k: v.string_value for k, v in py.parameters.items()})
    assert (params.max_request_prompts, params.max_image_pixels) == (8, 1000 * 1000)


def test_server_memory_counts_shared_pages_once(tmp_path):
    """``TritonServer.memory_bytes`` (PSS) over a process group whose two processes share 64 MiB they both
    touched: the summed RSS counts it twice, the memory figure once."""
    from hqsam_edge.serve.server import ServerSpec, TritonServer

    ready = tmp_path / "ready"
    script = ("import mmap, os, pathlib, time\n"
              "m = mmap.mmap(-1, 64 << 20)\n"
              "m.write(b'x' * (64 << 20))\n"
              "pid = os.fork()\n"
              "m.seek(0); sum(m.read(64 << 20)[::4096])\n"
              f"pathlib.Path({str(ready)!r} + str(pid)).touch()\n"
              "time.sleep(60)\n")
    server = TritonServer(ServerSpec(str(tmp_path)))
    server.process = subprocess.Popen([sys.executable, "-c", script], start_new_session=True)
    try:
        deadline = time.monotonic() + 30
        while len(list(tmp_path.glob("ready*"))) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        rss, pss = server.rss_bytes(), server.memory_bytes()
        assert rss - pss > 48 << 20, (rss, pss)  # the shared 64 MiB counted once more in the RSS
        assert pss > 64 << 20
    finally:
        os.killpg(server.process.pid, 9)
        server.process.wait()
