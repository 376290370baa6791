"""A graph, an external-data file and an engine-like file, each replaced by another valid file of the same name:
refused by ``predict``, ``segment``, ``bench`` and ``Predictor.from_artifacts`` (one line, no traceback), and
``verify`` lists exactly the changed file."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from hqsam_edge import Predictor
from hqsam_edge.cli import app
from hqsam_edge.errors import ArtifactError
from hqsam_edge.export.manifest import Artifact, read_manifest
from tests.conftest import table_rows
from tests.conftest import test_image

# (file replaced, backend and precision of the artifact that uses it)
CASES = [("decoder.onnx", "onnxruntime", "fp32"), ("encoder.external.onnx.data", "onnxruntime", "fp16"),
         ("decoder.test.engine", "tensorrt", "fp16")]


def _toy_graph(folder: Path, weights: np.ndarray) -> None:
    """``encoder.external.onnx``: one MatMul whose weights live in ``encoder.external.onnx.data``."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
                              [numpy_helper.from_array(weights, "w")])
    onnx.save(helper.make_model(graph), str(folder / "encoder.external.onnx"), save_as_external_data=True,
              location="encoder.external.onnx.data", size_threshold=0)


@pytest.fixture(scope="module")
def recorded(tiny_folder, tmp_path_factory):
    """The tiny folder's fp32 graphs, an fp16 artifact whose encoder keeps its tensors in external data, and a
    TensorRT artifact of plan-like files: every file recorded, as export and build record them."""
    folder = tmp_path_factory.mktemp("recorded") / "hq_vit_tiny"
    folder.mkdir()
    manifest = read_manifest(tiny_folder)
    manifest.artifacts = [manifest.find("onnxruntime", "fp32")]
    for name in ("encoder.onnx", "decoder.onnx"):
        shutil.copyfile(tiny_folder / name, folder / name)
    _toy_graph(folder, np.ones((4, 4), np.float32))
    for graph in ("encoder", "decoder"):
        (folder / f"{graph}.test.engine").write_bytes(f"plan of the {graph}".encode())
    manifest.add(Artifact("onnxruntime", "fp16", {"encoder": "encoder.external.onnx", "decoder": "decoder.onnx"}))
    manifest.add(Artifact("tensorrt", "fp16", {"encoder": "encoder.test.engine", "decoder": "decoder.test.engine"},
                          format="engine", tool_versions={"tensorrt": "10.3.0"}, device="Orin"))
    manifest.record_files(folder, ["encoder.external.onnx", "encoder.test.engine", "decoder.test.engine"])
    manifest.write(folder)
    return folder


def replace(folder: Path, name: str) -> None:
    """``name`` replaced by another valid file of the same name (a new file, as a copy or an attacker writes)."""
    import onnx

    path = folder / name
    if name == "decoder.onnx":
        model = onnx.load(str(path))
        model.doc_string = "another decoder"
        path.unlink()
        onnx.save(model, str(path))
    elif name.endswith(".data"):
        path.unlink()
        path.write_bytes(np.full((4, 4), 2.0, np.float32).tobytes())  # other weights, same size
    else:
        path.unlink()
        path.write_bytes(b"plan of the encoder")  # another plan, same size


@pytest.fixture
def changed(recorded, tmp_path, request):
    name, backend, precision = request.param
    folder = tmp_path / "hq_vit_tiny"
    shutil.copytree(recorded, folder, copy_function=os.link)  # cheap copies; replacing a file unlinks it
    replace(folder, name)
    return folder, name, backend, precision


def one_line_error(result, name: str) -> str:
    err = result.stderr.strip()
    assert result.exit_code == 1, result.output
    assert len(err.splitlines()) == 1 and "Traceback" not in result.output, result.output
    assert err.startswith("error: ") and f"/{name} is not the file manifest.json records" in err, err
    return err


@pytest.mark.parametrize("changed", CASES, indirect=True, ids=[c[0] for c in CASES])
def test_a_replaced_file_is_refused_everywhere_and_verify_names_it(changed, tmp_path):
    folder, name, backend, precision = changed
    runner = CliRunner()
    with pytest.raises(ArtifactError, match=rf"{name} is not the file manifest\.json records"):
        Predictor.from_artifacts(folder, backend=backend, precision=precision)
    choice = ["--backend", backend, "--precision", precision]

    Image.fromarray(test_image(96, 128)).save(tmp_path / "a.png")
    result = runner.invoke(app, ["predict", str(folder), "--image", str(tmp_path / "a.png"), "--box", "10,10,60,60",
                                 "--out", str(tmp_path / "mask.png"), *choice])
    one_line_error(result, name)
    assert not (tmp_path / "mask.png").exists()

    (tmp_path / "boxes.json").write_text(json.dumps({"a.png": [[10, 10, 50, 50]]}))
    result = runner.invoke(app, ["segment", str(folder), "--images", str(tmp_path / "*.png"), "--boxes",
                                 str(tmp_path / "boxes.json"), "--out", str(tmp_path / "seg"), *choice])
    one_line_error(result, name)
    assert not (tmp_path / "seg").exists()

    result = runner.invoke(app, ["bench", str(folder), *choice, "--iters", "1", "--warmup", "0"])
    one_line_error(result, name)

    result = runner.invoke(app, ["verify", str(folder), "--json"])
    assert result.exit_code == 1 and "Traceback" not in result.output
    rows = json.loads(result.stdout)["files"]
    assert [r["file"] for r in rows if r["status"] != "ok"] == [name]
    assert len(rows) == 6  # the fp32 graphs, the external-data graph and its data, the two plans
    result = runner.invoke(app, ["verify", str(folder)])
    changed_rows = [row for row in table_rows(result.stdout)[1:] if row[-1] != "ok"]
    assert [row[0] for row in changed_rows] == [name] and changed_rows[0][-1] == "changed"
    assert result.stderr.startswith(f"error: 1 of 6 files in {folder} do not match manifest.json: {name} (changed)")


def test_verify_of_a_good_folder_prints_the_table(recorded):
    result = CliRunner().invoke(app, ["verify", str(recorded)])
    assert result.exit_code == 0, result.output
    rows = table_rows(result.stdout)
    assert rows[0] == ["file", "size", "sha256", "status"] and len(rows) == 7
    manifest = read_manifest(recorded)
    for name, size, sha, status in rows[1:]:
        assert status == "ok" and manifest.files[name] == {**manifest.files[name], "size": int(size), "sha256": sha}
