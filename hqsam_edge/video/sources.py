"""Where frames come from: video files, image sequences, cameras and network streams.

``open_source(location)`` picks the reader from what ``location`` names:

- a video file (mp4 / mkv / avi / mov / webm..., H.264 / H.265 / MJPEG...): PyAV (FFmpeg), every frame;
- a folder of images, or a glob pattern (``frames/*.jpg``): the pictures in name order, every one;
- ``/dev/videoN``: a V4L2 camera, through PyAV's ``v4l2`` input (live);
- ``rtsp://``, ``rtmp://``, ``udp://``, ``srt://`` URLs: PyAV (live); ``http(s)://`` URLs too, live unless the
  path ends in a video file's suffix (an mp4 served over HTTP is a file: every frame);
- a GStreamer pipeline, ``gst:<pipeline>`` or any text with `` ! `` in it (Jetson's CSI cameras:
  ``nvarguscamerasrc ! video/x-raw(memory:NVMM),width=1280,height=720 ! nvvidconv ! video/x-raw,format=BGRx !
  videoconvert ! video/x-raw,format=BGR ! appsink drop=1``): OpenCV's GStreamer backend, which pip's OpenCV
  wheels do not have; JetPack's system OpenCV has it. Refused in one line where OpenCV lacks it.

File sources yield every frame. Live sources read in a thread and keep only the newest frame, so that a slow
model never makes latency grow: the frames it overwrote are counted in ``dropped``. A source that sends no
frame for ``timeout_s`` ends with one ``DataError`` (a stalled stream, a dead camera), as does an unreadable
or truncated file and a frame whose size differs from the first one.
"""

from __future__ import annotations

import glob
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import BackendUnavailableError, DataError, UsageError
from .frames import Frame, SizeGuard

LIVE_SCHEMES = ("rtsp://", "rtsps://", "rtmp://", "udp://", "tcp://", "srt://")
HTTP_SCHEMES = ("http://", "https://")
VIDEO_SUFFIXES = (".mp4", ".m4v", ".mkv", ".avi", ".mov", ".webm", ".ts", ".mts", ".flv", ".mpg", ".mpeg")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
GST_PREFIX = "gst:"


@dataclass(frozen=True)
class SourceSpec:
    """How to read a source. ``live``: None decides from the location (cameras and streaming URLs are live);
    ``timeout_s``: how long a source may send nothing before it counts as stalled; ``fps``: the frame rate
    an image sequence's timestamps assume."""

    location: str
    live: bool | None = None
    timeout_s: float = 10.0
    fps: float = 30.0

    def __post_init__(self) -> None:
        if self.timeout_s <= 0 or self.fps <= 0:
            raise UsageError("a source's timeout and frame rate must be positive")


class FrameSource:
    """Frames in order (``iter``), then ``close()``. ``live``: keeps only the newest frame; ``dropped``: frames
    it overwrote before they were taken; ``fps``: the source's own rate, where it says (None otherwise)."""

    name: str = ""
    live: bool = False
    dropped: int = 0
    fps: float | None = None

    def __iter__(self) -> Iterator[Frame]:
        raise NotImplementedError

    def close(self) -> None:
        pass

    def __enter__(self) -> FrameSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _require_av():
    try:
        import av
    except ImportError:
        raise BackendUnavailableError("reading videos needs PyAV: pip install 'hqsam-edge[video]' (or: pip install av)"
                                      ) from None
    return av


def _ffmpeg_reason(exc: BaseException) -> str:
    return getattr(exc, "strerror", None) or str(exc) or type(exc).__name__


