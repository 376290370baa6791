"""Video, cameras and detectors: follow objects through a stream with HQ-SAM on any backend.

``track(predictor, source, prompts, out, TrackSpec(...))`` reads frames (``sources``), prompts the segmenter
with each object's carried box and the frame's detections (``prompts``, ``detector``), keeps ids
(``tracker``), and writes an annotated video and the results (``outputs``): the steps of a frame in ``mode``,
run overlapped on the stream engine (``overlapped``) or one after another (``mode.run_plain``), measured by
``meter``; ``window`` shows the frames on a display.
``ytvis_eval`` scores YouTube-VIS results (HQ-YTVIS's tube mask AP and tube boundary AP); ``synthetic``
makes videos with ground truth and a stand-in segmenter for tests. PyAV (``av``) and SciPy come with the
``video`` extra and are imported where they are used.
"""

from __future__ import annotations

from ..apps.detections import Detections
from ..apps.detector import DetectorSpec, OnnxDetector
from .api import TrackSpec, track
from .frames import Frame
from .meter import TrackSummary
from .outputs import OutputSpec
from .prompts import DetectionsFile, FirstFramePrompts, PointGroup
from .sources import SourceSpec, open_source
from .tracker import TrackerSpec

__all__ = ["Detections", "DetectionsFile", "DetectorSpec", "FirstFramePrompts", "Frame", "OnnxDetector",
           "OutputSpec", "PointGroup", "SourceSpec", "TrackSpec", "TrackSummary", "TrackerSpec", "open_source",
           "track"]
