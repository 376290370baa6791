"""manifest.json: artifacts by backend, precision and format, with typed records; format-1 and format-2 folders
read as format 3; reading changes nothing on disk, and the stale-temporary sweep is a call of its own."""

from __future__ import annotations

import json
import shutil

import pytest

from hqsam_edge import owners
from hqsam_edge.errors import ArtifactError
from hqsam_edge.export.manifest import FORMAT_VERSION, Artifact, graph_file, read_manifest, remove_stale_temporaries
from hqsam_edge.export.profiles import Limits
from hqsam_edge.export.records import Calibration, EngineRecipe, EngineRecord, LayerSearch, Provenance


def test_find_by_backend_precision_and_format(tiny_folder, tmp_path):
    folder = tmp_path / "f"
    shutil.copytree(tiny_folder, folder)
    manifest = read_manifest(folder)
    (folder / "encoder.int8.tensorrt.onnx").write_bytes(b"x")
    (folder / "encoder.int8.engine").write_bytes(b"x")
    (folder / "decoder.int8.engine").write_bytes(b"x")
    manifest.add(Artifact("tensorrt", "int8", {"encoder": "encoder.int8.tensorrt.onnx", "decoder": "decoder.onnx"}))
    manifest.add(Artifact("tensorrt", "int8", {"encoder": "encoder.int8.engine", "decoder": "decoder.int8.engine"},
                          format="engine"))
    manifest.write(folder)
    manifest = read_manifest(folder)
    assert manifest.find("tensorrt", "int8").files["encoder"] == "encoder.int8.engine"  # what TensorRT runs
    assert manifest.find("tensorrt", "int8", format="onnx").files["encoder"] == "encoder.int8.tensorrt.onnx"
    with pytest.raises(ArtifactError, match=r"no onnxruntime/int8 .*tensorrt/int8 \(onnx graphs\)"):
        manifest.find("onnxruntime", "int8")


def test_format_1_folder_is_upgraded(tiny_folder, tmp_path):
    """Before format 2 the INT8 graph laid out for TensorRT was an onnxruntime artifact with extra.flavour."""
    folder = tmp_path / "old"
    shutil.copytree(tiny_folder, folder)
    data = json.loads((folder / "manifest.json").read_text())
    (folder / graph_file("encoder", "int8", "tensorrt")).write_bytes(b"x")
    (folder / "encoder.fp16.engine").write_bytes(b"x")
    (folder / "decoder.fp16.engine").write_bytes(b"x")
    data["format"] = 1
    for a in data["artifacts"]:
        del a["format"]
    data["artifacts"] += [
        {"backend": "onnxruntime", "precision": "int8", "extra": {"flavour": "tensorrt"},
         "files": {"encoder": "encoder.int8.tensorrt.onnx", "decoder": "decoder.onnx"}},
        {"backend": "tensorrt", "precision": "fp16", "extra": {},
         "files": {"encoder": "encoder.fp16.engine", "decoder": "decoder.fp16.engine"}}]
    (folder / "manifest.json").write_text(json.dumps(data))
    manifest = read_manifest(folder)
    assert manifest.format == FORMAT_VERSION == 3
    assert [a.key for a in manifest.artifacts] == [("onnxruntime", "fp32", "onnx", "gpu"),
                                                   ("tensorrt", "int8", "onnx", "gpu"),
                                                   ("tensorrt", "fp16", "engine", "gpu")]
    assert not hasattr(manifest.artifacts[1], "extra")  # the flavour became the backend; nothing else was said
    assert all((a.provenance, a.engine, a.calibration) == (None, None, None) for a in manifest.artifacts)


ENGINE_EXTRA = {"compute_capability": "8.7", "max_prompts": 16, "max_points": 8, "max_batch": 1, "dla_core": 0,
                "version_compatible": True, "timing_cache": "timing.trt10.3.0.sm87.cache",
                "recipes": {"encoder": {"source": "encoder.onnx", "strongly_typed": False, "fp16": True,
                                        "int8": False, "tf32": True, "fp32_layers": 12, "dla_core": 0},
                            "decoder": {"source": "decoder.fp16.onnx", "strongly_typed": True, "fp16": False,
                                        "int8": False, "tf32": True, "fp32_layers": 0, "dla_core": None}},
                "created": "2025-01-02T03:04:05+00:00", "platform": {"arch": "aarch64", "jetpack": "6.1"}}
