"""Tracking speed: the pipelined tracker against the plain loop, the tracker's own share, live latency, memory.

Four measurements, in one run:

1. ``speed``: frames per second of ``run_overlapped`` (reading, the model and writing overlapped on the stream
   engine) against ``run_plain`` (read, predict, associate, write one after another) on the same exported
   folder (or ``--stand-in``) and the same video (a synthetic scene of moving, crossing shapes encoded as H.264),
   in interleaved rounds (plain, pipelined, pipelined, plain, ...) so that a busy machine slows both alike; the
   median of each.
2. ``share``: the tracker's own work per frame in the plain runs: association (``TrackMode.associate``) and
   drawing (``draw.annotate``, timed apart from the video's encoder), as a share of a frame's time.
3. ``live``: a paced stand-in camera (``--camera-fps``) and a model of fixed speed (the stand-in segmenter
   slowed to ``--model-ms``), pipelined for ``--live-seconds``: latency from capture to written result in the
   middle and the last third of the run (the first fills the pipeline; bounded: the last third no worse than
   the middle one), frames dropped.
4. ``memory``: RSS over ``--memory-frames`` frames (``--memory-frames 10000`` for the issue's figure) of a small
   picture (``--memory-size``) with the stand-in segmenter, pipelined, writing video and results; the slope of a
   least-squares line through the samples after the first tenth, in KiB per 1000 frames (flat: about 0).

Small defaults keep a run to seconds; the lead runs the long ones::

    python benchmarks/track_speed.py --stand-in --frames 8 --rounds 1 --live-seconds 2 --memory-frames 200
    python benchmarks/track_speed.py build/hq_vit_tiny --backend onnxruntime --frames 60 --rounds 3 \\
        --memory-frames 10000 --json track_speed.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from hqsam_edge.video import FirstFramePrompts, OutputSpec
from hqsam_edge.video.draw import annotate
from hqsam_edge.video.frames import Frame
from hqsam_edge.video.meter import Meter
from hqsam_edge.video.mode import FrameResult, TrackMode, run_plain
from hqsam_edge.video.overlapped import run_overlapped
from hqsam_edge.video.sources import LiveSource, open_source
from hqsam_edge.video.synthetic import StandInSegmenter, crossing_scene
from hqsam_edge.video.tracker import mask_box


def rss_kib() -> float:
    """The process's resident set now (Linux ``/proc/self/statm``)."""
    import os

    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1024


def write_scene(path: Path, frames: int, size: tuple[int, int]) -> tuple[Path, FirstFramePrompts]:
    """A crossing scene of ``frames`` frames (w, h) as H.264 mp4, and first-frame boxes of its objects."""
    import av

    w, h = size
    scene = crossing_scene(frames)
    scene = type(scene)(scene.shapes, height=h, width=w, frames=frames, seed=scene.seed)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        for t in range(frames):
            for packet in stream.encode(av.VideoFrame.from_ndarray(scene.render(t)[0], format="rgb24")):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    boxes = tuple(tuple(float(v) for v in mask_box(m)) for m in scene.render(0)[1].values() if m.any())
    return path, FirstFramePrompts(boxes=boxes)


def open_segmenter(args):
    if args.stand_in or args.folder is None:
        return StandInSegmenter()
    from hqsam_edge.runtime.predictor import Predictor

    return Predictor.from_artifacts(args.folder, backend=args.backend, precision=args.precision)


def one_run(segmenter, video: Path, prompts, pipelined: bool, out: Path) -> tuple[float, object, list]:
    """One run over the video: FPS, the summary, and (plain runs) each frame's result for the drawing time."""
    mode = TrackMode(segmenter, prompts, out)
    results: list[FrameResult] = []
    runner = run_overlapped if pipelined else run_plain
    summary = runner(mode, open_source(str(video)), results=results)
    return summary.fps, summary, results


