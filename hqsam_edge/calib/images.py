"""Calibration images: a folder of the user's pictures (any size), pre-processed
exactly as at inference, as encoder feeds ``{"image": [1,3,1024,1024]}``."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from ..data import transforms as T
from ..data.synthetic import demo_image
from ..errors import UsageError
from ..export import contract as C
from ..inputs import calibration_folder

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


def list_images(folder: str | Path, limit: int | None = None) -> list[Path]:
    """Image files under ``folder`` (recursive, sorted); ``UsageError`` if there are none."""
    folder = calibration_folder(folder)
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not files:
        raise UsageError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in calibration folder {folder}")
    return files[:limit] if limit else files


class CalibrationSet:
    """An iterable of encoder feeds; ``folder=None`` uses synthetic pictures.

    Synthetic pictures only make sense with random weights (speed checks):
    calibrate a real model on images like the ones it will see.
    """

    def __init__(self, folder: str | Path | None = None, *, limit: int = 32, image_size: int = C.IMAGE_SIZE,
                 synthetic_seed: int = 100, files: list[Path] | None = None) -> None:
        if files is not None:  # an explicit list (e.g. the calibration part of a folder)
            self.files = list(files)
        else:
            self.files = list_images(folder, limit) if folder is not None else []
        self.count = len(self.files) if (folder is not None or files is not None) else limit
        self.image_size = image_size
        self.synthetic_seed = synthetic_seed

    def __len__(self) -> int:
        return self.count

    def images(self) -> Iterator[np.ndarray]:
        if self.files:
            for path in self.files:
                yield T.load_image(str(path))
        else:
            for i in range(self.count):
                yield demo_image(768, 1024, seed=self.synthetic_seed + i)

    def __iter__(self) -> Iterator[dict[str, np.ndarray]]:
        for image in self.images():
            tensor, _ = T.preprocess_image(image, self.image_size)
            yield {C.IMAGE.name: tensor}

    def fingerprint(self) -> str:
        """Identifies the set (file names, sizes, mtimes) for the range cache."""
        h = hashlib.sha256()
        if not self.files:
            h.update(f"synthetic:{self.synthetic_seed}:{self.count}".encode())
        for p in self.files:
            st = p.stat()
            h.update(f"{p.name}:{st.st_size}:{int(st.st_mtime)}".encode())
        return h.hexdigest()[:16]
