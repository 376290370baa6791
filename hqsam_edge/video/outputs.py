"""What a tracking run writes into its output folder, so that an interruption keeps what was done.

- ``annotated.mp4`` (``VideoSink``): H.264 in yuv420p in a fragmented MP4, which browsers play; libx264 where
  the PyAV wheel has it, else libopenh264; without either, MPEG-4 Part 2, with a warning that browsers will
  not play it. Fragments are written every second, so even a killed run leaves a playable temporary file.
- ``frames.jsonl`` (``ResultsSink``): one line per processed frame, ``{"frame", "timestamp", "objects":
  [{"track_id", "category_id", "score", "bbox" [x, y, w, h], "segmentation" (COCO RLE)}]}``, flushed each frame.
- ``results.json``: the YouTube-VIS results format (what HQ-YTVIS is scored from): one entry per track,
  ``{"video_id", "category_id", "score", "track_id", "segmentations": [RLE or None per frame]}``.

Each file is written under a temporary name beside its target and renamed onto it when the sink closes,
which it does at the end, on an error and on an interruption alike (``close`` in a ``finally``).
"""

from __future__ import annotations

import json
import os
import tempfile
import warnings
from collections import Counter
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

from ..apps.rle import encode_with_stats
from ..atomic import note_removed, temp_prefix, write_text
from ..errors import BackendUnavailableError, UsageError
from .frames import Frame
from .tracker import TrackedObject

H264_ENCODERS = ("libx264", "libopenh264")
FALLBACK_ENCODER = "mpeg4"
VIDEO_NAME, FRAMES_NAME, RESULTS_NAME = "annotated.mp4", "frames.jsonl", "results.json"


def available_encoder(preferred: tuple[str, ...] = H264_ENCODERS) -> str:
    """The first of ``preferred`` that this PyAV can encode with, else ``FALLBACK_ENCODER`` (with a warning)."""
    import av

    for name in preferred:
        try:
            av.codec.Codec(name, "w")
            return name
        except Exception:  # av raises UnknownCodecError (not exported under one name in every version)
            continue
    warnings.warn(f"this PyAV has no H.264 encoder ({', '.join(preferred)}): the annotated video is MPEG-4 Part 2, "
                  f"which media players show but browsers do not (pip install av from PyPI has libx264)",
                  stacklevel=2)
    return FALLBACK_ENCODER


class _TempFile:
    """A temporary beside ``target`` (a name ``atomic.remove_stale`` recognises), renamed onto it by
    ``commit``."""

    def __init__(self, target: Path) -> None:
        self.target = target
        fd, name = tempfile.mkstemp(prefix=temp_prefix(target.name), suffix=".part", dir=target.parent)
        os.close(fd)
        self.path = Path(name)

    def commit(self) -> None:
        os.chmod(self.path, 0o644)
        os.replace(self.path, self.target)

    def discard(self) -> None:
        if self.path.exists():
            self.path.unlink()
            note_removed(self.path)