CALIBRATION_EXTRA = {"calibration": {"method": "entropy", "images": "/data/calib", "count": 16,
                                     "quantized_layers": 30, "candidate_layers": 40, "excluded": ["neck"],
                                     "layer_search": {"first_miss": "short by 2 dB", "goal_sqnr_db": 33.0,
                                                      "search_sqnr_db": 33.4, "order": "harm per ms",
                                                      "quantized_fp32_ms": 10.5, "candidate_fp32_ms": 14.0,
                                                      "kept_float": [["a/MatMul", 21.3, 0.52],
                                                                     ["b/MatMul", 24.0, None]]}},
                     "created": "2025-01-02T03:04:05+00:00", "platform": {"arch": "x86_64"}}


def _format_2_folder(tiny_folder, tmp_path):
    """The tiny folder as a format-2 manifest: an engine pair and an INT8 graph with their ``extra``."""
    folder = tmp_path / "v2"
    shutil.copytree(tiny_folder, folder)
    data = json.loads((folder / "manifest.json").read_text())
    for name in ("encoder.fp16.engine", "decoder.fp16.engine", "encoder.int8.onnxruntime.onnx"):
        (folder / name).write_bytes(b"x")
    data["format"] = 2
    for a in data["artifacts"]:
        for key in ("provenance", "engine", "calibration"):
            a.pop(key, None)
        a["extra"] = {}
    data["artifacts"] += [
        {"backend": "tensorrt", "precision": "fp16", "format": "engine", "extra": ENGINE_EXTRA,
         "files": {"encoder": "encoder.fp16.engine", "decoder": "decoder.fp16.engine"}},
        {"backend": "onnxruntime", "precision": "int8", "format": "onnx", "extra": CALIBRATION_EXTRA,
         "files": {"encoder": "encoder.int8.onnxruntime.onnx", "decoder": "decoder.onnx"}}]
    (folder / "manifest.json").write_text(json.dumps(data))
    return folder


def test_format_2_extras_read_into_typed_records(tiny_folder, tmp_path):
    folder = _format_2_folder(tiny_folder, tmp_path)
    manifest = read_manifest(folder)
    assert manifest.format == 3
    engine = manifest.find("tensorrt", "fp16").engine
    assert engine == EngineRecord(
        limits=Limits(max_prompts=16, max_points=8, max_batch=1, opt_prompts=1, opt_batch=1), compute_capability="8.7",
        dla_core=0,
        version_compatible=True, timing_cache="timing.trt10.3.0.sm87.cache",
        recipes={"encoder": EngineRecipe(source="encoder.onnx", fp16=True, fp32_layers=12, dla_core=0),
                 "decoder": EngineRecipe(source="decoder.fp16.onnx", strongly_typed=True)})
    assert manifest.find("tensorrt", "fp16").provenance == Provenance("2025-01-02T03:04:05+00:00",
                                                                       {"arch": "aarch64", "jetpack": "6.1"})
    int8 = manifest.find("onnxruntime", "int8")
    assert int8.engine is None and int8.calibration == Calibration(
        method="entropy", images="/data/calib", count=16, quantized_layers=30, candidate_layers=40,
        excluded=("neck",), layer_search=LayerSearch(
            first_miss="short by 2 dB", goal_sqnr_db=33.0, search_sqnr_db=33.4, order="harm per ms",
            quantized_fp32_ms=10.5, candidate_fp32_ms=14.0,
            kept_float=(("a/MatMul", 21.3, 0.52), ("b/MatMul", 24.0, None))))
    fp32 = manifest.find("onnxruntime", "fp32")
    assert (fp32.provenance, fp32.engine, fp32.calibration) == (None, None, None)

    manifest.write(folder)  # written back at format 3: the records as objects, no ``extra``
    written = json.loads((folder / "manifest.json").read_text())
    assert written["format"] == 3 and all("extra" not in a for a in written["artifacts"])
    assert written["artifacts"][1]["engine"]["limits"] == {"max_prompts": 16, "max_points": 8, "max_batch": 1,
                                                           "opt_prompts": 1, "opt_batch": 1}  # as 1 / 2 tuned
    again = read_manifest(folder)
    assert again.artifacts == manifest.artifacts


