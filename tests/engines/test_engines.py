"""TensorRT plans, trtexec lines and the engine builder's calls (everywhere); real engines (GPU + TensorRT only).

Without TensorRT the builder and the TensorRT backend run against ``recording_tensorrt`` /
``recording_pycuda``: stand-ins that record the calls we make (flags, profiles, precision pins, contexts,
buffers) and run the ONNX graphs with ONNX Runtime behind TensorRT's engine API. They prove which calls we
make and that our side of them is consistent, never that TensorRT accepts them: that is the GPU tests' job.
"""

from __future__ import annotations

import json
import math
import shlex
import threading

import numpy as np
import onnx
import pytest
from PIL import Image
from typer.testing import CliRunner

from hqsam_edge.cli import app
from hqsam_edge.engines.recipe import TRT_KEEP_FP32_OPS, generation_of, source_graphs
from hqsam_edge.errors import ArtifactError, BackendUnavailableError, BuildError, UsageError
from hqsam_edge.export.profiles import Limits, decoder_profile
from hqsam_edge.pipeline.build import BuildSpec, build, trtexec_lines
from hqsam_edge.runtime.environment import tensorrt_status
from tests.engines import recording_pycuda as RC
from tests.engines import recording_tensorrt as RT

TRT = tensorrt_status()
needs_trt = pytest.mark.skipif(not TRT.usable, reason=f"TensorRT + pycuda + a GPU are needed: {TRT.detail}")
# what the CPU tests of the INT8 recipe pass on random weights (they assert the default bound is missed)
RANDOM_WEIGHT_INT8 = dict(min_sqnr_db=3.0, min_mask_iou=0.5)


@pytest.fixture(scope="module")
def folder(tiny_folder):
    return tiny_folder


@pytest.fixture(scope="module")
def graphs_folder(tiny_folder, tmp_path_factory):
    """The folder with the precision graphs engine builds read (FP16, the INT8 Q/DQ graph laid out for TensorRT),
    made and checked once: an engine build reuses the checked graphs the manifest records."""
    import shutil

    from hqsam_edge.calib.precision_graphs import PrecisionSpec, make_precision_graphs

    out = tmp_path_factory.mktemp("engines") / "hq_vit_tiny"
    shutil.copytree(tiny_folder, out)
    make_precision_graphs(PrecisionSpec(str(out), precision="fp16", heldout=1))
    make_precision_graphs(PrecisionSpec(str(out), precision="int8", graph_backend="tensorrt", calib_limit=2, heldout=1,
                                        **RANDOM_WEIGHT_INT8))
    return out


@pytest.fixture
def fresh_folder(graphs_folder, tmp_path):
    import shutil

    out = tmp_path / "hq_vit_tiny"
    shutil.copytree(graphs_folder, out)
    return out


def spec(folder, precision="fp32", **kw):
    """A small profile and one held-out image: the stand-in's engines run the graphs on the CPU."""
    options = dict(backend="tensorrt", precision=precision, heldout=1, max_prompts=4, max_points=4)
    if precision != "fp32":
        options.update(min_sqnr_db=0.0, min_mask_iou=0.0)
    return BuildSpec(str(folder), **{**options, **kw})


@pytest.fixture
def recording_trt(monkeypatch):
    RT.install(monkeypatch)
    return RT


@pytest.fixture
def no_engine_check(monkeypatch):
    """For tests of what TensorRT is told: the engines' check (run by the fp32 and version-compatible tests) is
    left out, since the stand-in's engines compute the graphs they were built from whatever the flags say."""
    from hqsam_edge.pipeline import build as pipeline

    monkeypatch.setattr(pipeline, "check_engines", lambda *a, **k: {"mean_mask_iou": 1.0, "encoder": {}})


def test_generations_and_the_floor():
    assert [generation_of(v) for v in ("8.6.1.6", "10.3.0", "10.13.0", "11.1.0")] == ["8", "10", "10", "11"]
    for old in ("8.5.2", "8.4.1", "7.1.3"):  # JetPack 5.x: no LayerNormalization in the parser
        with pytest.raises(BackendUnavailableError, match=r"too old: hqsam-edge needs 8\.6 .*JetPack 6\.0"):
            generation_of(old)


def test_decoder_profile_from_contract():
    p = decoder_profile(max_prompts=16, max_points=8)
    assert p.shapes["point_coords"] == ((1, 1, 2), (16, 2, 2), (16, 8, 2))  # tuned for everything mode, capped
    assert p.shapes["mask_input"][2] == (16, 1, 256, 256) and p.shapes["has_mask_input"][2] == (16,)
    with pytest.raises(UsageError, match="at least 2"):
        Limits(max_points=1)


def test_profiles_are_tuned_for_the_real_uses():
    """TensorRT tunes for the opt shapes: everything mode's 64 prompts a call, Triton's batch."""
    from hqsam_edge.export.profiles import EVERYTHING_PROMPTS, profile_for

    assert EVERYTHING_PROMPTS == 64
    assert profile_for("decoder", Limits()).shapes["point_coords"][1] == (64, 2, 2)
    assert profile_for("decoder", Limits(opt_prompts=1)).shapes["point_coords"][1] == (1, 2, 2)
    assert profile_for("encoder", Limits(max_batch=4)).shapes["image"][1] == (4, 3, 1024, 1024)
    assert profile_for("encoder", Limits(max_batch=4, opt_batch=2)).shapes["image"][1] == (2, 3, 1024, 1024)
    with pytest.raises(UsageError, match="--opt-prompts must be between 1 and --max-prompts"):
        Limits(max_prompts=8, opt_prompts=16)


def _lines(folder, generation, precision, **kw):
    lines = trtexec_lines(BuildSpec(str(folder), backend="tensorrt", precision=precision, max_prompts=16,
                                    max_points=8, **kw), generation)
    assert len(lines) == 2
    return [shlex.split(line) for line in lines]


def _keep_fp32(path):
    return [n.name for n in onnx.load(str(path), load_external_data=False).graph.node if n.op_type in TRT_KEEP_FP32_OPS]


def _option(args, name):
    return next(a.split("=", 1)[1] for a in args if a.startswith(name + "="))


