"""The command line as a new user meets it: fixed values are choices (the error lists them), bad paths and
values fail in one line before torch, onnx or onnxruntime are imported, ``build`` picks the fastest accurate
precision for the backend and says so, and ``export --precision`` goes from a checkpoint to a deployment in
one command. (How fast the errors are, wall clock: ``python benchmarks/cli_errors.py``.)"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

from hqsam_edge.cli import app
from hqsam_edge.errors import DownloadError
from hqsam_edge.interrupts import Interrupted
from tests.conftest import test_image

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "onnx", "onnxruntime", "tensorrt")


def one_line_error(result, *fragments: str, code: int | None = None) -> str:
    err = result.stderr.strip()
    assert result.exit_code != 0 and (code is None or result.exit_code == code), result.output
    assert err.startswith("error: ") and len(err.splitlines()) == 1 and "Traceback" not in result.output, err
    for fragment in fragments:
        assert fragment in err, err
    return err


@pytest.mark.parametrize("args, what", [
    (["export", "--backbone", "vit_x", "--random-weights"],
     "backbone 'vit_x'; choose one of: vit_tiny, vit_b, vit_l, vit_h"),
    (["build", "{folder}", "--precision", "fp61"], "precision 'fp61'; choose one of: fp32, fp16, int8"),
    (["bench", "--precision", "fp61"], "precision 'fp61'; choose one of: fp32, fp16, int8"),
    (["bench", "--backend", "auto"], "backend 'auto'; choose one of: torch, onnxruntime, tensorrt"),
    (["predict", "--variant", "hqq", "--random-weights", "--image", "{image}"],
     "variant 'hqq'; choose one of: hq, sam"),
    (["build", "{folder}", "--calib-method", "mean"],
     "calibration method 'mean'; choose one of: max, percentile, entropy, dynamic"),
    (["triton", "{folder}", "--out", "repo", "--kind", "tpu"], "instance kind 'tpu'; choose one of: gpu, cpu"),
    (["eval", "--random-weights", "--data", ".", "--protocol", "coco"],
     "protocol 'coco'; choose one of: official, predictor"),
])
def test_fixed_values_are_choices_and_the_error_lists_them(args, what, tiny_folder, tmp_path):
    image = tmp_path / "i.png"
    Image.fromarray(test_image(20, 30)).save(image)
    args = [a.format(folder=tiny_folder, image=image) for a in args]
    result = CliRunner().invoke(app, args)
    err = one_line_error(result, f"unknown {what}", code=2)
    assert f"(see `hqsam-edge {args[0]} --help`)" in err


def test_usage_mistakes_are_one_line_too():
    runner = CliRunner()
    one_line_error(runner.invoke(app, ["export", "--bogus"]), "No such option: --bogus", code=2)
    one_line_error(runner.invoke(app, ["build"]), "Missing argument", code=2)
    one_line_error(runner.invoke(app, ["exprot"]), "No such command 'exprot'", code=2)
    assert "Usage" in runner.invoke(app, []).output  # a bare `hqsam-edge` shows the help


def run_isolated(args: list[str], cwd: Path) -> tuple[int, str, list[str]]:
    """The command in a fresh interpreter: exit code, stderr, and which heavy modules it had imported."""
    script = textwrap.dedent(f"""
        import sys
        from hqsam_edge.cli import app
        try:
            app({args!r}, prog_name="hqsam-edge")
        except SystemExit as exc:
            code = exc.code
        print("heavy:" + ",".join(m for m in {HEAVY!r} if m in sys.modules))
        sys.exit(code)
    """)
    proc = subprocess.run([sys.executable, "-c", script], cwd=cwd, capture_output=True, text=True, timeout=120,
                          env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    heavy = proc.stdout.strip().splitlines()[-1].removeprefix("heavy:")
    return proc.returncode, proc.stderr, [m for m in heavy.split(",") if m]


@pytest.mark.parametrize("args, message", [
    (["predict", "--random-weights", "--image", "nope.png", "--box", "1,1,5,5", "--out", "m.png"],
     "image not found: nope.png"),
    (["predict", "nope_dir", "--image", "c.pth", "--box", "1,1,5,5", "--out", "m.png"],
     "artifact folder not found: nope_dir"),
    (["build", "nope_dir"], "artifact folder not found: nope_dir"),
    (["bench", "nope_dir"], "artifact folder not found: nope_dir"),
    (["export", "--checkpoint", "nope.pth"], "checkpoint not found: nope.pth"),
    (["export", "--backbone", "vit_x", "--random-weights"], "unknown backbone 'vit_x'"),
    (["build", "{folder}", "--precision", "fp61"], "unknown precision 'fp61'"),
    (["build", "{folder}", "--precision", "int8", "--graphs-for", "tensorrt", "--calib-method", "dynamic"],
     "--calib-method dynamic is for ONNX Runtime graphs: TensorRT needs constant Q/DQ scales"),
    (["build", "{folder}", "--precision", "fp16", "--calib-method", "max"], "--calib-method is for --precision int8"),
    (["bench", "damaged"], "damaged/manifest.json is damaged"),
    (["train", "--checkpoint", "c.pth", "--data", "nope", "--out", "o"], "data root not found: nope"),
    (["segment", "--random-weights", "--images", "*.png", "--boxes", "nope.json", "--out", "o"],
     "boxes file not found"),
    (["track", "--random-weights", "--source", "nope.mp4", "--box", "1,1,5,5", "--out", "o"],
     "no video file, image folder or camera at nope.mp4"),
    (["track", "--random-weights", "--box", "1,1,5", "--source", "c.pth", "--out", "o"], "a box takes 4 numbers"),
    (["track", "--random-weights", "--box", "9,1,5,5", "--source", "c.pth", "--out", "o"], "needs x1 > x0"),
    (["track", "--random-weights", "--point", "3,4,7", "--source", "c.pth", "--out", "o"], "a point label is 1"),
    (["track", "--random-weights", "--source", "c.pth", "--detector", "nope.onnx", "--out", "o"],
     "no detector graph at nope.onnx"),
    (["track", "--random-weights", "--source", "/dev/video9", "--box", "1,1,5,5", "--out", "o"], "no camera at"),
    (["track", "--random-weights", "--source", "c.pth", "--box", "1,1,5,5", "--show", "--out", "o"],
     "--show needs a display"),
])
def test_bad_input_fails_before_the_heavy_imports(args, message, tiny_folder, tmp_path):
    (tmp_path / "c.pth").write_bytes(b"")
    (tmp_path / "damaged").mkdir()
    (tmp_path / "damaged" / "manifest.json").write_text("{not json")
    code, err, heavy = run_isolated([a.format(folder=tiny_folder) for a in args], tmp_path)
    assert code != 0 and err.startswith("error: ") and len(err.strip().splitlines()) == 1, err
    assert message in err and heavy == [], (err, heavy)
    assert not (tmp_path / "m.png").exists() and not (tmp_path / "o").exists()


@pytest.mark.parametrize("command", ["track", "segment"])
def test_a_detector_of_an_unknown_layout_is_refused_before_the_heavy_imports(tmp_path, command):
    """The detector's output shape is read from the file (no onnx, no ONNX Runtime): a segmentation model's two
    outputs, or one of neither layout, is one line; so is an empty detections file, or prompts of two kinds."""
    import numpy as np

    from tests.video.test_prompts import graph

    graph(tmp_path / "seg.onnx", np.zeros((1, 116, 64), np.float32), outputs=2)
    graph(tmp_path / "odd.onnx", np.zeros((1, 84), np.float32))
    (tmp_path / "c.mp4").write_bytes(b"")
    (tmp_path / "det.txt").write_text("")
    (tmp_path / "det2.txt").write_text("1,-1,1,1,5,5,0.9\n")
    head = (["track", "--random-weights", "--source", "c.mp4"] if command == "track"
            else ["segment", "--random-weights", "--images", "*.mp4"])
    cases = [(["--detector", "seg.onnx"], "seg.onnx has 2 outputs (a segmentation or pose model?)"),
             (["--detector", "odd.onnx"], "neither Ultralytics' raw head [1, 4+C, A] nor its end-to-end [1, K, 6]")]
    if command == "track":
        cases += [(["--detections", "det.txt"], "det.txt holds no detections"),
                  (["--box", "1,1,5,5", "--detections", "c.mp4"], "holds no detections"),
                  (["--classes", "a,b", "--box", "1,1,5,5"], "--classes takes class ids"),
                  (["--box", "1,1,5,5", "--detections", "det2.txt"], "give the objects to follow one way")]
    for extra, message in cases:
        code, err, heavy = run_isolated([*head, *extra, "--out", "o"], tmp_path)
        assert code != 0 and err.startswith("error: ") and len(err.strip().splitlines()) == 1, err
        assert message in err and heavy == [], (err, heavy)
        assert not (tmp_path / "o").exists()


def test_build_picks_the_fastest_accurate_precision_and_says_so(tiny_folder, tmp_path):
    import onnxruntime as ort

    from hqsam_edge.pipeline.build import default_precision

    if {"CUDAExecutionProvider", "TensorrtExecutionProvider"} & set(ort.get_available_providers()):
        pytest.skip("this onnxruntime has a GPU provider: its default is fp16")
    assert default_precision("onnxruntime")[0] == "fp32" and default_precision("tensorrt")[0] == "fp16"
    folder = tmp_path / "hq_vit_tiny"
    shutil.copytree(tiny_folder, folder)
    before = (folder / "manifest.json").read_bytes()
    result = CliRunner().invoke(app, ["build", str(folder)])
    assert result.exit_code == 0, result.output
    assert "precision: fp32, the default for ONNX Runtime on the CPU" in result.stdout
    assert "build: --precision fp32, the default for ONNX Runtime on the CPU" in result.stderr
    assert (folder / "manifest.json").read_bytes() == before  # fp32: the exported graphs, as they are
    one_line_error(CliRunner().invoke(app, ["build", str(folder), "--calib-images", str(tmp_path)]),
                   "--calib-images is for --precision int8, not fp32", code=2)


def test_export_refuses_build_options_of_another_precision_before_exporting(tmp_path):
    out = tmp_path / "e"
    result = CliRunner().invoke(app, ["export", "--random-weights", "--precision", "fp16", "--layer-search",
                                      "--out", str(out)])
    one_line_error(result, "--layer-search is for --precision int8, not fp16", code=2)
    assert not out.exists()


SMALL_EXPORT = """
import dataclasses, sys
from hqsam_edge.cli import app
from hqsam_edge.pipeline import build as pipeline
from tests.pipeline.small_build import CANDIDATES

