"""Downloading the official SAM / HQ-SAM / MobileSAM checkpoints.

``CHECKPOINTS`` lists where each ``(backbone, variant)`` checkpoint is
published and, where known, its size and SHA-256. ``download_checkpoint``
fetches one into a cache folder (``$HQSAM_EDGE_HOME`` or
``~/.cache/hqsam-edge``) with the standard library only:

* the bytes go to ``<filename>.part`` first; an interrupted download is
  resumed with an HTTP ``Range`` request (a server that ignores it is
  answered by starting over);
* the finished file is checked against the expected size and SHA-256 (or,
  for Meta's files, the digest prefix embedded in their names); a file that
  fails is deleted and ``DownloadError`` raised; one that passes is renamed
  into place atomically (``os.replace``), so the final name only ever holds a
  complete, verified file;
* a file already in place that verifies is returned without any network use.

Network failures raise ``DownloadError`` naming the URL and the cause; the
``.part`` file is kept so that the next call resumes.
"""

from __future__ import annotations

import http.client
import logging
import os
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from tqdm.auto import tqdm

from .. import progress as reports
from ..digest import sha256_file
from ..errors import DownloadError
from ..inputs import VARIANTS_MEANING, require_choice

__all__ = ["CHECKPOINTS", "CheckpointSource", "cache_dir", "download_checkpoint"]

logger = logging.getLogger(__name__)

_CHUNK = 1 << 20  # bytes per read; module-level so tests can shrink it
_USER_AGENT = "hqsam-edge (checkpoint download; python-urllib)"


@dataclass(frozen=True)
class CheckpointSource:
    """Where one official checkpoint is published, and how to recognise it.

    ``size`` and ``sha256`` are ``None`` where no verified value is recorded
    here; ``sha256_prefix`` is the start of the digest that Meta embeds in its
    file names (``sam_vit_b_01ec64.pth``), checked when the full digest is unknown.
    """

    backbone: str
    variant: str
    filename: str
    url: str
    size: int | None
    sha256: str | None
    sha256_prefix: str | None = None


_HQ_URL = "https://huggingface.co/lkeab/hq-sam/resolve/main/{filename}"
_META_URL = "https://dl.fbaipublicfiles.com/segment_anything/{filename}"
_MOBILE_SAM_URL = "https://raw.githubusercontent.com/ChaoningZhang/MobileSAM/master/weights/mobile_sam.pt"

_HQ_PUBLISHED: dict[str, tuple[int, str]] = {
    "vit_b": (379335069, "14a9d662cd6f5a9c2dba6d40ab0058d88d287e4a18fd6fdc6ad5fb1a3fdeaa57"),
    "vit_l": (1254865805, "e1a6c385d62bf005ded91a54d5ec55c985cfc4103ef89c08d90f39f04934c343"),
    "vit_h": (2570940653, "a7ac14a085326d9fa6199c8c698c4f0e7280afdbb974d2c4660ec60877b45e35"),
    "vit_tiny": (42526881, "0f32c075ccdd870ae54db2f7630e7a0878ede5a2b06d05d6fe02c65a82fb7196"),
}
_META_PREFIX = {"vit_b": "01ec64", "vit_l": "0b3195", "vit_h": "4b8939"}


def _table() -> dict[tuple[str, str], CheckpointSource]:
    table: dict[tuple[str, str], CheckpointSource] = {}
    for backbone, (size, sha256) in _HQ_PUBLISHED.items():
        filename = f"sam_hq_{backbone}.pth"
        table[(backbone, "hq")] = CheckpointSource(
            backbone, "hq", filename, _HQ_URL.format(filename=filename), size, sha256
        )
    for backbone, prefix in _META_PREFIX.items():
        filename = f"sam_{backbone}_{prefix}.pth"
        table[(backbone, "sam")] = CheckpointSource(
            backbone, "sam", filename, _META_URL.format(filename=filename), None, None, prefix
        )
    table[("vit_tiny", "sam")] = CheckpointSource("vit_tiny", "sam", "mobile_sam.pt", _MOBILE_SAM_URL, None, None)
    return table


CHECKPOINTS: dict[tuple[str, str], CheckpointSource] = _table()

_BACKBONES = tuple(dict.fromkeys(b for b, _ in CHECKPOINTS))
_VARIANTS = tuple(dict.fromkeys(v for _, v in CHECKPOINTS))


def cache_dir() -> Path:
    """The default download folder: ``$HQSAM_EDGE_HOME`` if set, else ``~/.cache/hqsam-edge``."""
    home = os.environ.get("HQSAM_EDGE_HOME")
    if home:
        return Path(home).expanduser()
    return Path.home() / ".cache" / "hqsam-edge"