@pytest.mark.parametrize("generation", ["8", "10", "11"])
@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
def test_print_trtexec(folder, generation, precision):
    enc, dec = _lines(folder, generation, precision)
    assert enc[0] == "trtexec" and _option(enc, "--saveEngine").endswith(f"encoder.{precision}.engine")
    assert _option(dec, "--maxShapes") == ("point_coords:16x8x2,point_labels:16x8,mask_input:16x1x256x256,"
                                           "has_mask_input:16")
    for line in (enc, dec):
        assert _option(line, "--memPoolSize") == "workspace:4096"  # plain MiB: one meaning on 8.4 ... 11
        assert ("--noTF32" in line) == (precision == "fp32")  # TF32 is on by default: fp32 must clear it
        assert "--int8" not in line or line is enc  # the decoder has no Q/DQ: --int8 would set dummy ranges
        if generation == "11":
            assert not {"--fp16", "--int8", "--precisionConstraints=obey"} & set(line)  # gone in 11
    encoder_source = _option(enc, "--onnx").rsplit("/", 1)[1]
    decoder_source = _option(dec, "--onnx").rsplit("/", 1)[1]
    if precision == "fp32":
        assert (encoder_source, decoder_source) == ("encoder.onnx", "decoder.onnx")
        return
    if precision == "int8":  # strongly typed 11 builds the Q/DQ graph on the FP16 graph
        assert encoder_source == ("encoder.int8.tensorrt.fp16.onnx" if generation == "11"
                                  else "encoder.int8.tensorrt.onnx")
        assert ("--int8" in enc) == (generation != "11")
    if generation == "8":  # weakly typed: FP16 flag, norms / softmax / reductions pinned to FP32, obeyed
        assert decoder_source == "decoder.onnx" and "--fp16" in enc and "--fp16" in dec
        for line, graph in ((enc, "encoder.onnx"), (dec, "decoder.onnx")):
            assert "--precisionConstraints=obey" in line
            pins = _option(line, "--layerPrecisions")
            assert pins == _option(line, "--layerOutputTypes")
            assert [p.rsplit(":", 1) for p in pins.split(",")] == [[n, "fp32"] for n in _keep_fp32(folder / graph)]
            assert any("LayerNormalization" in p for p in pins.split(","))
    else:  # the FP16 graph, strongly typed (on 11 strongly typed is all there is)
        assert decoder_source == "decoder.fp16.onnx"
        if precision == "fp16":
            assert encoder_source == "encoder.fp16.onnx"
        assert ("--stronglyTyped" in dec) == (generation == "10")


def test_int8_on_10_pins_the_q_dq_encoder_and_types_the_decoder(folder):
    enc, dec = _lines(folder, "10", "int8")
    assert {"--int8", "--fp16", "--precisionConstraints=obey"} <= set(enc) and "--stronglyTyped" not in enc
    assert "--stronglyTyped" in dec and "--fp16" not in dec and "--int8" not in dec


def test_dla_lines_and_refusals(folder):
    enc, dec = _lines(folder, "10", "fp16", dla_core=0)
    assert "--useDLACore=0" in enc and "--allowGPUFallback" in enc
    assert _option(enc, "--saveEngine").endswith("/encoder.fp16.dla0.engine")  # beside the GPU pair's files
    assert _option(dec, "--saveEngine").endswith("/decoder.fp16.dla0.engine")
    assert not any(a.startswith("--useDLACore") for a in dec)  # dynamic shapes cannot run on DLA
    assert "--fp16" in enc and _option(enc, "--onnx").endswith("/encoder.onnx")  # DLA runs FP16: weakly typed
    assert "--precisionConstraints=prefer" in enc  # as the build and trtexec's own DLA path
    runner = CliRunner()
    for extra in ([], ["--print-trtexec", "10"]):
        result = runner.invoke(app, ["build", str(folder), "--backend", "tensorrt", "--precision", "fp32",
                                     "--dla-core", "0", *extra])
        assert result.exit_code == 2 and "Traceback" not in result.output
        assert result.stderr.strip().splitlines() == [result.stderr.strip()]
        assert "--dla-core runs FP16 and INT8 layers only" in result.stderr
    result = runner.invoke(app, ["build", str(folder), "--backend", "tensorrt", "--dla-core", "0", "--max-batch", "4",
                                 "--print-trtexec", "10"])
    assert result.exit_code == 2 and "static shapes" in result.stderr


def test_encoder_batch_profile(folder):
    enc, _ = _lines(folder, "10", "fp16", max_batch=4)
    assert _option(enc, "--minShapes") == "image:1x3x1024x1024" and _option(enc, "--maxShapes") == "image:4x3x1024x1024"


def test_source_graphs_per_generation(folder):
    spec = BuildSpec(str(folder), backend="tensorrt", precision="int8").engine_spec()
    assert source_graphs(spec, "8") == [("int8", "tensorrt")]
    assert source_graphs(spec, "10") == [("fp16", "onnxruntime"), ("int8", "tensorrt")]
    fp16 = BuildSpec(str(folder), backend="tensorrt", precision="fp16").engine_spec()
    assert source_graphs(fp16, "8") == [] and source_graphs(fp16, "11") == [("fp16", "onnxruntime")]


def test_cli_print_trtexec_and_missing_tensorrt(folder):
    runner = CliRunner()
    result = runner.invoke(app, ["build", str(folder), "--backend", "tensorrt", "--precision", "fp16",
                                 "--print-trtexec", "10"])
    assert result.exit_code == 0 and result.stdout.count("trtexec --onnx=") == 2
    if not TRT.usable:
        result = runner.invoke(app, ["build", str(folder), "--backend", "tensorrt", "--precision", "fp16"])
        assert result.exit_code != 0 and result.stderr.startswith("error: --backend tensorrt is not usable here")
        assert len(result.stderr.strip().splitlines()) == 1 and "pip install" in result.stderr
        image = folder / "x.png"  # an image that exists: a missing one is refused first
        Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(image)
        result = runner.invoke(app, ["predict", str(folder), "--backend", "tensorrt", "--image", str(image), "--box",
                                     "1,1,5,5", "--out", str(folder / "m.png")])
        assert result.exit_code != 0 and "tensorrt is not usable" in result.stderr


# -- the builder's calls, against the recording stand-in -----------------------------------------------------


def _builds_by_graph():
    return {("encoder" if "encoder" in b.onnx.rsplit("/", 1)[1] else "decoder"): b for b in RT.BUILDS}