_precision_spec = pipeline.BuildSpec.precision_spec

def small(self, precision=None, graph_backend=None):  # tests/pipeline/small_build.py's problem (4 GEMMs), its bounds
    spec = _precision_spec(self, precision, graph_backend)
    return dataclasses.replace(spec, int8_exclude=CANDIDATES, heldout=1, calib_limit=2, min_sqnr_db=32,
                               min_mask_iou=0.5)

pipeline.BuildSpec.precision_spec = small
app(sys.argv[1:], prog_name="hqsam-edge")
"""


def test_export_with_precision_int8_and_layer_search_in_one_command(tmp_path):
    """``export --precision int8 --calib-images D --calib-method max --layer-search``: one folder with the fp32 graphs
    and the int8 ones, and a manifest recording both checks (the export's, the INT8 graph's with its layer search)."""
    calib = tmp_path / "calib"
    calib.mkdir()
    for k in range(3):
        Image.fromarray(test_image(240, 320, seed=10 + k)).save(calib / f"c{k}.png")
    out = tmp_path / "e"
    proc = subprocess.run([sys.executable, "-c", SMALL_EXPORT, "export", "--backbone", "vit_tiny", "--random-weights",
                           "--precision", "int8", "--calib-images", str(calib), "--calib-method", "max",
                           "--layer-search", "--out", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr
    assert f"wrote {out}" in proc.stdout and f"built onnxruntime/int8 in {out}" in proc.stdout, proc.stdout
    for stage in ("export: trace the encoder", "export: check the graphs against PyTorch", "calibration"):
        assert stage in proc.stderr, proc.stderr
    assert "int8: max ranges from 2 " in proc.stdout, proc.stdout
    manifest = json.loads((out / "manifest.json").read_text())
    artifacts = {a["precision"]: a for a in manifest["artifacts"]}
    assert set(artifacts) == {"fp32", "int8"}
    assert manifest["parity"]["decoder"] and artifacts["int8"]["parity"]["bounds"]["min_sqnr_db"] == 32
    assert artifacts["int8"]["calibration"]["layer_search"] is not None
    assert artifacts["int8"]["calibration"]["method"] == "max"
    for artifact in artifacts.values():
        assert all((out / name).is_file() for name in artifact["files"].values())


def _stopped_download(monkeypatch, exc: BaseException):
    """``hqsam-edge download`` whose library call raises ``exc`` (light: nothing is downloaded)."""
    import hqsam_edge.model.download as download

    def raise_it(*args, **kwargs):
        raise exc

    monkeypatch.setattr(download, "download_checkpoint", raise_it)
    return CliRunner().invoke(app, ["download"])


@pytest.mark.parametrize("exc, message, code", [
    (Interrupted(signal.SIGTERM), "interrupted by SIGTERM: removed ", 143),  # the command's own temporary folder
    (KeyboardInterrupt(), "interrupted: removed ", 130),
    (MemoryError(), "out of memory; try a smaller backbone", 1),
    (DownloadError("checksum mismatch; download again"), "checksum mismatch; download again", 1),
])
def test_every_way_a_command_ends_is_one_line_and_its_code(monkeypatch, exc, message, code):
    """The one error path: an interruption, running out of memory, our errors, while the command runs."""
    one_line_error(_stopped_download(monkeypatch, exc), message, code=code)


def test_an_interruption_a_library_wrapped_still_counts(monkeypatch):
    try:
        try:
            raise Interrupted(signal.SIGINT)
        except Interrupted as stop:
            raise ImportError("a C extension interrupted while it initialised") from stop
    except ImportError as wrapped:
        exc = wrapped
    one_line_error(_stopped_download(monkeypatch, exc), "interrupted by SIGINT", code=130)


def test_an_error_that_is_not_ours_keeps_its_traceback(monkeypatch):
    """A bug is not dressed up as a user's mistake: it leaves the command line as itself."""
    result = _stopped_download(monkeypatch, ZeroDivisionError("a bug"))
    assert isinstance(result.exception, ZeroDivisionError) and result.exit_code == 1