def _source(backbone: str, variant: str) -> CheckpointSource:
    require_choice(backbone, _BACKBONES, "backbone")
    require_choice(variant, _VARIANTS, "variant", hint=VARIANTS_MEANING)
    return CHECKPOINTS[(backbone, variant)]


@dataclass(frozen=True)
class _Expected:
    size: int | None
    sha256: str | None
    prefix: str | None


def _mismatch(path: Path, expected: _Expected) -> tuple[str | None, str | None]:
    """``(problem, digest)``: what is wrong with ``path`` (``None`` if nothing) and its SHA-256 if computed."""
    actual_size = path.stat().st_size
    if expected.size is not None and actual_size != expected.size:
        return f"size mismatch: expected {expected.size} bytes, got {actual_size}", None
    if expected.sha256 is None and expected.prefix is None:
        return None, None
    digest = sha256_file(path)
    if expected.sha256 is not None and digest != expected.sha256:
        return f"sha256 mismatch: expected {expected.sha256}, got {digest}", digest
    if expected.sha256 is None and expected.prefix is not None and not digest.startswith(expected.prefix):
        return (
            f"sha256 mismatch: expected a digest starting with {expected.prefix} (from the file name), got {digest}",
            digest,
        )
    return None, digest


def _say(message: str, progress: bool) -> None:
    """To the command's progress log if one is installed, else stderr (``progress``) or ``logging``."""
    if reports.current() is not None:
        reports.note(message)
    elif progress:
        tqdm.write(message, file=sys.stderr)
    else:
        logger.info(message)


def _report_unverified(path: Path, digest: str | None, expected: _Expected, progress: bool) -> None:
    """Report the digest of a file that has no published full SHA-256 to check against."""
    if expected.sha256 is not None:
        return
    digest = digest or sha256_file(path)
    note = f"; its first digits match {expected.prefix}" if expected.prefix else ""
    _say(f"sha256 of {path}: {digest} (no published checksum recorded to verify against{note})", progress)


def _network_error(url: str, cause: object, part: Path) -> DownloadError:
    kept = part.stat().st_size if part.exists() else 0
    note = f" ({kept} bytes kept in {part.name}: the next attempt resumes)" if kept else ""
    return DownloadError(
        f"cannot download {url}: {cause}; check your connection or pass --url / "
        f"download it by hand into {part.parent}{note}"
    )


def _describe(exc: BaseException) -> str:
    if isinstance(exc, urllib.error.HTTPError):
        return f"the server answered HTTP {exc.code} {exc.reason}"
    if isinstance(exc, urllib.error.URLError):
        reason = exc.reason
        return str(reason) if not isinstance(reason, BaseException) else _describe(reason)
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class _RestartWithoutRange(Exception):
    """The server could not serve the requested range: start the download over."""


def _fetch(url: str, part: Path, *, size: int | None, progress: bool, timeout: float) -> None:
    """Download ``url`` into ``part``, resuming from its current length if it exists."""
    try:
        _fetch_once(url, part, size=size, progress=progress, timeout=timeout)
    except _RestartWithoutRange:
        part.unlink(missing_ok=True)
        _fetch_once(url, part, size=size, progress=progress, timeout=timeout)