def pyav_frames(location: str, *, fmt: str | None = None, timeout_s: float = 10.0, check_count: bool = True,
                rate: list[float] | None = None) -> Iterator[tuple[float, np.ndarray]]:
    """(timestamp in seconds, ``HxWx3`` RGB) of every frame PyAV decodes from ``location``.

    ``check_count``: a file that ends before the frame count its header gives is truncated (``DataError``).
    ``rate``: if given, the stream's average frame rate is appended to it once the stream is open."""
    av = _require_av()
    try:
        container = av.open(location, format=fmt, timeout=(timeout_s, timeout_s))
    except (av.FFmpegError, OSError) as exc:
        raise DataError(f"cannot open {location} as a video: {_ffmpeg_reason(exc)} (is it a video file or stream "
                        f"that FFmpeg reads, and complete?)") from None
    n = 0
    try:
        if not container.streams.video:
            raise DataError(f"{location} holds no video stream")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        fps = float(stream.average_rate) if stream.average_rate else 0.0
        if rate is not None:
            rate.append(fps)
        expected = int(stream.frames or 0)
        try:
            for frame in container.decode(stream):
                ts = float(frame.time) if frame.time is not None else n / (fps or 30.0)
                yield ts, frame.to_ndarray(format="rgb24")
                n += 1
        except (av.FFmpegError, OSError) as exc:
            raise DataError(f"{location} cannot be read past frame {n}: {_ffmpeg_reason(exc)} (a damaged or "
                            f"truncated file, or a stream that stalled for {timeout_s:g} s)") from None
        if n == 0:
            raise DataError(f"{location} holds no frame that can be decoded")
        if check_count and expected and n < expected - 1 - expected // 100:
            raise DataError(f"{location} ended after {n} of the {expected} frames its header lists: the file is "
                            f"truncated (copy it again, or re-encode what is there)")
    finally:
        container.close()


class PyAVFileSource(FrameSource):
    """Every frame of a video file (or of a URL read as a file)."""

    def __init__(self, location: str, timeout_s: float = 10.0, check_count: bool = True) -> None:
        self.name, self.timeout_s, self.check_count = location, timeout_s, check_count
        self._rate: list[float] = []
        self._frames: Iterator[tuple[float, np.ndarray]] | None = None

    def __iter__(self) -> Iterator[Frame]:
        guard = SizeGuard(self.name)
        self._frames = pyav_frames(self.name, timeout_s=self.timeout_s, check_count=self.check_count,
                                   rate=self._rate)
        for index, (ts, rgb) in enumerate(self._frames):
            self.fps = self._rate[0] if self._rate and self._rate[0] else None
            yield guard.check(Frame(index, ts, rgb, time.monotonic()))

    def close(self) -> None:
        if self._frames is not None:
            self._frames.close()  # type: ignore[attr-defined]


class ImageSequenceSource(FrameSource):
    """Pictures of a folder, or those a glob pattern matches, in name order."""

    def __init__(self, location: str, fps: float = 30.0) -> None:
        self.name, self.fps = location, fps
        if Path(location).is_dir():
            self.paths = sorted(p for p in Path(location).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        else:
            self.paths = sorted(Path(p) for p in glob.glob(location) if Path(p).suffix.lower() in IMAGE_SUFFIXES)
        if not self.paths:
            raise DataError(f"{location} names no image ({', '.join(IMAGE_SUFFIXES)}): give a folder of frames or "
                            f"a pattern such as 'frames/*.jpg'")

    def __iter__(self) -> Iterator[Frame]:
        from ..data.transforms import load_image

        guard = SizeGuard(self.name)
        for index, path in enumerate(self.paths):
            yield guard.check(Frame(index, index / self.fps, load_image(str(path)), time.monotonic()))


class LiveSource(FrameSource):
    """Frames that ``produce()`` yields, read in a thread; only the newest one is kept for the consumer.

    ``produce`` returns an iterator of ``HxWx3`` RGB arrays (a camera, a stream, a paced stand-in). Frames
    are numbered in capture order, so the indices the consumer sees skip those it never took (``dropped``).
    No new frame for ``timeout_s``: ``DataError`` (a stalled stream or a dead camera)."""

    live = True

    def __init__(self, name: str, produce: Callable[[], Iterator[np.ndarray]], timeout_s: float = 10.0) -> None:
        self.name, self._produce, self.timeout_s = name, produce, timeout_s
        self._cond = threading.Condition()
        self._latest: Frame | None = None
        self._done = False
        self._stop = threading.Event()
        self._error: BaseException | None = None
        self._thread: threading.Thread | None = None
        self.captured = 0

    def _run(self) -> None:
        frames = self._produce()
        start = time.monotonic()
        try:
            for rgb in frames:
                if self._stop.is_set():
                    break
                now = time.monotonic()
                with self._cond:
                    if self._latest is not None:
                        self.dropped += 1
                    self._latest = Frame(self.captured, now - start, rgb, now)
                    self.captured += 1
                    self._cond.notify()
        except BaseException as exc:  # handed to the consumer's thread, which raises it
            self._error = exc
        finally:
            close = getattr(frames, "close", None)
            if close is not None:
                close()
            with self._cond:
                self._done = True
                self._cond.notify()

    def __iter__(self) -> Iterator[Frame]:
        guard = SizeGuard(self.name)
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name=f"source {self.name}", daemon=True)
            self._thread.start()
        while True:
            with self._cond:
                if not self._cond.wait_for(lambda: self._latest is not None or self._done, timeout=self.timeout_s):
                    raise DataError(f"{self.name} sent no frame for {self.timeout_s:g} s: the stream stalled or the "
                                    f"camera stopped (check it, or raise the timeout)")
                frame, self._latest = self._latest, None
            if frame is not None:
                yield guard.check(frame)
            elif self._error is not None:
                raise self._error
            else:
                return

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=min(self.timeout_s, 2.0))