def test_fp32_build_clears_tf32_and_its_check_stays_inside_the_profile(recording_trt, fresh_folder):
    """The post-build check feeds at most max_points points per prompt, and the backend splits its 8 boxes into
    calls of max_prompts: a profile of 4 x 4 is built and checked. A timing cache TensorRT refuses (another GPU's
    or version's) is replaced by a fresh one."""
    cache = fresh_folder / "timing.trt10.13.0.35.sm89.cache"
    cache.write_bytes(b"a cache from another GPU")
    artifact = build(spec(fresh_folder))
    builds = _builds_by_graph()
    for b in builds.values():
        assert b.flags == set() and b.explicit_batch is False and b.strongly_typed is False  # 10.x: TF32 cleared
        assert b.workspace == 4 * 2**30 and b.timing_cache
    assert builds["decoder"].profile["point_coords"][2] == (4, 4, 2)
    assert builds["encoder"].profile["image"] == ((1, 3, 1024, 1024),) * 3
    decoder_calls = [e for e in RT.EXECUTIONS if "point_coords" in e]
    assert decoder_calls and max(e["point_coords"][0] for e in decoder_calls) == 4  # 8 boxes: two calls
    assert max(e["point_coords"][1] for e in decoder_calls) <= 4
    assert "3_points" in artifact.parity["decoder"] and artifact.parity["mean_mask_iou"] > 0.999
    assert artifact.format == "engine" and artifact.engine.limits == Limits(max_prompts=4, max_points=4, max_batch=1,
                                                                             opt_prompts=4, opt_batch=1)
    assert artifact.engine.timing_cache == cache.name and cache.read_bytes() == RT.ITimingCache.MAGIC
    assert RC.DRIVER.errors == [] and RC.DRIVER.primary_refs == 1 and RC.DRIVER.contexts_made == 0


def test_fp16_on_86_pins_norms_under_obey(recording_trt, no_engine_check, fresh_folder, monkeypatch):
    RT.as_version(monkeypatch, "8.6.1")
    build(spec(fresh_folder, "fp16"))
    for graph, b in _builds_by_graph().items():
        assert b.explicit_batch and not b.strongly_typed and b.onnx.endswith(f"/{graph}.onnx")
        assert {"FP16", "TF32", "OBEY_PRECISION_CONSTRAINTS"} <= b.flags and "INT8" not in b.flags
        assert set(_keep_fp32(fresh_folder / f"{graph}.onnx")) <= set(b.fp32_layers)


def test_fp16_on_10_builds_the_fp16_graph_strongly_typed(recording_trt, no_engine_check, fresh_folder):
    import io

    from hqsam_edge import progress

    log = io.StringIO()
    with progress.reporting(progress.Reporter(log)):
        build(spec(fresh_folder, "fp16"))
    assert all(b.progress_monitor for b in RT.BUILDS)  # TensorRT's phases reported while it builds
    text = log.getvalue()
    assert text.count("TensorRT: Building engine (2 steps)") == 2 and "Tactic selection" not in text
    assert "TensorRT: build the encoder engine (fp16) (" in text
    for graph, b in _builds_by_graph().items():
        assert b.strongly_typed and b.onnx.endswith(f"/{graph}.fp16.onnx")
        assert "FP16" not in b.flags and "INT8" not in b.flags and b.fp32_layers == []


def test_int8_on_10_sets_int8_on_the_q_dq_encoder_only(recording_trt, no_engine_check, fresh_folder):
    artifact = build(spec(fresh_folder, "int8"))
    builds = _builds_by_graph()
    assert builds["encoder"].onnx.endswith("/encoder.int8.tensorrt.onnx")
    assert {"INT8", "FP16", "OBEY_PRECISION_CONSTRAINTS"} <= builds["encoder"].flags
    assert not builds["encoder"].strongly_typed and builds["encoder"].fp32_layers
    assert builds["decoder"].onnx.endswith("/decoder.fp16.onnx") and builds["decoder"].strongly_typed
    assert "INT8" not in builds["decoder"].flags
    assert artifact.engine.recipes["encoder"].int8 and not artifact.engine.recipes["decoder"].int8


def test_version_and_dla_refusals(recording_trt, fresh_folder, monkeypatch):
    RT.as_version(monkeypatch, "8.5.2")  # JetPack 5.1: its parser has no LayerNormalization
    with pytest.raises(BackendUnavailableError, match=r"too old: hqsam-edge needs 8\.6 .*JetPack 6\.0"):
        build(spec(fresh_folder))
    RT.as_version(monkeypatch, "8.6.2")
    with pytest.raises(UsageError, match="int8 needs TensorRT 10"):  # DLA takes no Q/DQ on 8.x
        build(spec(fresh_folder, "int8", dla_core=0))
    RT.as_version(monkeypatch, "11.4.0")
    with pytest.raises(BackendUnavailableError, match="no DLA support"):
        build(spec(fresh_folder, "fp16", dla_core=0))
    RT.as_version(monkeypatch, "10.3.0")
    with pytest.raises(BackendUnavailableError, match="needs a device with DLA"):  # a GPU without DLA
        build(spec(fresh_folder, "fp16", dla_core=0))
    assert RT.BUILDS == []
    runner = CliRunner()
    result = runner.invoke(app, ["build", str(fresh_folder), "--backend", "tensorrt", "--precision", "int8",
                                 "--dla-core", "0", "--print-trtexec", "8"])
    assert result.exit_code == 2 and "int8 needs TensorRT 10" in result.stderr


def test_dla_gate_follows_nvidias_matrix():
    """``--dla-core``: none on 10.8-10.x and 11.0-11.4.0; from 11.4.1 AGX Orin with JetPack 7.2.2+ only."""
    from hqsam_edge.engines.recipe import EngineSpec, check_tensorrt_version

    dla = EngineSpec("x", precision="fp16", dla_core=0)
    agx, nx = "NVIDIA Jetson AGX Orin Developer Kit", "NVIDIA Jetson Orin NX Engine"
    assert check_tensorrt_version(dla, "10.3.0", agx, "6.2") == "10"
    assert check_tensorrt_version(dla, "10.3.0", nx, "6.1") == "10"
    assert check_tensorrt_version(dla, "11.4.1", agx, "7.2.2") == "11"
    for version, model, jetpack, why in (("10.8.0", agx, "", "10.7 was the last"), ("10.16.1", "", "", "no DLA"),
                                         ("11.0.0", agx, "", "no DLA"), ("11.4.0", agx, "7.2.2", "no DLA"),
                                         ("11.4.1", nx, "7.2.2", "AGX Orin only"),
                                         ("11.4.1", agx, "7.2", "JetPack 7.2.2 or later")):
        with pytest.raises(BackendUnavailableError, match=why) as caught:
            check_tensorrt_version(dla, version, model, jetpack)
        assert "drop --dla-core" in str(caught.value)
    assert check_tensorrt_version(EngineSpec("x", precision="fp16"), "10.16.1") == "10"  # GPU engines: no gate