def _open(url: str, part: Path, offset: int, timeout: float):
    """The HTTP response for ``url``, from byte ``offset`` on when it is not 0."""
    headers = {"User-Agent": _USER_AGENT, "Accept-Encoding": "identity"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    request = urllib.request.Request(url, headers=headers)
    try:
        return urllib.request.urlopen(request, timeout=timeout)  # noqa: S310 (URL is http(s) by design)
    except urllib.error.HTTPError as exc:
        exc.close()
        if exc.code == 416 and offset:  # the range starts at or past the end: the .part is stale
            raise _RestartWithoutRange from None
        raise _network_error(url, _describe(exc), part) from None
    except (OSError, http.client.HTTPException) as exc:
        raise _network_error(url, _describe(exc), part) from None


def _copy_body(response, url: str, part: Path, out, start: int, bar) -> int:
    """Append the response body to ``out``; the bytes received."""
    received = 0
    while True:
        try:
            block = response.read(_CHUNK)
        except (OSError, http.client.HTTPException) as exc:
            raise _network_error(url, f"{_describe(exc)} after {start + received} bytes", part) from None
        if not block:
            return received
        try:
            out.write(block)
        except OSError as exc:
            raise DownloadError(f"cannot write {part}: {exc.strerror or exc}") from None
        received += len(block)
        bar.update(len(block))


def _fetch_once(url: str, part: Path, *, size: int | None, progress: bool, timeout: float) -> None:
    offset = part.stat().st_size if part.exists() else 0
    with _open(url, part, offset, timeout) as response:
        status = response.status
        length_header = response.headers.get("Content-Length")
        length = int(length_header) if length_header and length_header.isdigit() else None
        if offset and status == 206:
            content_range = response.headers.get("Content-Range", "")
            if not content_range.startswith(f"bytes {offset}-"):
                raise _RestartWithoutRange
            mode, start = "ab", offset
        else:  # 200: the server sent the whole file (it ignored the range, or none was asked for)
            if offset:
                logger.info("%s does not support resuming; downloading %s from the start", url, part.name)
            mode, start = "wb", 0
        total = start + length if length is not None else size
        try:
            out = open(part, mode)  # noqa: SIM115 (closed below, after the loop)
        except OSError as exc:
            raise DownloadError(f"cannot write {part}: {exc.strerror or exc}") from None
        bar = tqdm(total=total, initial=start, unit="B", unit_scale=True, unit_divisor=1024,
                   desc=part.name[: -len(".part")], leave=False,
                   disable=None if progress else True)  # None: off when stderr is not a terminal
        try:
            received = _copy_body(response, url, part, out, start, bar)
        finally:
            out.close()
            bar.close()
        if length is not None and received < length:
            raise _network_error(
                url, f"the connection closed after {start + received} of {start + length} bytes", part
            )


def _expected(source, sha256: str | None, size: int | None) -> _Expected:
    """What the file must be: the table's size and digest, or those given (a ``sha256`` names another file)."""
    if sha256 is not None:
        return _Expected(size=size, sha256=sha256.strip().lower(), prefix=None)
    return _Expected(size=size if size is not None else source.size, sha256=source.sha256, prefix=source.sha256_prefix)


def _resume(url: str, part: Path, expected: _Expected, *, progress: bool, timeout: float) -> None:
    """Bring ``part`` to the whole file: continue what it holds, or start again if it cannot be a prefix."""
    partial = part.stat().st_size if part.exists() else 0
    if expected.size is not None and partial > expected.size:
        part.unlink()  # longer than the file can be: not a prefix of it
        partial = 0
    if not (expected.size is not None and partial == expected.size):  # else complete already: just verify
        _fetch(url, part, size=expected.size, progress=progress, timeout=timeout)


def download_checkpoint(
    backbone: str,
    variant: str = "hq",
    dest: str | Path | None = None,
    *,
    url: str | None = None,
    sha256: str | None = None,
    size: int | None = None,
    progress: bool = True,
    timeout: float = 60,
) -> Path:
    """Download the official checkpoint for ``backbone`` / ``variant`` and return its path.

    The file lands in ``dest`` (default: ``cache_dir()``) under its published
    name (``CHECKPOINTS[(backbone, variant)].filename``). A file already there
    that verifies is returned at once; otherwise the download goes to
    ``<filename>.part`` (resumed with a ``Range`` request if one exists), is
    verified, and renamed into place.

    ``url``, ``sha256`` and ``size`` override the table: a ``url`` alone is a
    mirror, still checked against the table's size and digest; a ``sha256``
    names another file, so it replaces the table's digest, size and digest
    prefix (give ``size`` as well to check that too). Where no full digest is
    known the SHA-256 of the file is computed and reported (on stderr with
    ``progress``, else through ``logging``).

    ``timeout`` (seconds) bounds the connection and each read.

    Raises ``UsageError`` for an unknown backbone or variant, and
    ``DownloadError`` for a network failure (the ``.part`` file is kept, so
    the next call resumes) or a size / checksum mismatch (the file is deleted).
    """
    source = _source(backbone, variant)
    url = url or source.url
    expected = _expected(source, sha256, size)
    folder = Path(dest).expanduser() if dest is not None else cache_dir()
    final = folder / source.filename
    part = folder / (source.filename + ".part")

    if final.is_file():
        problem, digest = _mismatch(final, expected)
        if problem is None:
            _report_unverified(final, digest, expected, progress)
            return final
        _say(f"{final} is present but does not verify ({problem}); downloading it again", progress)

    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DownloadError(f"cannot create the download folder {folder}: {exc.strerror or exc}") from None

    with reports.stage(f"download: {source.filename}"):
        _resume(url, part, expected, progress=progress, timeout=timeout)
    with reports.stage(f"download: check {source.filename}"):
        problem, digest = _mismatch(part, expected)
    if problem is not None:
        part.unlink(missing_ok=True)
        raise DownloadError(
            f"downloaded {url} but it does not verify ({problem}); the file was deleted. "
            "Run the download again; if it keeps failing the server or the --url / --sha256 given is wrong"
        )
    os.replace(part, final)
    _report_unverified(final, digest, expected, progress)
    return final
