"""``track``: from real video files (H.264 mp4, MJPEG avi), sequences and a paced live stand-in to an annotated
H.264 video, per-frame RLEs and YouTube-VIS results; interruptions and errors keep what was written."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest

from hqsam_edge.errors import DataError
from hqsam_edge.video import DetectionsFile, FirstFramePrompts, OutputSpec, TrackSpec, track
from hqsam_edge.video.frames import Frame
from hqsam_edge.video.outputs import available_encoder
from hqsam_edge.video.sources import LiveSource
from hqsam_edge.video.synthetic import StandInSegmenter, crossing_scene
from hqsam_edge.video.tracker import mask_box

pytest.importorskip("scipy")
N = 16


@pytest.fixture(scope="module")
def scene():
    return crossing_scene(N)


def first_boxes(scene) -> FirstFramePrompts:
    return FirstFramePrompts(boxes=tuple(tuple(float(v) for v in mask_box(m)) for m in scene.render(0)[1].values()))


def read_video(path):
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(stream)]
        return stream.codec_context.name, stream.codec_context.pix_fmt, frames


@pytest.mark.parametrize("name, codec", [("scene.mp4", "libx264"), ("scene.avi", "mjpeg")])
def test_a_video_file_to_an_annotated_video_and_results(tmp_path, make_video, scene, name, codec):
    source = make_video(tmp_path / name, [scene.render(t)[0] for t in range(N)], codec=codec, fps=10)
    out = tmp_path / "out"
    summary = track(StandInSegmenter(seed=0), source, first_boxes(scene), out)
    assert summary.frames == N and summary.dropped == 0 and summary.tracks == 4
    assert summary.decoder_calls == N  # all prompts of a frame in one decoder call
    codec_name, pix_fmt, frames = read_video(out / "annotated.mp4")
    assert (codec_name, pix_fmt, len(frames)) == ("h264", "yuv420p", N)  # what browsers play
    assert frames[0].shape == (128, 160, 3)
    lines = (out / "frames.jsonl").read_text().splitlines()
    assert len(lines) == N
    first = json.loads(lines[0])
    assert [o["track_id"] for o in first["objects"]] == [1, 2, 3, 4]
    assert first["objects"][0]["segmentation"]["size"] == [128, 160]
    results = json.loads((out / "results.json").read_text())
    assert [r["track_id"] for r in results] == [1, 2, 3, 4]
    assert all(len(r["segmentations"]) == N and r["video_id"] == 1 for r in results)
    assert not list(out.glob(".*"))  # no temporaries left


def written_lines(out) -> int:
    """Lines of the frames.jsonl being written (its temporary name) so far."""
    return sum(len(p.read_text().splitlines()) for p in out.glob(".frames.jsonl*"))


@pytest.mark.parametrize("pipeline", [False, True], ids=["plain", "pipelined"])
@pytest.mark.parametrize("how", ["KeyboardInterrupt", "SIGTERM"])
def test_an_interruption_keeps_a_playable_video_and_the_results_so_far(tmp_path, scene, how, pipeline):
    import os
    import signal

    from hqsam_edge.interrupts import Interrupted

    out = tmp_path / "out"

    def frames():
        for t in range(N):
            if t == 7:
                if how == "SIGTERM":
                    deadline = time.monotonic() + 20  # pipelined: this runs ahead of the model; let it catch up
                    while written_lines(out) < 7 and time.monotonic() < deadline:
                        time.sleep(0.01)
                    os.kill(os.getpid(), signal.SIGTERM)  # a stopped container; track() turns it into Interrupted
                else:
                    raise KeyboardInterrupt  # Ctrl-C, the normal way to stop a live stream
            yield Frame(t, t / 10, scene.render(t)[0])

    with pytest.raises(Interrupted if how == "SIGTERM" else KeyboardInterrupt):
        track(StandInSegmenter(seed=0), frames(), first_boxes(scene), out, TrackSpec(overlapped=pipeline))
    assert len(read_video(out / "annotated.mp4")[2]) == 7
    results = json.loads((out / "results.json").read_text())
    assert len(results) == 4 and all(len(r["segmentations"]) == 7 for r in results)
    assert not list(out.glob(".*"))


def test_an_error_mid_stream_is_raised_and_what_was_written_is_kept(tmp_path, scene):
    def frames():
        for t in range(5):
            yield Frame(t, t / 10, scene.render(t)[0])
        yield Frame(5, 0.5, np.zeros((64, 64, 3), np.uint8))

    from hqsam_edge.video.frames import SizeGuard

    guard = SizeGuard("camera")
    out = tmp_path / "out"
    with pytest.raises(DataError, match="frame 5 is 64x64, but the stream began at 160x128"):
        track(StandInSegmenter(), (guard.check(f) for f in frames()), first_boxes(scene), out)
    assert len(read_video(out / "annotated.mp4")[2]) == 5
    assert len((out / "frames.jsonl").read_text().splitlines()) == 5


def test_detections_from_a_file_start_and_keep_tracks(tmp_path, scene):
    rows = []
    for t in range(N):
        for x0, y0, x1, y1 in scene.detections(t).boxes:
            rows.append(f"{t + 1},-1,{x0},{y0},{x1 - x0},{y1 - y0},0.9,-1,-1,-1")
    (tmp_path / "det.txt").write_text("\n".join(rows) + "\n")
    sequence = tmp_path / "frames"
    sequence.mkdir()
    from PIL import Image

    for t in range(N):
        Image.fromarray(scene.render(t)[0]).save(sequence / f"{t:04d}.png")
    out = tmp_path / "out"
    summary = track(StandInSegmenter(seed=2), sequence, DetectionsFile.read(tmp_path / "det.txt"), out,
                    TrackSpec(output=OutputSpec(video=False)))
    assert summary.tracks == 4 and summary.frames == N
    assert not (out / "annotated.mp4").exists()
    last = json.loads((out / "frames.jsonl").read_text().splitlines()[-1])
    assert sorted(o["track_id"] for o in last["objects"]) == [1, 2, 3, 4]


def test_a_paced_live_source_drops_frames_and_latency_stays_bounded(tmp_path, scene):
    pictures = [scene.render(t)[0] for t in range(N)]

    def camera():
        for rgb in pictures * 3:
            time.sleep(1 / 200)
            yield rgb

    class SlowSegmenter(StandInSegmenter):
        def set_image(self, image, image_format="RGB"):
            time.sleep(0.03)  # a model 6x slower than the camera
            super().set_image(image, image_format)

    source = LiveSource("camera", camera, timeout_s=2)
    summary = track(SlowSegmenter(), source, first_boxes(scene), tmp_path / "out")
    assert summary.dropped > 0 and summary.frames + summary.dropped == 3 * N
    assert summary.latency_max < 0.7  # one frame's work, not a queue: without drops the last frame waits ~1.4 s


def test_odd_sizes_and_a_missing_h264_encoder(tmp_path, scene):
    frames = [Frame(t, t / 10, scene.render(t)[0][:127, :159]) for t in range(3)]
    track(StandInSegmenter(), frames, FirstFramePrompts(boxes=((9, 29, 31, 51),)), tmp_path / "out")
    assert read_video(tmp_path / "out" / "annotated.mp4")[2][0].shape == (128, 160, 3)  # yuv420p: padded to even
    with pytest.warns(UserWarning, match="no H.264 encoder"):
        assert available_encoder(("no-such-encoder",)) == "mpeg4"


def test_any_predictor_backend(tmp_path, tiny_folder, make_video):
    """A real Predictor (Light HQ-SAM, random weights, ONNX Runtime) through the same API: the encoder input is
    made in the read step (set_image_tensor), one decoder call a frame."""
    from hqsam_edge.runtime.predictor import Predictor

    source = make_video(tmp_path / "clip.mp4", 3)
    with Predictor.from_artifacts(tiny_folder, backend="onnxruntime", precision="fp32") as predictor:
        summary = track(predictor, source, FirstFramePrompts(boxes=((10, 8, 40, 30),)), tmp_path / "out")
    assert summary.frames == 3 and summary.decoder_calls <= 3
    assert len(read_video(tmp_path / "out" / "annotated.mp4")[2]) == 3
