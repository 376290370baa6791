"""Small real videos for the video tests, written with PyAV: H.264 in mp4 and MJPEG in avi."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

av = pytest.importorskip("av", reason="PyAV is in the video and dev extras")


def picture(t: int, height: int = 48, width: int = 64) -> np.ndarray:
    """Frame ``t``: a grey ramp with a bright square that moves 2 px a frame (so frames differ)."""
    rgb = np.zeros((height, width, 3), np.uint8)
    rgb[..., 0] = np.linspace(0, 200, width, dtype=np.uint8)[None]
    rgb[..., 1] = 60
    x = (4 + 2 * t) % (width - 12)
    rgb[10:22, x:x + 12] = 250
    return rgb


def write_video(path: Path, frames: list[np.ndarray] | int, codec: str = "libx264", fps: int = 25,
                fmt: str | None = None, pix_fmt: str | None = None) -> Path:
    """``frames`` (pictures, or a count of ``picture(t)``) into ``path`` with ``codec``."""
    pictures = [picture(t) for t in range(frames)] if isinstance(frames, int) else frames
    h, w = pictures[0].shape[:2]
    with av.open(str(path), "w", format=fmt) as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height = w, h
        stream.pix_fmt = pix_fmt or ("yuvj420p" if codec == "mjpeg" else "yuv420p")
        for rgb in pictures:
            for packet in stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return path


@pytest.fixture
def mp4(tmp_path):
    return write_video(tmp_path / "clip.mp4", 12)


@pytest.fixture
def avi(tmp_path):
    return write_video(tmp_path / "clip.avi", 10, codec="mjpeg")


@pytest.fixture
def make_video():
    """``make_video(path, frames, codec="libx264", fps=25, fmt=None)`` (see ``write_video``)."""
    return write_video


@pytest.fixture
def make_picture():
    return picture
