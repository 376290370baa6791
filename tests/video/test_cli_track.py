"""``hqsam-edge track`` and the overlapped run: the command on a small mp4 (box prompts, a real exported model;
a detector graph built here), the overlapped stages giving the plain loop's results file for file, and Ctrl-C
on a paced live stand-in as the normal end of a stream (a playable video, exit 0)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from hqsam_edge.apps.detector import letterbox
from hqsam_edge.cli import app
from hqsam_edge.video import DetectionsFile, OutputSpec, TrackSpec, track
from hqsam_edge.video.synthetic import StandInSegmenter, crossing_scene
from tests.video.test_prompts import graph
from tests.video.test_track import first_boxes, read_video, written_lines

pytest.importorskip("scipy")
ROOT = Path(__file__).resolve().parents[2]
N = 12


@pytest.fixture(scope="module")
def scene():
    return crossing_scene(N)


@pytest.fixture
def scene_mp4(tmp_path, make_video, scene):
    return make_video(tmp_path / "scene.mp4", [scene.render(t)[0] for t in range(N)], fps=10)


def box_arg(box) -> str:
    return ",".join(f"{v:g}" for v in box)


def test_the_command_from_an_mp4_to_an_annotated_video_with_a_real_model(tmp_path, tiny_folder, make_video):
    source = make_video(tmp_path / "clip.mp4", 6)
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["track", str(tiny_folder), "--source", str(source), "--box", "10,8,40,30",
                                      "--box", "30,20,60,44", "--max-frames", "3", "--out", str(out),
                                      "--backend", "onnxruntime"])
    assert result.exit_code == 0, result.output
    assert "tracked" in result.stdout and str(out / "annotated.mp4") in result.stdout
    assert "FPS; read" in result.stderr and "dropped" in result.stderr  # the progress line
    assert len(read_video(out / "annotated.mp4")[2]) == 3
    assert len((out / "frames.jsonl").read_text().splitlines()) == 3
    assert {r["track_id"] for r in json.loads((out / "results.json").read_text())} <= {1, 2}


def detector_rows(scene, classes) -> np.ndarray:
    """End-to-end rows [1, K, 6] for a 64x64 detector input: frame 0's boxes, letterboxed, score 0.9."""
    _, box = letterbox(scene.render(0)[0], (64, 64))
    boxes = scene.detections(0).boxes * box.gain + np.tile(box.pad, 2)
    return np.concatenate([boxes, np.full((len(boxes), 1), 0.9), np.asarray(classes, np.float32)[:, None]], 1)[None]


def test_the_command_with_a_detector_graph(tmp_path, scene, scene_mp4, monkeypatch):
    from hqsam_edge.runtime.choice import ModelChoice

    monkeypatch.setattr(ModelChoice, "open", lambda self: StandInSegmenter(seed=1))
    det = graph(tmp_path / "det.onnx", detector_rows(scene, [0, 0, 0, 1]))
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["track", "--random-weights", "--source", str(scene_mp4), "--detector", str(det),
                                      "--every", "4", "--classes", "0", "--score", "0.5", "--out", str(out)])
    assert result.exit_code == 0, result.output
    results = json.loads((out / "results.json").read_text())
    assert len(results) >= 3 and {r["category_id"] for r in results} == {0}  # class 1 filtered out
    first = json.loads((out / "frames.jsonl").read_text().splitlines()[0])
    assert [o["track_id"] for o in first["objects"]] == [1, 2, 3]
    assert len(read_video(out / "annotated.mp4")[2]) == N