def test_build_reads_the_board_for_the_dla_gate(recording_trt, fresh_folder, monkeypatch):
    from hqsam_edge import hardware

    board = hardware.Platform(arch="aarch64", system="Linux", python="3.12", jetson_model="NVIDIA Jetson Orin NX",
                              jetpack="7.2.2")
    monkeypatch.setattr(hardware, "this_platform", lambda: board)
    monkeypatch.setattr(RT.Builder, "num_DLA_cores", 2)
    RT.as_version(monkeypatch, "11.4.1")
    with pytest.raises(BackendUnavailableError, match="AGX Orin only, not on NVIDIA Jetson Orin NX"):
        build(spec(fresh_folder, "fp16", dla_core=0))
    RT.as_version(monkeypatch, "10.8.0")
    with pytest.raises(BackendUnavailableError, match="10.7 was the last"):
        build(spec(fresh_folder, "fp16", dla_core=0))
    assert RT.BUILDS == []


def test_int8_on_86_gives_the_parser_float_weights(recording_trt, no_engine_check, fresh_folder, monkeypatch):
    """TensorRT 8.x's parser refuses int8 initializers behind a DequantizeLinear: the Q/DQ graph laid out for
    TensorRT keeps its weights float behind their own Q/DQ pair."""
    RT.as_version(monkeypatch, "8.6.1")
    build(spec(fresh_folder, "int8"))
    builds = _builds_by_graph()
    assert builds["encoder"].onnx.endswith("/encoder.int8.tensorrt.onnx") and builds["encoder"].explicit_batch
    assert {"INT8", "FP16", "OBEY_PRECISION_CONSTRAINTS"} <= builds["encoder"].flags


def test_tensorrt_failures_are_build_errors_with_their_own_exit_code(recording_trt, fresh_folder, monkeypatch):
    """A graph TensorRT cannot parse, or a build it gives up on, is a tool's failure (exit 4), not a user's
    mistake (``UsageError``, exit 2); the folder keeps what its manifest lists."""
    before = (fresh_folder / "manifest.json").read_bytes()
    parse = RT.OnnxParser.parse_from_file
    monkeypatch.setattr(RT.OnnxParser, "parse_from_file", lambda self, model: False)
    with pytest.raises(BuildError, match=r"TensorRT 10\.13\.0\.35 cannot parse encoder\.onnx") as caught:
        build(spec(fresh_folder))
    assert not isinstance(caught.value, UsageError) and caught.value.exit_code == 4
    monkeypatch.setattr(RT.OnnxParser, "parse_from_file", parse)
    monkeypatch.setattr(RT.Builder, "build_serialized_network", lambda self, network, config: None)
    result = CliRunner().invoke(app, ["build", str(fresh_folder), "--backend", "tensorrt", "--precision", "fp32",
                                      "--max-prompts", "4", "--max-points", "4"])
    assert result.exit_code == 4, result.output
    last = result.stderr.strip().splitlines()[-1]  # after the progress lines
    assert last.startswith("error: TensorRT failed to build encoder.onnx") and "Traceback" not in result.output
    assert (fresh_folder / "manifest.json").read_bytes() == before and not list(fresh_folder.glob("*.engine"))


@pytest.mark.parametrize("precision", ["fp16", "int8"])
def test_tensorrt_11_gets_no_removed_api(recording_trt, no_engine_check, fresh_folder, monkeypatch, precision):
    """On 11 EXPLICIT_BATCH, the FP16 / INT8 / constraint flags and the layer precision setters are gone: the
    builds use none of them."""
    RT.as_version(monkeypatch, "11.4.1")
    build(spec(fresh_folder, precision))
    for b in _builds_by_graph().values():
        assert b.strongly_typed is False and b.explicit_batch is False  # flags 0: strongly typed is all there is
        assert b.flags == {"TF32"} and b.fp32_layers == []
    assert _builds_by_graph()["decoder"].onnx.endswith("/decoder.fp16.onnx")
    encoder = "encoder.int8.tensorrt.fp16.onnx" if precision == "int8" else "encoder.fp16.onnx"
    assert _builds_by_graph()["encoder"].onnx.endswith("/" + encoder)


def test_int8_engines_source_graphs_per_generation(recording_trt, no_engine_check, fresh_folder, monkeypatch):
    """Weakly typed 8.6 / 10.x build the fp32-based Q/DQ encoder; strongly typed 11 the Q/DQ graph on the FP16
    graph (its other layers FP16, the FP32 islands kept), made once from the recorded graphs (no calibration, the
    FP16 variant not made again) and recorded with the INT8 graphs."""
    from hqsam_edge.export.manifest import INT8_ON_FP16, read_manifest

    sources = {}
    for version in ("8.6.1", "10.13.0.35", "11.4.1"):
        RT.as_version(monkeypatch, version)
        RT.BUILDS.clear()
        before = read_manifest(fresh_folder)
        build(spec(fresh_folder, "int8"))
        sources[version] = {g: b.onnx.rsplit("/", 1)[1] for g, b in _builds_by_graph().items()}
    assert sources["8.6.1"] == {"encoder": "encoder.int8.tensorrt.onnx", "decoder": "decoder.onnx"}
    assert sources["10.13.0.35"] == {"encoder": "encoder.int8.tensorrt.onnx", "decoder": "decoder.fp16.onnx"}
    assert sources["11.4.1"] == {"encoder": "encoder.int8.tensorrt.fp16.onnx", "decoder": "decoder.fp16.onnx"}
    manifest = read_manifest(fresh_folder)
    graphs = manifest.find("tensorrt", "int8", format="onnx")
    assert graphs.files[INT8_ON_FP16] == "encoder.int8.tensorrt.fp16.onnx" and INT8_ON_FP16 in graphs.parity
    assert graphs.calibration == before.find("tensorrt", "int8", format="onnx").calibration  # not calibrated again
    fp16 = [a for a in manifest.artifacts if a.key[:3] == ("onnxruntime", "fp16", "onnx")]
    assert len(fp16) == 1 and fp16[0].provenance == before.find("onnxruntime", "fp16").provenance  # not remade
    typed = onnx.load(str(fresh_folder / graphs.files[INT8_ON_FP16]))
    types = {i.name: i.data_type for i in typed.graph.initializer}
    ops = [n.op_type for n in typed.graph.node]
    assert "QuantizeLinear" in ops and "DequantizeLinear" in ops
    assert onnx.TensorProto.FLOAT16 in types.values()  # the non-quantized layers' weights
    norms = [n for n in typed.graph.node if n.op_type == "LayerNormalization"]
    assert norms and all(types.get(n.input[1], onnx.TensorProto.FLOAT) == onnx.TensorProto.FLOAT for n in norms)