def test_a_damaged_record_is_refused(tiny_folder, tmp_path):
    folder = _format_2_folder(tiny_folder, tmp_path)
    read_manifest(folder).write(folder)
    data = json.loads((folder / "manifest.json").read_text())
    del data["artifacts"][1]["engine"]["limits"]
    (folder / "manifest.json").write_text(json.dumps(data))
    with pytest.raises(ArtifactError, match="damaged or from another version"):
        read_manifest(folder)
    data["artifacts"][1]["engine"] = None
    data["artifacts"][1]["extra"] = {"max_prompts": 4}  # a format-2 field in a format-3 manifest
    (folder / "manifest.json").write_text(json.dumps(data))
    with pytest.raises(ArtifactError, match="damaged or from another version"):
        read_manifest(folder)


def test_reading_removes_nothing_and_the_sweep_is_its_own_call(tiny_folder, tmp_path):
    folder = tmp_path / "hq_vit_tiny"
    shutil.copytree(tiny_folder, folder)
    dead = f"{owners.MARK}{owners.realm()}-{__import__('os').getpid()}-1"  # this pid, another start: gone
    inside = folder / f".build.{dead}.abc"
    inside.mkdir()
    beside = tmp_path / f".hq_vit_tiny.{dead}.def"
    beside.mkdir()
    live = folder / f".manifest.json.{owners.tag()}.xyz.part"
    live.write_text("{")
    other = tmp_path / f".other.{dead}.ghi"
    other.mkdir()
    read_manifest(folder)
    assert inside.exists() and beside.exists() and live.exists()
    assert sorted(remove_stale_temporaries(folder)) == sorted([inside, beside])
    assert not inside.exists() and not beside.exists() and live.exists() and other.exists()


def test_engine_recipe_keeps_the_pinned_layer_names():
    """The layers a build pinned to FP32 (as the trtexec line names them) survive the JSON round trip."""
    import json
    from dataclasses import asdict

    recipe = EngineRecipe(source="encoder.onnx", fp16=True, fp32_layers=2, pinned_layers=("/ln", "/ln_7"))
    assert EngineRecipe.from_dict(json.loads(json.dumps(asdict(recipe)))) == recipe
    assert EngineRecipe.from_dict({"source": "encoder.onnx", "fp32_layers": 12}).pinned_layers == ()


def test_gpu_and_dla_engine_pairs_have_their_own_keys():
    """A board keeps both pairs of a precision: ``find`` gives the GPU pair by default, a DLA pair when asked (or
    where the folder has no GPU pair)."""
    from hqsam_edge.errors import ArtifactError
    from hqsam_edge.export.manifest import Artifact, Manifest, engine_file

    def pair(dla_core):
        files = {g: engine_file(g, "fp16", dla_core) for g in ("encoder", "decoder")}
        return Artifact("tensorrt", "fp16", files, format="engine",
                        engine=EngineRecord(limits=Limits(), dla_core=dla_core))

    assert engine_file("encoder", "int8", 0) == "encoder.int8.dla0.engine"
    assert engine_file("encoder", "int8") == "encoder.int8.engine"
    manifest = Manifest("vit_tiny", "hq", 1024, None, None, 0, True, False, 17, {}, {}, [], {}, "now")
    manifest.add(pair(0))
    assert manifest.find("tensorrt", "fp16").target == "dla0"  # the only pair
    manifest.add(pair(None))
    manifest.add(pair(1))
    assert len(manifest.artifacts) == 3
    assert manifest.find("tensorrt", "fp16").files["encoder"] == "encoder.fp16.engine"
    assert manifest.find("tensorrt", "fp16", dla_core=1).files["encoder"] == "encoder.fp16.dla1.engine"
    manifest.add(pair(1))  # rebuilding the same target replaces it
    assert len(manifest.artifacts) == 3
    with pytest.raises(ArtifactError, match="--dla-core 2"):
        manifest.find("tensorrt", "fp16", dla_core=2)