def speed(args, segmenter, tmp: Path) -> dict:
    video, prompts = write_scene(tmp / "scene.mp4", args.frames, args.size)
    one_run(segmenter, video, prompts, True, tmp / "warm")  # warm-up: first calls, caches
    fps: dict[str, list[float]] = {"plain": [], "pipelined": []}
    shares = []
    for r in range(args.rounds):
        order = [False, True] if r % 2 == 0 else [True, False]
        for pipelined in order:
            rate, summary, results = one_run(segmenter, video, prompts, pipelined, tmp / f"r{r}{pipelined}")
            fps["pipelined" if pipelined else "plain"].append(rate)
            if not pipelined:
                t0 = time.perf_counter()
                for res in results:
                    annotate(res.frame.rgb, res.objects, fps=10.0)
                draw = time.perf_counter() - t0
                s = summary.stages
                frame_time = s.read + s.predict + s.associate + s.write
                shares.append({"associate": s.associate / frame_time, "draw": draw / frame_time,
                               "write_all": s.write / frame_time})
    plain, piped = statistics.median(fps["plain"]), statistics.median(fps["pipelined"])
    share = {k: statistics.median(x[k] for x in shares) for k in shares[0]}
    return {"frames": args.frames, "size": list(args.size), "rounds": args.rounds, "plain_fps": plain,
            "pipelined_fps": piped, "speedup": piped / plain if plain else 0.0, "fps_samples": fps,
            "tracker_share": share}


class RecordingMeter(Meter):
    """A ``Meter`` that also keeps each frame's latency (unless ``every``: then only RSS every ``every`` frames,
    so that the memory run measures the tracker, not this record)."""

    def __init__(self, *a, every: int = 0, **k) -> None:
        super().__init__(*a, **k)
        self.latencies: list[float] = []
        self.rss: list[tuple[int, float]] = []
        self.every = every

    def add(self, read, predict, associate, write, latency) -> None:
        super().add(read, predict, associate, write, latency)
        if not self.every:
            self.latencies.append(latency)
        if self.every and self.frames % self.every == 0:
            self.rss.append((self.frames, rss_kib()))


