"""``track``: follow objects through a video, an image sequence, a camera or a stream (``hqsam_edge.video``).

Everything that can be checked while the options are read is: the source (a missing file, an empty folder or
glob, a camera that is not there), each ``--box`` and ``--point``, the detections file, the detector graph's
layout (read from the file), ``--show`` without a display. Then the model opens (the heavy imports) and
``video.track`` runs; its summary is the command's output. On a live source Ctrl-C (or SIGTERM) ends the run
normally, exit 0; on a file it is an interruption, exit 130 / 143 (``video.api.track`` says why); either way
the video and the results so far are kept.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated

import typer

from . import options as o
from .group import command


def source_location(location: str) -> str:
    """A source that exists (``video.sources.open_source`` constructs its reader; nothing is read yet)."""
    from ..video.sources import open_source

    open_source(location)
    return location


def default_out(source: str) -> Path:
    """``track_<name>``: the source's file or folder name (a camera's, a URL's last part), in the current folder."""
    name = Path(source.rstrip("/").split("?")[0]).stem or "stream"
    return Path("track_" + (re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_.") or "stream"))


def show_possible(show: bool) -> bool:
    if show:
        from ..errors import UsageError
        from ..video.window import display_problem

        problem = display_problem()
        if problem is not None:
            raise UsageError(problem)
    return show


@command()
def track(
    folder: o.Folder = None,
    *,
    source: Annotated[str, typer.Option(
        "--source", "-s", callback=o.checked(source_location),
        help="Video file (mp4, mkv, avi, mov...), image folder or quoted glob, /dev/videoN, rtsp:// or http(s):// "
             "URL, or a GStreamer pipeline (gst:...).")],
    box: Annotated[list[str] | None, typer.Option(
        "--box", callback=o.checked(lambda b: _prompts().parse_track_box(b)),
        help="x0,y0,x1,y1 in pixels of the first frame: one object each; repeat.")] = None,
    point: Annotated[list[str] | None, typer.Option(
        "--point", callback=o.checked(lambda p: _prompts().parse_point_group(p)),
        help="x,y[,label] (label 1 fg, 0 bg) on the first frame, several of one object joined by ';'; repeat, one "
             "object each.")] = None,
    detections: Annotated[Path | None, typer.Option(
        "--detections", callback=o.checked(lambda f: _prompts().DetectionsFile.read(f)),
        help="Per-frame boxes: MOT Challenge det.txt, or COCO-style JSON (image_id = frame index).")] = None,
    detector: o.DetectorGraph = None,
    every: Annotated[int, typer.Option("--every", min=1, help="--detector: run it on every N-th frame.")] = 1,
    classes: Annotated[list[str] | None, typer.Option(
        "--classes", callback=lambda v: o.class_ids(v, "--classes"),
        help="--detector: keep only these class ids (0-based, comma-separated or repeated).")] = None,
    score: Annotated[float, typer.Option(
        "--score", min=0.0, max=1.0, help="--detector: the least score a box needs.")] = 0.25,
    out: Annotated[Path | None, typer.Option(
        "--out", "-o", help="Folder for annotated.mp4, frames.jsonl (COCO RLE per frame, track ids) and results.json "
                            "(YouTube-VIS); default: track_<source name>.")] = None,
    show: Annotated[bool, typer.Option(
        "--show", callback=show_possible,
        help="Also show the annotated frames in a window (needs a display; q or Esc stops).")] = False,
    video: Annotated[bool, typer.Option("--video/--no-video", help="Write annotated.mp4.")] = True,
    live: Annotated[bool | None, typer.Option(
        "--live/--no-live", help="Keep only the newest frame, dropping what the model cannot keep up with "
                                 "(default: cameras and streams are live, files are not).")] = None,
    max_frames: Annotated[int | None, typer.Option("--max-frames", min=1, help="Stop after this many frames.")] = None,
    timeout: Annotated[float, typer.Option(
        "--timeout", min=0.1, help="Seconds without a frame before a stream counts as stalled.")] = 10.0,
    plain: Annotated[bool, typer.Option(
        "--plain", help="Run the stages one after another (the baseline) instead of overlapped.")] = False,
    backbone: o.Backbone = "vit_tiny", variant: o.Variant = "hq", checkpoint: o.Checkpoint = None,
    random_weights: o.RandomWeights = False, backend: o.Backend = "auto", precision: o.ModelPrecision = None,
    dla_core: o.DlaCore = None,
):
    """Follow objects through a video or stream: an annotated video, per-frame RLEs with ids, YouTube-VIS results."""
    from ..apps.detector import DetectorSpec
    from ..runtime.choice import ModelChoice
    from ..video import OutputSpec, SourceSpec, TrackSpec
    from ..video import track as run_track
    from ..video.prompts import PromptChoice

    prompts = PromptChoice(tuple(box or ()), tuple(point or ()), None if detections is None else str(detections),
                           None if detector is None else str(detector),
                           DetectorSpec(every=every, min_score=score, classes=classes))  # type: ignore[arg-type]
    prompts.check()
    model = ModelChoice(folder=folder, backend=backend, precision=precision, backbone=backbone, variant=variant,
                        checkpoint=checkpoint, random_weights=random_weights, dla_core=dla_core)
    spec = TrackSpec(output=OutputSpec(video=video), live=live, timeout_s=timeout, max_frames=max_frames,
                     overlapped=not plain, show=show)
    summary = run_track(model.open(), SourceSpec(source, live, timeout), prompts.open(), out or default_out(source),
                        spec)
    typer.echo(summary.line())


def _prompts():
    from ..video import prompts

    return prompts