def test_calib_images_do_not_remake_the_fp16_graphs(recording_trt, no_engine_check, fresh_folder, tmp_path):
    """Only the INT8 graph depends on calibration: an INT8 engine build with new images keeps the recorded FP16
    graphs the FP16 engines came from."""
    from hqsam_edge.export.manifest import read_manifest

    images = tmp_path / "calib"
    images.mkdir()
    rng = np.random.default_rng(0)
    for k in range(3):
        Image.fromarray(rng.integers(0, 255, (64, 80, 3), dtype=np.uint8)).save(images / f"{k}.png")
    before = read_manifest(fresh_folder)
    build(spec(fresh_folder, "int8", calib_images=str(images), calib_limit=2))
    after = read_manifest(fresh_folder)
    for name in ("encoder.fp16.onnx", "decoder.fp16.onnx"):
        assert after.files[name]["sha256"] == before.files[name]["sha256"], name
    assert after.find("onnxruntime", "fp16").provenance == before.find("onnxruntime", "fp16").provenance
    assert after.find("tensorrt", "int8", format="onnx").calibration.images == str(images)  # calibrated anew


def test_dla_encoder_build(recording_trt, no_engine_check, fresh_folder, monkeypatch):
    monkeypatch.setattr(RT.Builder, "num_DLA_cores", 2)
    RT.as_version(monkeypatch, "10.3.0")
    artifact = build(spec(fresh_folder, "fp16", dla_core=1))
    builds = _builds_by_graph()
    assert (builds["encoder"].device, builds["encoder"].dla_core) == ("DLA", 1)
    assert {"FP16", "GPU_FALLBACK", "PREFER_PRECISION_CONSTRAINTS"} <= builds["encoder"].flags
    assert builds["decoder"].device == "GPU" and builds["decoder"].strongly_typed
    assert artifact.engine.dla_core == 1 and artifact.engine.recipes["decoder"].dla_core is None
    assert artifact.files == {"encoder": "encoder.fp16.dla1.engine", "decoder": "decoder.fp16.dla1.engine"}


def test_dla_and_gpu_engines_live_side_by_side(recording_trt, no_engine_check, fresh_folder, monkeypatch):
    """A DLA pair and a GPU pair of one precision: distinct files and manifest keys; the GPU pair opens by
    default, the DLA pair when asked."""
    from hqsam_edge.export.manifest import read_manifest
    from hqsam_edge.runtime.open import open_backend

    monkeypatch.setattr(RT.Builder, "num_DLA_cores", 2)
    RT.as_version(monkeypatch, "10.3.0")
    build(spec(fresh_folder, "fp16", dla_core=0))
    build(spec(fresh_folder, "fp16"))
    manifest = read_manifest(fresh_folder)
    pairs = [a for a in manifest.artifacts if a.format == "engine"]
    assert sorted(a.target for a in pairs) == ["dla0", "gpu"] and len({a.key for a in pairs}) == 2
    assert {f for a in pairs for f in a.files.values()} == {"encoder.fp16.engine", "decoder.fp16.engine",
                                                            "encoder.fp16.dla0.engine", "decoder.fp16.dla0.engine"}
    assert all((fresh_folder / f).is_file() for a in pairs for f in a.files.values())
    gpu, dla = open_backend(fresh_folder, backend="tensorrt"), open_backend(fresh_folder, dla_core=0)
    assert (gpu.dla_core, gpu.paths["encoder"].name) == (None, "encoder.fp16.engine")
    assert (dla.dla_core, dla.paths["encoder"].name) == (0, "encoder.fp16.dla0.engine")
    with pytest.raises(ArtifactError, match=r"no tensorrt/fp16 on dla1 .*--dla-core 1"):
        open_backend(fresh_folder, precision="fp16", dla_core=1)
    with pytest.raises(UsageError, match="--dla-core runs TensorRT engines"):
        open_backend(fresh_folder, backend="onnxruntime", dla_core=0)


def _named_apart_graph(path):
    """A graph whose layers are not named as its nodes: Softmax's importer adds a reshape (``sm_<N>``), Gemm its bias
    add (``g_<N>``), the LayerNormalization's scale is a weight named as the node (its CONSTANT layer takes ``ln``,
    the norm ``ln_<N>``), the Constant node makes no layer."""
    from onnx import TensorProto, helper, numpy_helper

    f = np.ones((4, 4), np.float32)
    nodes = [helper.make_node("Gemm", ["x", "w", "b"], ["g_out"], name="g"),
             helper.make_node("Softmax", ["g_out"], ["sm_out"], name="sm", axis=-1),
             helper.make_node("Constant", [], ["two"], name="two_c", value=numpy_helper.from_array(np.float32(2.0))),
             helper.make_node("Pow", ["sm_out", "two"], ["p_out"], name="pow"),
             helper.make_node("LayerNormalization", ["p_out", "ln", "ln_b"], ["y"], name="ln", axis=-1)]
    graph = helper.make_graph(nodes, "named_apart", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4, 4])],
                              [numpy_helper.from_array(f, "w"), numpy_helper.from_array(f[0], "b"),
                               numpy_helper.from_array(f[0], "ln"), numpy_helper.from_array(f[0] * 0, "ln_b")])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