def gstreamer_frames(pipeline: str) -> Iterator[np.ndarray]:
    """RGB frames of a GStreamer pipeline that ends in ``appsink``, through OpenCV's GStreamer backend."""
    import cv2

    if not opencv_has_gstreamer():
        raise BackendUnavailableError(
            "this OpenCV was built without GStreamer (pip's opencv wheels are), so it cannot open a GStreamer "
            "pipeline: use the system OpenCV (on Jetson: JetPack's python3-opencv, with pip's opencv packages "
            "uninstalled), or give the camera as /dev/videoN")
    cap = cv2.VideoCapture(pipeline, cv2.CAP_GSTREAMER)
    if not cap.isOpened():
        raise DataError(f"GStreamer could not start the pipeline {pipeline!r} (does it end in appsink, and is the "
                        f"camera connected?)")
    try:
        while True:
            ok, bgr = cap.read()
            if not ok:
                return
            yield np.ascontiguousarray(bgr[..., ::-1])
    finally:
        cap.release()


def opencv_has_gstreamer() -> bool:
    import cv2

    for line in cv2.getBuildInformation().splitlines():
        if line.strip().startswith("GStreamer:"):
            return "YES" in line
    return False


def is_live_location(location: str) -> bool:
    """Whether ``location`` is live by default (cameras, streaming URLs, GStreamer; not files or sequences)."""
    lower = location.lower()
    if lower.startswith(LIVE_SCHEMES) or lower.startswith(GST_PREFIX) or " ! " in location:
        return True
    if lower.startswith(HTTP_SCHEMES):
        return not lower.split("?")[0].endswith(VIDEO_SUFFIXES)
    return location.startswith("/dev/video")


def open_source(source: str | Path | SourceSpec) -> FrameSource:
    """The reader for ``source`` (see the module's doc); nothing is read until it is iterated."""
    spec = source if isinstance(source, SourceSpec) else SourceSpec(str(source))
    location = spec.location
    live = is_live_location(location) if spec.live is None else spec.live
    if location.startswith(GST_PREFIX) or " ! " in location:
        pipeline = location.removeprefix(GST_PREFIX)
        return LiveSource(f"GStreamer pipeline {pipeline!r}", lambda: gstreamer_frames(pipeline), spec.timeout_s)
    if location.startswith("/dev/video"):
        if not os.path.exists(location):
            raise DataError(f"no camera at {location} (ls /dev/video* lists the cameras; is it connected?)")
        return LiveSource(location, lambda: _pixels(pyav_frames(location, fmt="v4l2", timeout_s=spec.timeout_s,
                                                                check_count=False)), spec.timeout_s)
    if location.lower().startswith(LIVE_SCHEMES + HTTP_SCHEMES):
        if live:
            return LiveSource(location, lambda: _pixels(pyav_frames(location, timeout_s=spec.timeout_s,
                                                                    check_count=False)), spec.timeout_s)
        return PyAVFileSource(location, spec.timeout_s, check_count=False)
    path = Path(location)
    if path.is_dir() or glob.has_magic(location):
        return ImageSequenceSource(location, spec.fps)
    if not path.is_file():
        raise DataError(f"no video file, image folder or camera at {location}")
    if live:
        return LiveSource(location, lambda: _pixels(pyav_frames(location, timeout_s=spec.timeout_s)), spec.timeout_s)
    return PyAVFileSource(location, spec.timeout_s)


def _pixels(frames: Iterator[tuple[float, np.ndarray]]) -> Iterator[np.ndarray]:
    try:
        for _, rgb in frames:
            yield rgb
    finally:
        frames.close()  # type: ignore[attr-defined]
