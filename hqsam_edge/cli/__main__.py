"""``python -m hqsam_edge.cli`` (e.g. under ``torchrun``): the ``hqsam-edge`` command line."""

from __future__ import annotations

from . import app

if __name__ == "__main__":
    app()