def test_trtexec_line_and_build_pin_the_same_layers(recording_trt, monkeypatch, tmp_path):
    """The build pins TensorRT layers (a node's ``<node>`` and ``<node>_<N>``), not node names; the trtexec line
    prints the same list, and a DETAILED build's inspector shows them in FP32."""
    from hqsam_edge.engines import tensorrt_build
    from hqsam_edge.engines.recipe import EngineJob, check_pins, keep_fp32_nodes
    from hqsam_edge.engines.trtexec import trtexec_command
    from hqsam_edge.export.profiles import Profile

    monkeypatch.setattr(RT, "_EXTRA_LAYERS", {**RT._EXTRA_LAYERS, "Softmax": ("SHUFFLE",)})
    RT.as_version(monkeypatch, "8.6.1")
    path = _named_apart_graph(tmp_path / "g.onnx")
    job = EngineJob(graph="encoder", onnx=path, engine=tmp_path / "g.engine", profile=Profile({}), precision="fp16",
                    generation="8", fp16=True, pin_fp32=keep_fp32_nodes(path))
    assert job.pin_fp32 == ("sm", "pow", "ln")
    printed = tensorrt_build.pinned_layers(job)
    plan, pinned = tensorrt_build.build_serialized(job, tmp_path / "t.cache", detailed=True)
    assert list(printed) == pinned == RT.BUILDS[-1].fp32_layers
    names = [layer["Name"] for layer in json.loads(plan)["layers"]]
    assert names[:4] == ["w", "b", "g", "g_0"] and "two_c" not in names  # a Constant node makes no layer
    assert pinned == ["sm", "sm_1", "pow", "ln_2"]  # the norm is ln_2: its scale weight's CONSTANT layer took "ln"
    line = trtexec_command(job, fp32_layers=printed)
    spec = ",".join(f"{name}:fp32" for name in pinned)
    assert f"--layerPrecisions={spec}" in line and f"--layerOutputTypes={spec}" in line
    check = check_pins(tensorrt_build.engine_information(plan), pinned)
    assert set(check.fp32) == set(pinned) and check.reduced == () and check.unseen == ()
    assert "g" not in pinned and "g_0" not in pinned  # the Gemm runs FP16: its layers are not pinned


def test_check_pins_reads_fused_and_reduced_layers():
    from hqsam_edge.engines.recipe import check_pins

    info = {"Layers": [{"Name": "a + b", "Outputs": [{"Format/Datatype": "Float"}]},
                       {"Name": "c", "Outputs": [{"Format/Datatype": "Channel major FP16 format"}]},
                       {"Name": "d", "Outputs": [{"Format/Datatype": "N/A due to dynamic shapes"}]}, "e"]}
    check = check_pins(json.dumps(info), ["a", "c", "d", "e", "z"])
    assert check.fp32 == ("a + b",) and check.reduced == (("c", "fp16"),) and check.unknown == ("d",)
    assert check.unseen == ("e", "z")


def test_printed_pins_are_the_builds_on_the_recording_parser(recording_trt, no_engine_check, fresh_folder):
    """With TensorRT of the generation asked for here, --print-trtexec pins what the build pins and records."""
    enc, _ = _lines(fresh_folder, "10", "int8")
    artifact = build(spec(fresh_folder, "int8"))
    recorded = artifact.engine.recipes["encoder"].pinned_layers
    assert recorded and len(recorded) == artifact.engine.recipes["encoder"].fp32_layers
    assert _option(enc, "--layerPrecisions") == ",".join(f"{name}:fp32" for name in recorded)
    assert list(recorded) == _builds_by_graph()["encoder"].fp32_layers


# -- the TensorRT backend's calls, against the recording stand-in ------------------------------------------


@pytest.fixture(scope="module")
def built_engines(graphs_folder, tmp_path_factory):
    """fp32 engines of a 4 x 4 decoder profile, built once through the stand-in."""
    import shutil

    out = tmp_path_factory.mktemp("built") / "hq_vit_tiny"
    shutil.copytree(graphs_folder, out)
    with pytest.MonkeyPatch.context() as mp:
        RT.install(mp)
        build(spec(out))
    return out


@pytest.fixture
def engines(recording_trt, built_engines, tmp_path):
    import shutil

    out = tmp_path / "hq_vit_tiny"
    shutil.copytree(built_engines, out)
    return out


def test_tensorrt_predictor_uses_the_primary_context_and_keeps_no_state_per_thread(engines):
    """Predictor over engines: the masks of the graphs they were built from; P > max_prompts in several calls;
    a decode on a worker thread of features encoded on this one works, and a worker that encodes and decodes
    then ends leaves device memory where it was (no state per thread); close() frees everything with the
    context current; the primary context is released; no private context is made."""
    from hqsam_edge import Predictor
    from tests.conftest import test_image

    image = test_image(120, 160)
    boxes = np.array([[10, 10, 90, 80], [20, 5, 150, 110], [0, 0, 60, 60], [40, 30, 120, 100], [5, 50, 70, 118],
                      [60, 20, 159, 119]], float)
    with Predictor.from_artifacts(engines, backend="onnxruntime", precision="fp32", providers=["cpu"]) as reference:
        reference.set_image(image)
        expected = reference.predict_boxes(boxes, return_logits=True)[0]
    predictor = Predictor.from_artifacts(engines, backend="tensorrt", precision="fp32")
    backend = predictor.backend
    assert (backend.max_prompts, backend.max_points, backend.max_batch) == (4, 4, 1)
    assert RC.DRIVER.primary_refs == 1 and RC.DRIVER.contexts_made == 0
    assert backend._runtime is not None and all(e.runtime is backend._runtime for e in backend.engines.values())
    predictor.set_image(image)
    held = RC.DRIVER.allocated()
    logits = predictor.predict_boxes(boxes, return_logits=True)[0]
    np.testing.assert_allclose(logits, expected, rtol=0, atol=1e-4 * np.abs(expected).max())
    assert [e["point_coords"][0] for e in RT.EXECUTIONS if "point_coords" in e] == [4, 2]

    from hqsam_edge.runtime.compare import prompt_sets

    results: list = []

    def in_worker(encode: bool):
        try:
            image = np.zeros((1, 3, 1024, 1024), np.float32)
            features = backend.encode(image) if encode else predictor.backend_features
            results.append(backend.decode(features, prompt_sets(4)["box"], multimask_output=False,
                                          hq_token_only=False))
        except BaseException as exc:  # noqa: BLE001 - reported below
            results.append(exc)

    for encode in (False, True):  # the main thread's features decoded elsewhere; then a worker's own image
        thread = threading.Thread(target=in_worker, args=(encode,))
        thread.start()
        thread.join()
    assert [type(r) for r in results] == [dict, dict]
    assert RC.DRIVER.allocated() == held and len(backend._slots) == 1  # nothing kept for the ended threads
    with pytest.raises(UsageError, match="belong to another image"):  # the worker's image replaced this one's
        predictor.predict_boxes(boxes)
    with pytest.raises(UsageError, match="at most 4"):
        predictor.predict(point_coords=np.full((5, 2), 30.0), point_labels=np.ones(5))
    predictor.close()
    assert backend._slots == [] and backend.engines == {} and RC.DRIVER.memory == {}
    assert RC.DRIVER.errors == [] and all(stack == [] for stack in RC.DRIVER.stacks.values())
    again = Predictor.from_artifacts(engines, backend="tensorrt", precision="fp32")  # the same primary context
    again.close()
    assert RC.DRIVER.primary_refs == 1


