"""manifest.json: artifacts by backend, precision and format; format-1 folders read as format 2."""

from __future__ import annotations

import json
import shutil

import pytest

from hqsam_edge.errors import ArtifactError
from hqsam_edge.export.manifest import Artifact, graph_file, read_manifest


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
    assert manifest.format == 2
    assert [a.key for a in manifest.artifacts] == [("onnxruntime", "fp32", "onnx"), ("tensorrt", "int8", "onnx"),
                                                   ("tensorrt", "fp16", "engine")]
    assert "flavour" not in manifest.artifacts[1].extra
