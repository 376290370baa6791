"""The ``hqsam-edge`` command line (typer): ``app``.

``group`` holds the app, the run every command shares and the one error path; ``options`` the options that
several commands share; one module per group of commands registers them on ``app``: ``model`` (info,
download, export), ``artifacts`` (build, verify, triton), ``run`` (predict, segment, bench), ``merge`` (a sharded
segment run's results), ``video`` (track),
``train`` (train, eval). Each command parses its options and calls the library; heavy modules are imported
inside the commands, so that a bad value or path fails before torch, onnx or onnxruntime are imported.
"""

from __future__ import annotations

from . import model, artifacts, run, merge, video, train  # noqa: F401, I001 - each registers its commands, in this order
from .group import app

__all__ = ["app", "main"]


def main() -> None:  # pragma: no cover - console entry
    app()