class VideoSink:
    """Frames in, ``annotated.mp4`` out (see the module's doc). Opened at the first frame (its size)."""

    def __init__(self, path: Path, fps: float = 25.0, encoder: str | None = None, crf: int = 23) -> None:
        try:
            import av  # noqa: F401  (there, or the one-line error below)
        except ImportError:
            raise BackendUnavailableError("writing the annotated video needs PyAV: pip install 'hqsam-edge[video]'"
                                          ) from None
        self.path, self.fps, self.crf = Path(path), float(fps) if fps and fps > 0 else 25.0, crf
        self.encoder = encoder or available_encoder()
        self._container = self._stream = self._temp = None
        self.frames = 0

    def _open(self, height: int, width: int) -> None:
        import av

        self._temp = _TempFile(self.path)
        options = {"movflags": "frag_keyframe+empty_moov+default_base_moof"}
        self._container = av.open(str(self._temp.path), "w", format="mp4", options=options)
        rate = Fraction(self.fps).limit_denominator(1001)
        stream = self._container.add_stream(self.encoder, rate=rate)
        stream.width, stream.height = width + width % 2, height + height % 2  # yuv420p needs even sides
        stream.pix_fmt = "yuv420p"
        stream.codec_context.gop_size = max(1, int(round(self.fps)))  # a keyframe, so a fragment, each second
        if self.encoder == "libx264":
            stream.options = {"crf": str(self.crf), "preset": "veryfast"}
        self._stream = stream

    def write(self, rgb: np.ndarray) -> None:
        import av

        if self._container is None:
            self._open(*rgb.shape[:2])
        h, w = rgb.shape[:2]
        if h % 2 or w % 2:
            rgb = np.pad(rgb, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge")
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
        for packet in self._stream.encode(frame):  # type: ignore[union-attr]
            self._container.mux(packet)  # type: ignore[union-attr]
        self.frames += 1

    def close(self) -> Path | None:
        """Flush the encoder, close the file and rename it into place; the path, or None if no frame came."""
        if self._container is None:
            return None
        try:
            for packet in self._stream.encode(None):  # type: ignore[union-attr]
                self._container.mux(packet)
        finally:
            self._container.close()
            self._container = None
        self._temp.commit()  # type: ignore[union-attr]
        return self.path


def object_record(obj: TrackedObject) -> dict:
    rle, area, bbox = encode_with_stats(obj.mask)
    return {"track_id": obj.track_id, "category_id": obj.category, "score": round(obj.score, 4), "area": area,
            "bbox": bbox, "segmentation": rle}


class ResultsSink:
    """Per-frame results to ``frames.jsonl``, and at ``close`` the YouTube-VIS ``results.json``."""

    def __init__(self, folder: Path, video_id: int = 1) -> None:
        self.folder, self.video_id = Path(folder), video_id
        self._temp = _TempFile(self.folder / FRAMES_NAME)
        self._file = open(self._temp.path, "w", encoding="utf-8")
        self.frames = 0

    def write(self, frame: Frame, objects: list[TrackedObject]) -> None:
        line = {"frame": frame.index, "timestamp": round(frame.timestamp, 6), "height": frame.size[0],
                "width": frame.size[1], "objects": [object_record(o) for o in objects]}
        self._file.write(json.dumps(line, separators=(",", ":")) + "\n")
        self._file.flush()
        self.frames += 1

    def close(self) -> tuple[Path, Path]:
        """Close ``frames.jsonl`` and write ``results.json`` from it; both paths."""
        self._file.close()
        results = ytvis_results(self._temp.path, self.video_id)
        self._temp.commit()
        return self._temp.target, write_text(self.folder / RESULTS_NAME, json.dumps(results))


def ytvis_results(frames_jsonl: str | Path, video_id: int = 1) -> list[dict]:
    """A ``frames.jsonl`` -> YouTube-VIS results: per track, its RLE on each processed frame (None where it is
    absent), its most frequent class and its mean score. A torn last line (a killed run) is left out."""
    per_track: dict[int, dict[int, dict]] = {}
    categories: dict[int, Counter] = {}
    scores: dict[int, list[float]] = {}
    n = 0
    with open(frames_jsonl, encoding="utf-8") as f:
        for line in f:
            try:
                record = json.loads(line)
            except ValueError:
                break
            for obj in record["objects"]:
                tid = obj["track_id"]
                per_track.setdefault(tid, {})[n] = obj["segmentation"]
                categories.setdefault(tid, Counter())[obj["category_id"]] += 1
                scores.setdefault(tid, []).append(obj["score"])
            n += 1
    return [{"video_id": video_id, "track_id": tid, "category_id": categories[tid].most_common(1)[0][0],
             "score": float(np.mean(scores[tid])), "segmentations": [frames.get(t) for t in range(n)]}
            for tid, frames in sorted(per_track.items())]


@dataclass(frozen=True)
class TrackOutputs:
    """The files a run wrote (None: not written) and the video's encoder."""

    video: Path | None
    frames: Path | None
    results: Path | None
    encoder: str | None


@dataclass(frozen=True)
class OutputSpec:
    """``video``: write ``annotated.mp4``; ``encoder``: force one (None: H.264 if this PyAV has one)."""

    video: bool = True
    encoder: str | None = None
    crf: int = 23

    def __post_init__(self) -> None:
        if not 0 <= self.crf <= 51:
            raise UsageError("the video quality (crf) lies in 0..51 (lower is better; 23 is x264's default)")
