"""``hqsam-edge`` with a small INT8 problem, for tests that interrupt ``build --precision int8 --layer-search``.

Only the first block of Light HQ-SAM's first attention stage is an INT8 candidate (4 GEMMs; the stage has 8, as
in ``tests/calib/test_sensitivity.py``) and one image is held out: the command
line's own code path (signals, temporaries, the one-line errors) in a minute
instead of six. Run as ``python tests/pipeline/small_build.py build DIR ...``.
"""

from __future__ import annotations

import dataclasses
import sys

from hqsam_edge.pipeline import build as pipeline
from tests.calib.test_sensitivity import SMALL

_precision_spec = pipeline.BuildSpec.precision_spec


# and of that stage's two blocks only the first: 4 GEMMs (one, fc2, alone misses the test's 32 dB, so the layer
# search runs), half the search of SMALL's 8
CANDIDATES = (*SMALL, "layers.1/blocks.1/")


def _small(self, precision=None, graph_backend=None):
    return dataclasses.replace(_precision_spec(self, precision, graph_backend), int8_exclude=CANDIDATES, heldout=1)


if __name__ == "__main__":
    from hqsam_edge.cli import app

    pipeline.BuildSpec.precision_spec = _small
    app(sys.argv[1:], prog_name="hqsam-edge")
