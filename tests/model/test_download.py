"""``download_checkpoint`` against a real HTTP server on 127.0.0.1.

The server serves bytes the test gives it, honours (or, when told, ignores)
``Range`` requests, can cut the connection after K bytes on its first request
to simulate an interruption, and records every request and ``Range`` header.
"""

from __future__ import annotations

import dataclasses
import hashlib
import http.server
import logging
import socket
import threading
from pathlib import Path

import pytest
import torch

from hqsam_edge.errors import DownloadError, UsageError
from hqsam_edge.model import download as dl
from hqsam_edge.model.download import CHECKPOINTS, CheckpointSource, cache_dir, download_checkpoint

FILENAME = "sam_hq_vit_b.pth"  # CHECKPOINTS[("vit_b", "hq")].filename


class _State:
    def __init__(self) -> None:
        self.data = b""
        self.url = ""
        self.honor_range = True
        self.cut_after: int | None = None  # on the first request only
        self.requests: list[str] = []
        self.ranges: list[str | None] = []


def _handler(state: _State) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:  # quiet
            pass

        def do_GET(self) -> None:  # noqa: N802
            first = not state.requests
            state.requests.append(self.path)
            rng = self.headers.get("Range")
            state.ranges.append(rng)
            if self.path != "/" + FILENAME and not self.path.startswith("/files/"):
                self.send_error(404, "Not Found")
                return
            data, start = state.data, 0
            if rng and state.honor_range:
                start = int(rng.removeprefix("bytes=").split("-")[0])
                if start >= len(data):
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{len(data)}")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
            else:
                self.send_response(200)
            body = data[start:]
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Content-Type", "application/octet-stream")
            self.end_headers()
            if first and state.cut_after is not None:
                self.wfile.write(body[: state.cut_after])
                self.close_connection = True
                self.connection.shutdown(socket.SHUT_RDWR)
                return
            self.wfile.write(body)

    return Handler


@pytest.fixture
def server(monkeypatch):
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(dl, "_CHUNK", 16 * 1024)  # many reads per download
    state = _State()
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{httpd.server_address[1]}/{FILENAME}"
    yield state
    httpd.shutdown()
    httpd.server_close()
    thread.join(5)


@pytest.fixture(scope="module")
def payload(tmp_path_factory) -> bytes:
    """A small real checkpoint (~400 KB), as bytes."""
    path = tmp_path_factory.mktemp("payload") / "ckpt.pth"
    torch.save({"w": torch.randn(100_000, generator=torch.Generator().manual_seed(0))}, path)
    return path.read_bytes()


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _get(server, dest, **kw) -> Path:
    kw.setdefault("sha256", _sha(server.data))
    return download_checkpoint("vit_b", "hq", dest, url=server.url, progress=False, **kw)


def test_table():
    assert len(CHECKPOINTS) == 8
    for (backbone, variant), src in CHECKPOINTS.items():
        assert isinstance(src, CheckpointSource)
        assert (src.backbone, src.variant) == (backbone, variant)
        assert src.url.endswith("/" + src.filename)
        if variant == "hq":
            assert src.url == f"https://huggingface.co/lkeab/hq-sam/resolve/main/sam_hq_{backbone}.pth"
            assert src.size and len(src.sha256) == 64
        else:
            assert src.size is None and src.sha256 is None
    assert CHECKPOINTS[("vit_h", "sam")].sha256_prefix == "4b8939"
    assert CHECKPOINTS[("vit_tiny", "sam")].filename == "mobile_sam.pt"
    with pytest.raises(dataclasses.FrozenInstanceError):
        CHECKPOINTS[("vit_b", "hq")].url = "x"


def test_download_verifies_and_loads(server, payload, tmp_path):
    server.data = payload
    path = _get(server, tmp_path, size=len(payload))
    assert path == tmp_path / FILENAME
    assert path.read_bytes() == payload
    assert not (tmp_path / (FILENAME + ".part")).exists()
    assert torch.load(path, weights_only=True)["w"].shape == (100_000,)
    assert server.ranges == [None]


def test_second_call_uses_the_file(server, payload, tmp_path):
    server.data = payload
    first = _get(server, tmp_path)
    n = len(server.requests)
    assert _get(server, tmp_path) == first
    assert len(server.requests) == n == 1


def test_corrupt_final_file_is_downloaded_again(server, payload, tmp_path):
    server.data = payload
    (tmp_path / FILENAME).write_bytes(b"not the file")
    assert _get(server, tmp_path).read_bytes() == payload
    assert len(server.requests) == 1


def test_interrupted_download_resumes(server, payload, tmp_path):
    server.data = payload
    server.cut_after = k = 100_000
    with pytest.raises(DownloadError) as err:
        _get(server, tmp_path)
    assert server.url in str(err.value) and f"{k} bytes kept" in str(err.value)
    part = tmp_path / (FILENAME + ".part")
    assert part.stat().st_size == k
    assert not (tmp_path / FILENAME).exists()

    path = _get(server, tmp_path)
    assert server.ranges == [None, f"bytes={k}-"]
    assert path.read_bytes() == payload
    assert not part.exists()