@pytest.mark.parametrize("version", ["8.6.1", "10.0.1", "10.13.0.35", "11.1.0"])
def test_contexts_share_one_activation_buffer_per_slot(engines, monkeypatch, version):
    """TensorRT's default gives every execution context activation memory of its own: the backend's contexts run
    in one buffer per slot (USER_MANAGED + set_device_memory on 10.1+, the strategy and ``device_memory`` on 10.0,
    without device memory on 8.x), and only what crosses to or from the host gets a page-locked buffer."""
    from hqsam_edge.export.manifest import read_manifest
    from hqsam_edge.runtime.open import open_backend

    manifest = read_manifest(engines)
    manifest.artifacts[-1].tool_versions["tensorrt"] = version
    manifest.write(engines)
    RT.as_version(monkeypatch, version)
    with open_backend(engines, backend="tensorrt") as backend:
        contexts = [c for slot in backend._slots for c in slot.contexts.values()]
        assert len(contexts) == 2 and all(c.own_memory is None and c.user_memory for c in contexts)
        assert len({c.user_memory[0] for c in contexts}) == 1  # the encoder's and decoder's contexts share it
        features = backend.encode(np.zeros((1, 3, 1024, 1024), np.float32))
        from hqsam_edge.runtime.compare import prompt_sets

        backend.decode(features, prompt_sets(2)["box"], multimask_output=False, hq_token_only=False)
        assert backend.features_to_numpy(features)["image_embeddings"].shape == (1, 256, 64, 64)
    # the image, the decoder's four prompt inputs and its two outputs; never the features
    assert len(RC.DRIVER.pinned) == 7 and RC.DRIVER.errors == []


def test_slots_bound_the_state_and_threads_run_at_once(engines):
    """Two slots: two threads encode and decode at the same time, each in its own slot, and device memory is two
    slots' worth however many threads come and go."""
    from hqsam_edge.export.manifest import read_manifest
    from hqsam_edge.runtime.base import ModelInfo
    from hqsam_edge.runtime.compare import prompt_sets
    from hqsam_edge.runtime.tensorrt_backend import TensorRTBackend

    manifest = read_manifest(engines)
    files = manifest.find("tensorrt").files
    sizes = []
    for slots in (1, 2):
        with TensorRTBackend(ModelInfo.from_manifest(manifest), engines / files["encoder"], engines / files["decoder"],
                             precision="fp32", slots=slots):
            sizes.append(RC.DRIVER.allocated())
    backend = TensorRTBackend(ModelInfo.from_manifest(manifest), engines / files["encoder"],
                              engines / files["decoder"], precision="fp32", slots=2)
    backend.activate()
    start = threading.Barrier(4)
    errors: list[BaseException] = []

    def worker():
        try:
            start.wait()
            features = backend.encode(np.zeros((1, 3, 1024, 1024), np.float32))
            backend.decode(features, prompt_sets(2)["box"], multimask_output=False, hq_token_only=False)
        except UsageError:
            pass  # a third thread's encode may take the slot of a feature set first: said, not wrong
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and RC.DRIVER.errors == [] and RC.DRIVER.allocated() == sizes[1]
    backend.deactivate()
    assert sizes[1] > sizes[0] and RC.DRIVER.memory == {}


def test_profile_shapes_are_read_for_dynamic_inputs_only(engines, monkeypatch):
    from hqsam_edge.runtime.open import open_backend

    made = []
    real = RT.ICudaEngine.__init__

    def record(self, *a, **k):
        real(self, *a, **k)
        made.append(self)

    monkeypatch.setattr(RT.ICudaEngine, "__init__", record)
    with open_backend(engines, backend="tensorrt") as backend:
        backend.encode(np.zeros((1, 3, 1024, 1024), np.float32))
    queried = {name for engine in made for name in engine.profile_queries}
    assert queried and queried <= {"image", "point_coords", "point_labels", "mask_input", "has_mask_input"}


def test_version_compatible_engines(recording_trt, fresh_folder, monkeypatch):
    """Host code is allowed only for plans the manifest records as version compatible, and such plans load on
    the TensorRT that built them or a newer one; other engines only on the same version."""
    from dataclasses import replace

    from hqsam_edge.export.manifest import read_manifest
    from hqsam_edge.runtime.open import open_backend
    from hqsam_edge.runtime.tensorrt_backend import check_versions

    build(spec(fresh_folder, version_compatible=True))
    with open_backend(fresh_folder, backend="tensorrt") as backend:
        assert backend._runtime.engine_host_code_allowed is True
    RT.as_version(monkeypatch, "10.16.2")  # a newer TensorRT loads them
    with open_backend(fresh_folder, backend="tensorrt"):
        pass
    manifest = read_manifest(fresh_folder)  # the same plans, recorded as not version compatible: refused
    manifest.artifacts[-1].engine = replace(manifest.artifacts[-1].engine, version_compatible=False)
    manifest.artifacts[-1].tool_versions["tensorrt"] = "10.16.2"
    manifest.write(fresh_folder)
    with pytest.raises(ArtifactError, match="cannot load encoder.fp32.engine"):
        with open_backend(fresh_folder, backend="tensorrt"):
            pass
    assert RC.DRIVER.primary_refs == 1  # retained once for the process, failed activations included
    check_versions("10.3.0", "10.3.0", False)
    for built, running, vc in (("10.3.0", "10.13.0", False), ("10.13.0", "10.3.0", True), ("8.5.2", "10.3.0", True),
                               ("8.6.1", "11.1.0", True), ("10.16.0", "12.0.0", True), ("11.1.0", "10.16.0", True)):
        with pytest.raises(ArtifactError, match=f"built with TensorRT {built}, this machine has TensorRT {running}"):
            check_versions(built, running, vc)
    for built, running in (("8.6.1", "10.3.0"), ("8.6.1", "9.2.0"), ("10.3.0", "11.1.0"), ("11.0.0", "11.4.1")):
        check_versions(built, running, True)  # one major step at most (NVIDIA: 8 -> 9 / 10, 10 -> 11)


