"""Video, cameras and detectors: follow objects through a stream with HQ-SAM on any backend.

``track(predictor, source, prompts, out, TrackSpec(...))`` reads frames (``sources``), prompts the segmenter
with each object's carried box and the frame's detections (``prompts``, ``detector``), keeps ids
(``tracker``), and writes an annotated video and the results (``outputs``), frame by frame (``mode``).
``ytvis_eval`` scores YouTube-VIS results (HQ-YTVIS's tube mask AP and tube boundary AP); ``synthetic``
makes videos with ground truth and a stand-in segmenter for tests. PyAV (``av``) and SciPy come with the
``video`` extra and are imported where they are used.
"""

from __future__ import annotations

from .api import TrackSpec, track
from ..apps.detector import DetectorSpec, OnnxDetector
from .frames import Frame
from .mode import TrackSummary
from .outputs import OutputSpec
from ..apps.detections import Detections
from .prompts import DetectionsFile, FirstFramePrompts, PointGroup
from .sources import SourceSpec, open_source
from .tracker import TrackerSpec

__all__ = ["Detections", "DetectionsFile", "DetectorSpec", "FirstFramePrompts", "Frame", "OnnxDetector",
           "OutputSpec", "PointGroup", "SourceSpec", "TrackSpec", "TrackSummary", "TrackerSpec", "open_source",
           "track"]