def live(args, tmp: Path) -> dict:
    scene = crossing_scene(40)
    pictures = [scene.render(t)[0] for t in range(40)]
    prompts = FirstFramePrompts(boxes=tuple(tuple(float(v) for v in mask_box(m)) for m in scene.render(0)[1].values()))

    def camera():
        t, period, start = 0, 1.0 / args.camera_fps, time.monotonic()
        while True:
            time.sleep(max(0.0, start + t * period - time.monotonic()))
            yield pictures[t % len(pictures)]
            t += 1

    class FixedSpeed(StandInSegmenter):
        def set_image(self, image, image_format="RGB"):
            time.sleep(args.model_ms / 1000)
            super().set_image(image, image_format)

    source = LiveSource("paced camera", camera, timeout_s=5)
    stop = threading.Event()
    threading.Timer(args.live_seconds, stop.set).start()
    meter = RecordingMeter(lambda: source.dropped)
    summary = run_overlapped(TrackMode(FixedSpeed(), prompts, tmp / "live", output=OutputSpec(video=False)), source,
                            stop=stop, meter=meter)
    lat = np.asarray(meter.latencies) * 1000
    third = max(1, len(lat) // 3)
    first, last = lat[third:2 * third], lat[-third:]
    return {"camera_fps": args.camera_fps, "model_ms": args.model_ms, "seconds": args.live_seconds,
            "frames": summary.frames, "dropped": summary.dropped, "fps": summary.fps,
            "latency_ms_middle_third": {"mean": float(first.mean()), "max": float(first.max())},
            "latency_ms_last_third": {"mean": float(last.mean()), "max": float(last.max())},
            "bounded": bool(last.mean() <= 1.5 * first.mean() + 5)}


def memory(args, tmp: Path) -> dict:
    w, h = args.memory_size
    scene = crossing_scene(60)
    scene = type(scene)(scene.shapes, height=h, width=w, frames=60, seed=scene.seed)
    pictures = [scene.render(t)[0] for t in range(60)]
    prompts = FirstFramePrompts(boxes=tuple(tuple(float(v) for v in mask_box(m))
                                            for m in scene.render(0)[1].values() if m.any()))
    frames = (Frame(t, t / 25, pictures[t % 60]) for t in range(args.memory_frames))
    every = max(1, args.memory_frames // 50)
    meter = RecordingMeter(every=every)
    run_overlapped(TrackMode(StandInSegmenter(), prompts, tmp / "memory"), frames, meter=meter)
    samples = meter.rss[len(meter.rss) // 10:]
    xs, ys = np.array([s[0] for s in samples], float), np.array([s[1] for s in samples], float)
    slope = float(np.polyfit(xs, ys, 1)[0] * 1000) if len(samples) >= 2 else 0.0
    return {"frames": args.memory_frames, "size": [w, h], "rss_kib_start": float(ys[0]) if len(ys) else 0.0,
            "rss_kib_end": float(ys[-1]) if len(ys) else 0.0, "slope_kib_per_1000_frames": slope}


def size(text: str) -> tuple[int, int]:
    w, h = (int(v) for v in text.lower().split("x"))
    return w, h


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", nargs="?", help="exported artifact folder (default: the stand-in segmenter)")
    parser.add_argument("--stand-in", action="store_true", help="the stand-in segmenter instead of a model")
    parser.add_argument("--backend", default="onnxruntime")
    parser.add_argument("--precision", default=None)
    parser.add_argument("--frames", type=int, default=24, help="frames of the speed video")
    parser.add_argument("--size", type=size, default=(320, 240), help="the speed video's WxH")
    parser.add_argument("--rounds", type=int, default=2, help="interleaved rounds of plain and pipelined")
    parser.add_argument("--camera-fps", type=float, default=60.0)
    parser.add_argument("--model-ms", type=float, default=30.0, help="the live model's fixed time per frame")
    parser.add_argument("--live-seconds", type=float, default=3.0)
    parser.add_argument("--memory-frames", type=int, default=500, help="10000 for the issue's figure")
    parser.add_argument("--memory-size", type=size, default=(96, 64))
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        figures = {"speed": speed(args, open_segmenter(args), Path(tmp)), "live": live(args, Path(tmp)),
                   "memory": memory(args, Path(tmp)),
                   "model": "stand-in" if args.stand_in or args.folder is None else f"{args.folder} {args.backend}"}
    s, lv, m = figures["speed"], figures["live"], figures["memory"]
    print(f"speed ({figures['model']}, {s['frames']} frames {s['size'][0]}x{s['size'][1]}, {s['rounds']} rounds): "
          f"plain {s['plain_fps']:.1f} FPS, pipelined {s['pipelined_fps']:.1f} FPS, x{s['speedup']:.2f}")
    shares = ", ".join(f"{k} {100 * v:.1f}%" for k, v in s["tracker_share"].items())
    print(f"tracker's share of a frame (plain): {shares} (write_all: drawing, encoding, RLE, files)")
    print(f"live ({lv['camera_fps']:g} FPS camera, {lv['model_ms']:g} ms model, {lv['seconds']:g} s): {lv['frames']} "
          f"frames, {lv['dropped']} dropped; latency mean/max middle third {lv['latency_ms_middle_third']['mean']:.0f}/"
          f"{lv['latency_ms_middle_third']['max']:.0f} ms, last third {lv['latency_ms_last_third']['mean']:.0f}/"
          f"{lv['latency_ms_last_third']['max']:.0f} ms, bounded: {lv['bounded']}")
    print(f"memory ({m['frames']} frames {m['size'][0]}x{m['size'][1]}): RSS {m['rss_kib_start'] / 1024:.1f} -> "
          f"{m['rss_kib_end'] / 1024:.1f} MiB, slope {m['slope_kib_per_1000_frames']:.1f} KiB per 1000 frames")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