def test_recording_stand_in_names_are_tensorrts():
    """Every class, method, property and enum member of the stand-ins exists in TensorRT 10.13's stubs, so the
    code under test can only call what TensorRT has."""
    import ast
    import importlib.util
    import inspect
    from pathlib import Path

    spec = importlib.util.find_spec("tensorrt_bindings")
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    stub = next((Path(p) / "tensorrt.pyi" for p in locations if (Path(p) / "tensorrt.pyi").is_file()), None)
    if stub is None:  # pip TensorRT's tensorrt_bindings holds the compiled module, no .pyi
        pytest.skip("tensorrt-stubs' tensorrt.pyi is not installed: pip install --no-deps tensorrt-stubs")
    text = stub.read_text().replace(", channel_axis: int) -> IScaleLayer", ", channel_axis: int = ...) -> IScaleLayer")
    tree = ast.parse(text.replace("in: ", "in_: "))
    classes: dict[str, set[str]] = {}
    for node in tree.body:
        if isinstance(node, ast.ClassDef):
            members = classes.setdefault(node.name, set())
            for item in ast.walk(node):
                if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    members.add(item.name)
                elif isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name):
                    members.add(item.target.id)
                elif isinstance(item, ast.ClassDef) and item is not node:
                    members.add(item.name)
    package = ast.parse((stub.parent / "__init__.pyi").read_text())  # nptype and friends
    functions = {n.name for t in (tree, package) for n in t.body if isinstance(n, ast.FunctionDef)}
    missing = []
    for name, value in vars(RT).items():
        if name.startswith("_") or name in ("BuildRecord", "BUILDS", "EXECUTIONS", "install", "as_version", "cuda",
                                            "annotations", "sys",
                                            "json", "threading", "np", "dataclass", "Any", "float32", "float16",
                                            "int32"):
            continue
        if inspect.isclass(value):
            if name not in classes:
                missing.append(name)
                continue
            for member, attr in vars(value).items():
                if member.startswith("_") or member == "MAGIC":
                    continue
                if callable(attr) or isinstance(attr, (property, RT._Member)) or inspect.isclass(attr):
                    if member not in classes[name]:
                        missing.append(f"{name}.{member}")
        elif callable(value) and name not in functions:
            missing.append(name)
    assert missing == [], f"the stand-in names what TensorRT 10.13 does not have: {missing}"


# -- real engines -------------------------------------------------------------------------------------------


@needs_trt
@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
def test_build_and_run_engines(fresh_folder, precision):
    from hqsam_edge import Predictor
    from tests.conftest import test_image

    bounds = RANDOM_WEIGHT_INT8 if precision == "int8" else {}
    artifact = build(BuildSpec(str(fresh_folder), backend="tensorrt", precision=precision, calib_limit=4, heldout=1,
                               max_prompts=8, max_points=4, **bounds))
    assert (fresh_folder / artifact.files["encoder"]).exists() and artifact.engine.compute_capability
    assert artifact.parity["mean_mask_iou"] >= {"fp32": 0.999, "fp16": 0.99, "int8": 0.5}[precision]
    trt_p = Predictor.from_artifacts(fresh_folder, backend="tensorrt", precision=precision)
    ort_p = Predictor.from_artifacts(fresh_folder, backend="onnxruntime", precision="fp32")
    image = test_image()
    for p in (trt_p, ort_p):
        p.set_image(image)
    boxes = np.array([[100, 80, 500, 400], [10, 10, 200, 200]])
    m1 = trt_p.predict_boxes(boxes)[0]
    m2 = ort_p.predict_boxes(boxes)[0]
    iou = (m1 & m2).sum() / max((m1 | m2).sum(), 1)
    assert iou >= (0.97 if precision != "int8" else 0.5)
    trt_p.close()
    ort_p.close()


@needs_trt
def test_real_build_keeps_the_pinned_layers_in_fp32(fresh_folder, tmp_path):
    """A weakly typed INT8 encoder (the one job with pins on 8.6 / 10.x) built DETAILED: every pinned layer the
    inspector names runs FP32 (obeyed constraints); the printed list is the pinned one."""
    from hqsam_edge.engines import tensorrt_build
    from hqsam_edge.engines.recipe import check_pins, generation_of, plan

    generation = generation_of(tensorrt_build.tensorrt_version())
    if generation == "11":
        pytest.skip("TensorRT 11 is strongly typed: no layer is pinned")
    job = plan(fresh_folder, spec(fresh_folder, "int8").engine_spec(), generation)[0]
    plan_bytes, pinned = tensorrt_build.build_serialized(job, tmp_path / "t.cache", detailed=True)
    assert pinned and list(tensorrt_build.pinned_layers(job)) == pinned
    check = check_pins(tensorrt_build.engine_information(plan_bytes), pinned)
    assert check.reduced == (), check.reduced


def test_bench_scaling_skips_batches_outside_the_profile(engines, monkeypatch):
    from hqsam_edge.benchmarks import harness, report

    monkeypatch.setattr(harness, "PROMPT_SCALING", (1, 8))
    monkeypatch.setattr(harness, "BATCH_SCALING", (1, 2))
    row = harness.measure(harness.Target("vit_tiny", "hq", "tensorrt", folder=str(engines)), 1, 0, True, "")
    assert row.error is None and set(row.scaling.decoder_ms_by_prompts) == {"1", "8"}  # 8 prompts: two calls
    assert set(row.scaling.encoder_images_per_s_by_batch) == {"1"}
    assert row.scaling.skipped_batches == {"2": 1.0}
    assert row.notes == ("10 points not run: the decoder's profile takes at most 4 points",)
    assert math.isnan(row.timings.decoder_10pt_ms) and row.timings.decoder_16box_ms > 0  # 16 boxes: four calls
    text = report.markdown([row])
    assert "batches 2 not run: the engine's profile takes at most 1" in text and row.notes[0] in text