def _params(command: str) -> dict:
    import typer.main

    return {p.name: p for p in typer.main.get_command(app).commands[command].params}


@pytest.mark.parametrize("command", ["predict", "segment"])
def test_everything_options_are_the_generators_fields_with_its_defaults(command):
    from dataclasses import fields

    from hqsam_edge.apps.generator_options import GeneratorOptions

    params = _params(command)
    for f in fields(GeneratorOptions):
        if f.name in ("point_grids", "output_mode"):  # arrays; the command writes its own output
            assert f.name not in params
            continue
        assert params[f.name].opts == ["--" + f.name.replace("_", "-")], f.name
        assert params[f.name].default == f.default, f.name


@pytest.mark.parametrize("command", ["predict", "segment", "eval", "track"])
def test_model_options_default_as_model_choice_does(command):
    from dataclasses import fields

    from hqsam_edge.runtime.choice import ModelChoice

    params = _params(command)
    for f in fields(ModelChoice):
        assert params[f.name].default == f.default, f.name
    assert params["folder"].param_type_name == "argument"


def test_every_command_takes_the_progress_options_once():
    import typer.main

    for name, command in typer.main.get_command(app).commands.items():
        opts = [o for p in command.params for o in p.opts]
        assert opts.count("--verbose") == opts.count("-q") == 1, name
    for registered in app.registered_commands:  # each command's parameters are its function's own
        fn = registered.callback
        assert not hasattr(fn, "__wrapped__") and "__signature__" not in vars(fn), fn.__name__
