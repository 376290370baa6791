"""What ``hqsam-edge segment`` does with an image it cannot use (``--on-error skip|stop``), and ``OUT/errors.json``.

A per-image data error is one of two kinds, named by its ``stage``:

    read     the image file cannot be read: missing, truncated, not an image (``ImageError``)
    boxes    one of its boxes is wrong for it: not 4 numbers, no area, outside the image, or the size the
             boxes file gives is not the image's (``DataError``)

With ``skip`` (the default) such an image is reported (a progress note), left out, and the rest of the set
is segmented: it gets no ``OUT/<image path>.json`` and no entries in ``results.json``, so the next run tries
it again. With ``stop`` the first one ends the run, as any other error does. Errors that are not about one
image (the model, a write, a full disk, an interruption, a bug, a boxes file that is not valid) stop the run
whatever ``--on-error`` says.

``OUT/errors.json`` lists the images that the last finished run skipped, in image order::

    [{"file": "sub/a.jpg", "stage": "read", "error": "cannot read image ...: image file is truncated ..."}]

(``file`` relative to the image root). Each run removes it when it starts and writes it, atomically, when
it finishes having skipped any; the command then exits with ``errors.SKIPPED_EXIT_CODE`` (3).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

from ..atomic import write_text
from ..errors import DataError, ImageError

ERRORS_NAME = "errors.json"
PER_IMAGE = (ImageError, DataError)  # what ``skip`` skips; anything else stops the run


@dataclass(frozen=True)
class ImageFailure:
    """An image a run skipped: its path relative to the image root, the stage that refused it, the reason."""

    file: str
    stage: str  # "read" or "boxes"
    error: str  # one line

    @classmethod
    def of(cls, rel: str, exc: BaseException) -> ImageFailure:
        stage = "read" if isinstance(exc, ImageError) else "boxes"
        return cls(rel, stage, " ".join(str(exc).split()))

    def line(self) -> str:
        return f"skipped {self.file} ({self.stage}): {self.error}"


def write_errors(out: Path, failures: Iterable[ImageFailure]) -> Path | None:
    """``OUT/errors.json`` with ``failures`` in image order; removed if there are none. Its path, or None."""
    path = out / ERRORS_NAME
    failures = sorted(failures, key=lambda f: f.file)
    if not failures:
        path.unlink(missing_ok=True)
        return None
    lines = ",\n".join(json.dumps(asdict(f)) for f in failures)
    write_text(path, f"[\n{lines}\n]\n")
    return path
