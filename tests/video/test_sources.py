"""Sources: files (H.264 mp4, MJPEG avi), image sequences, live sources, an HTTP stream; their errors."""

from __future__ import annotations

import functools
import http.server
import threading
import time

import numpy as np
import pytest
from PIL import Image

from hqsam_edge.errors import BackendUnavailableError, DataError
from hqsam_edge.video.sources import LiveSource, SourceSpec, open_source, opencv_has_gstreamer


def _close(a: np.ndarray, b: np.ndarray, tol: float = 12.0) -> bool:
    return float(np.abs(a.astype(float) - b.astype(float)).mean()) < tol


@pytest.mark.parametrize("name, codec, n", [("clip.mp4", "libx264", 12), ("clip.avi", "mjpeg", 10)])
def test_a_video_file_yields_every_frame_in_order(tmp_path, make_video, make_picture, name, codec, n):
    path = make_video(tmp_path / name, n, codec=codec)
    with open_source(path) as source:
        frames = list(source)
    assert not source.live and source.dropped == 0
    assert [f.index for f in frames] == list(range(n))
    assert all(f.rgb.shape == (48, 64, 3) and f.rgb.dtype == np.uint8 for f in frames)
    assert all(_close(f.rgb, make_picture(f.index)) for f in frames)  # decoded, in order (lossy codecs)
    assert not _close(frames[0].rgb, make_picture(5), tol=3)
    assert frames[1].timestamp == pytest.approx(1 / 25, abs=1e-3)
    assert source.fps == pytest.approx(25)


def test_an_image_sequence_is_read_in_name_order_from_a_folder_or_glob(tmp_path, make_picture):
    folder = tmp_path / "seq"
    folder.mkdir()
    for t in (2, 0, 1):
        Image.fromarray(make_picture(t)).save(folder / f"f{t:03d}.png")
    (folder / "notes.txt").write_text("not a frame")
    for location in (folder, str(folder / "*.png")):
        frames = list(open_source(location))
        assert [f.index for f in frames] == [0, 1, 2]
        assert all(np.array_equal(f.rgb, make_picture(f.index)) for f in frames)
    with pytest.raises(DataError, match="names no image"):
        open_source(str(tmp_path / "none*.png"))


def test_a_frame_of_another_size_mid_stream_is_one_clear_error(tmp_path, make_picture):
    folder = tmp_path / "seq"
    folder.mkdir()
    Image.fromarray(make_picture(0)).save(folder / "a.png")
    Image.fromarray(make_picture(1, 40, 64)).save(folder / "b.png")
    frames = []
    with pytest.raises(DataError, match=r"frame 1 is 64x40, but the stream began at 64x48"):
        for f in open_source(folder):
            frames.append(f)
    assert len(frames) == 1  # what came before is kept


def test_unreadable_and_truncated_files_are_one_clear_error(tmp_path, make_video):
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(b"this is no video" * 100)
    with pytest.raises(DataError, match="cannot open .*garbage.mp4 as a video"):
        list(open_source(garbage))
    whole = make_video(tmp_path / "whole.avi", 30, codec="mjpeg").read_bytes()
    cut = tmp_path / "cut.avi"
    cut.write_bytes(whole[: len(whole) * 2 // 3])
    got = []
    with pytest.raises(DataError, match="cut.avi"):
        for f in open_source(cut):
            got.append(f)
    assert 0 < len(got) < 30  # the frames before the cut came through
    with pytest.raises(DataError, match="no video file, image folder or camera"):
        open_source(tmp_path / "missing.mp4")
    with pytest.raises(DataError, match="no camera at /dev/video99"):
        open_source("/dev/video99")


def paced(pictures: list[np.ndarray], fps: float, stall_after: int | None = None):
    """A stand-in camera: ``pictures`` at ``fps``; after ``stall_after`` frames it hangs (a stalled stream)."""
    def produce():
        for k, rgb in enumerate(pictures):
            if stall_after is not None and k == stall_after:
                time.sleep(5)
            time.sleep(1 / fps)
            yield rgb
    return produce


def test_a_live_source_keeps_the_newest_frame_and_counts_drops(make_picture):
    pictures = [make_picture(t) for t in range(40)]
    source = LiveSource("camera", paced(pictures, fps=200), timeout_s=2)
    seen = []
    for frame in source:
        seen.append(frame.index)
        time.sleep(0.02)  # a model 4x slower than the camera
    source.close()
    assert seen[-1] == 39 and seen == sorted(seen)
    assert source.dropped == 40 - len(seen) > 10  # latency stays bounded: old frames are dropped, counted
    assert all(np.array_equal(pictures[i], pictures[i]) for i in seen)


def test_a_stalled_live_source_is_one_clear_error(make_picture):
    source = LiveSource("rtsp://camera", paced([make_picture(t) for t in range(5)], 100, stall_after=2),
                        timeout_s=0.5)
    got = []
    with pytest.raises(DataError, match="sent no frame for 0.5 s: the stream stalled"):
        for frame in source:
            got.append(frame.index)
    source.close()
    assert got == [0, 1] or got == [1]


def test_gstreamer_pipelines_need_an_opencv_with_gstreamer():
    source = open_source("gst:videotestsrc num-buffers=3 ! videoconvert ! appsink")
    assert source.live
    if opencv_has_gstreamer():
        assert len(list(source)) == 3
    else:
        with pytest.raises(BackendUnavailableError, match="built without GStreamer"):
            list(source)


@pytest.fixture
def http_server(tmp_path):
    """``http.server`` on 127.0.0.1 serving ``tmp_path``; yields its base URL."""
    handler = functools.partial(_QuietHandler, directory=str(tmp_path))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


def test_an_http_stream_on_loopback(tmp_path, make_video, http_server):
    make_video(tmp_path / "clip.mp4", 12)
    url = f"{http_server}/clip.mp4"
    frames = list(open_source(url))  # an mp4 over HTTP is a file: every frame
    assert [f.index for f in frames] == list(range(12))
    live = open_source(SourceSpec(url, live=True, timeout_s=5))
    assert live.live and 1 <= len(list(live)) <= 12
    with pytest.raises(DataError, match="cannot open http://127.0.0.1:.*/missing.mp4"):
        list(open_source(f"{http_server}/missing.mp4"))


class _StallingHandler(http.server.BaseHTTPRequestHandler):
    """Sends the first half of ``payload`` and then nothing (a stream that stalls)."""

    payload = b""

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", str(len(self.payload)))
        self.end_headers()
        self.wfile.write(self.payload[: len(self.payload) // 2])
        self.wfile.flush()
        time.sleep(4)

    def log_message(self, *args) -> None:
        pass


@pytest.mark.parametrize("live, message", [(False, "cannot be read past frame"), (True, "sent no frame for 1 s")])
def test_a_stream_that_stalls_is_one_clear_error_after_the_timeout(tmp_path, make_video, live, message):
    payload = make_video(tmp_path / "c.avi", 40, "mjpeg").read_bytes()
    handler = type("Handler", (_StallingHandler,), {"payload": payload})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    got, start = [], time.monotonic()
    try:
        with pytest.raises(DataError, match=message):
            for frame in open_source(SourceSpec(f"http://127.0.0.1:{server.server_address[1]}/c.avi", live=live,
                                                timeout_s=1)):
                got.append(frame.index)
    finally:
        server.shutdown()
        server.server_close()
    assert got and time.monotonic() - start < 3.5  # the frames that came, then the timeout, not a hang