@pytest.mark.parametrize("prompts", ["boxes", "detections"])
def test_the_overlapped_run_writes_what_the_plain_loop_writes(tmp_path, scene, scene_mp4, prompts):
    if prompts == "boxes":
        given = first_boxes(scene)
    else:
        rows = [f"{t + 1},-1,{x0},{y0},{x1 - x0},{y1 - y0},0.9" for t in range(0, N, 3)
                for x0, y0, x1, y1 in scene.detections(t).boxes]
        (tmp_path / "det.txt").write_text("\n".join(rows) + "\n")
        given = DetectionsFile.read(tmp_path / "det.txt")
    runs = {}
    for pipeline in (False, True):
        out = tmp_path / f"out_{pipeline}"
        summary = track(StandInSegmenter(seed=3), scene_mp4, given, out,
                        TrackSpec(overlapped=pipeline, output=OutputSpec(video=pipeline)))
        assert summary.frames == N and summary.stages.predict > 0 and summary.latency_max > 0
        runs[pipeline] = [(out / name).read_bytes() for name in ("frames.jsonl", "results.json")]
    assert runs[True] == runs[False]
    assert len(read_video(tmp_path / "out_True" / "annotated.mp4")[2]) == N


CHILD = """
import sys, time
from pathlib import Path
import hqsam_edge.video.api as api
import hqsam_edge.video.sources as sources
from hqsam_edge.runtime.choice import ModelChoice
from hqsam_edge.video.frames import Frame
from hqsam_edge.video.sources import FrameSource, LiveSource
from hqsam_edge.video.synthetic import StandInSegmenter, crossing_scene

scene = crossing_scene(16)
pictures = [scene.render(t)[0] for t in range(16)]

def camera():  # a paced stand-in for a camera: 50 frames a second, endless
    t = 0
    while True:
        time.sleep(0.02)
        yield pictures[t % 16]
        t += 1

class SlowFile(FrameSource):  # a long file, read at the same pace
    name = "long.mp4"
    def __iter__(self):
        for t in range(100000):
            time.sleep(0.02)
            yield Frame(t, t / 50, pictures[t % 16], time.monotonic())

LIVE = {live!r}
api.open_source = lambda spec: LiveSource("camera", camera, timeout_s=5) if LIVE else SlowFile()
sources.open_source = lambda location: None
ModelChoice.open = lambda self: StandInSegmenter()
from hqsam_edge.cli import app
app({args!r}, prog_name="hqsam-edge")
"""


@pytest.mark.parametrize("live, code", [(True, 0), (False, 130)], ids=["live", "file"])
def test_ctrl_c_ends_a_live_stream_normally_and_keeps_a_playable_video(tmp_path, scene, live, code):
    """SIGINT on a live source: the stream stops cleanly, exit 0; on a file: an interruption, exit 130. Either way
    the video plays (PyAV reads every frame written) and the results so far are kept."""
    out = tmp_path / "out"
    args = ["track", "--random-weights", "--source", "stand-in", "--out", str(out),
            *[a for b in first_boxes(scene).boxes for a in ("--box", box_arg(b))]]
    script = tmp_path / "child.py"
    script.write_text(textwrap.dedent(CHILD.format(live=live, args=args)))
    child = subprocess.Popen([sys.executable, str(script)], cwd=tmp_path, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True,
                             env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        deadline = time.monotonic() + 60
        while written_lines(out) < 5 and time.monotonic() < deadline and child.poll() is None:
            time.sleep(0.05)
        assert child.poll() is None, child.communicate()
        child.send_signal(signal.SIGINT)
        stdout, stderr = child.communicate(timeout=60)
    finally:
        if child.poll() is None:
            child.kill()
    assert child.returncode == code, (stdout, stderr)
    if live:
        assert "stopped by SIGINT" in stdout and "error" not in stderr, (stdout, stderr)
    else:
        assert "error: interrupted by SIGINT" in stderr and "kept the annotated video" in stderr, stderr
    lines = (out / "frames.jsonl").read_text().splitlines()
    assert len(lines) >= 5 and len(read_video(out / "annotated.mp4")[2]) == len(lines)
    results = json.loads((out / "results.json").read_text())
    assert [r["track_id"] for r in results] == [1, 2, 3, 4]
    assert all(len(r["segmentations"]) == len(lines) for r in results)
    assert not list(out.glob(".*"))