def test_server_ignoring_range_restarts(server, payload, tmp_path):
    server.data = payload
    server.honor_range = False
    (tmp_path / (FILENAME + ".part")).write_bytes(payload[:1000] + b"garbage")
    path = _get(server, tmp_path)
    assert server.ranges == [f"bytes={1007}-"]
    assert path.read_bytes() == payload


def test_stale_part_past_the_end_restarts(server, payload, tmp_path):
    server.data = payload
    (tmp_path / (FILENAME + ".part")).write_bytes(b"x" * (len(payload) + 5))
    path = _get(server, tmp_path)  # size unknown here: the server answers 416, then a full GET
    assert server.ranges == [f"bytes={len(payload) + 5}-", None]
    assert path.read_bytes() == payload


def test_complete_part_is_verified_without_network(server, payload, tmp_path):
    server.data = payload
    (tmp_path / (FILENAME + ".part")).write_bytes(payload)
    path = _get(server, tmp_path, size=len(payload))
    assert server.requests == [] and path.read_bytes() == payload
    assert not (tmp_path / (FILENAME + ".part")).exists()


def test_wrong_sha256_deletes(server, payload, tmp_path):
    server.data = payload
    with pytest.raises(DownloadError, match="sha256 mismatch") as err:
        _get(server, tmp_path, sha256="0" * 64)
    assert "0" * 64 in str(err.value) and _sha(payload) in str(err.value)
    assert "deleted" in str(err.value)
    assert list(tmp_path.iterdir()) == []


def test_wrong_size(server, payload, tmp_path):
    server.data = payload
    with pytest.raises(DownloadError, match=f"expected {len(payload) + 1} bytes, got {len(payload)}"):
        _get(server, tmp_path, size=len(payload) + 1)
    assert list(tmp_path.iterdir()) == []


def test_table_size_applies_to_a_mirror(server, payload, tmp_path):
    server.data = payload  # no sha256 given: the table's size and digest for sam_hq_vit_b.pth apply
    with pytest.raises(DownloadError, match="size mismatch"):
        download_checkpoint("vit_b", dest=tmp_path, url=server.url, progress=False)
    assert list(tmp_path.iterdir()) == []


def test_sha256_prefix(server, payload, tmp_path, monkeypatch, caplog, capsys):
    server.data = payload
    url = server.url.replace(FILENAME, "files/sam_vit_b_01ec64.pth")
    with pytest.raises(DownloadError, match="starting with 01ec64"):
        download_checkpoint("vit_b", "sam", tmp_path, url=url, progress=False)
    assert list(tmp_path.iterdir()) == []

    # a matching prefix passes, and the full digest is reported
    src = dataclasses.replace(CHECKPOINTS[("vit_b", "sam")], sha256_prefix=_sha(payload)[:6])
    monkeypatch.setitem(CHECKPOINTS, ("vit_b", "sam"), src)
    with caplog.at_level(logging.INFO, logger=dl.__name__):
        path = download_checkpoint("vit_b", "sam", tmp_path, url=url, progress=False)
    assert path == tmp_path / "sam_vit_b_01ec64.pth" and path.read_bytes() == payload
    assert _sha(payload) in caplog.text

    # with progress on, the report goes to stderr (the file is cached now: no request)
    n = len(server.requests)
    download_checkpoint("vit_b", "sam", tmp_path, url=url, progress=True)
    assert _sha(payload) in capsys.readouterr().err and len(server.requests) == n


def test_http_404(server, tmp_path):
    url = server.url.replace(FILENAME, "missing.pth")
    with pytest.raises(DownloadError, match="HTTP 404") as err:
        download_checkpoint("vit_b", dest=tmp_path, url=url, progress=False)
    assert url in str(err.value) and str(tmp_path) in str(err.value)
    assert "kept" not in str(err.value) and list(tmp_path.iterdir()) == []


def test_connection_refused(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/{FILENAME}"
    with pytest.raises(DownloadError, match="refused") as err:
        download_checkpoint("vit_b", dest=tmp_path, url=url, progress=False, timeout=5)
    assert url in str(err.value)


def test_cache_dir_env(server, payload, tmp_path, monkeypatch):
    monkeypatch.setenv("HQSAM_EDGE_HOME", str(tmp_path / "home"))
    assert cache_dir() == tmp_path / "home"
    server.data = payload
    path = download_checkpoint("vit_b", url=server.url, sha256=_sha(payload), progress=False)
    assert path == tmp_path / "home" / FILENAME and path.read_bytes() == payload

    monkeypatch.delenv("HQSAM_EDGE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "user"))
    assert cache_dir() == tmp_path / "user" / ".cache" / "hqsam-edge"


@pytest.mark.parametrize(("backbone", "variant"), [("vit_x", "hq"), ("vit_b", "mobile")])
def test_unknown_choice(backbone, variant, tmp_path):
    with pytest.raises(UsageError, match="choose one of") as err:
        download_checkpoint(backbone, variant, tmp_path, progress=False)
    assert "vit_tiny" in str(err.value) or "'hq'" in str(err.value)
    assert list(tmp_path.iterdir()) == []
