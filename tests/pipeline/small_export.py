"""``hqsam-edge`` with a smaller Light HQ-SAM, for tests that interrupt ``export`` at several points.

TinyViT with one block a stage instead of (2, 2, 6, 2): the same kinds of layers, the same graphs' inputs and
outputs, the same stages of the command (trace, check, simplify, verify), each export a third shorter.
Run as ``python tests/pipeline/small_export.py export --random-weights --out DIR ...``.
"""

from __future__ import annotations

import dataclasses
import sys

from hqsam_edge.model import build

if __name__ == "__main__":
    from hqsam_edge.cli import app

    build.MODEL_REGISTRY["vit_tiny"] = dataclasses.replace(build.MODEL_REGISTRY["vit_tiny"], tiny_depths=(1, 1, 1, 1))
    app(sys.argv[1:], prog_name="hqsam-edge")
