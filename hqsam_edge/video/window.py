"""``track --show``: the annotated frames in a window, through OpenCV's HighGUI, where a display exists.

``display_problem()`` says why no window can be shown here (no display on a Linux machine, or an OpenCV built
without a GUI, as pip's ``opencv-python-headless`` is), so that the command line refuses ``--show`` in one line
before any work. ``Window`` shows each frame as it is written (in the writer's thread: HighGUI with Qt or GTK
draws from any one thread); closing the window, or ``q`` / Esc in it, ends the run as Ctrl-C does on a live
source (``stop``).
"""

from __future__ import annotations

import os
import sys
import threading

import numpy as np

from ..errors import BackendUnavailableError, UsageError

QUIT_KEYS = (ord("q"), 27)


def display_problem() -> str | None:
    """Why ``--show`` cannot open a window here, in one sentence; None if it can."""
    if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        return ("--show needs a display and none is set here (DISPLAY / WAYLAND_DISPLAY): run it on the machine's "
                "desktop (or ssh -X), or drop --show and open OUT/annotated.mp4")
    import cv2

    for line in cv2.getBuildInformation().splitlines():
        if line.strip().startswith("GUI:") and "NONE" in line.upper():
            return ("--show needs an OpenCV with a GUI; this one has none (opencv-python-headless): pip install "
                    "opencv-python (on Jetson: JetPack's python3-opencv), or drop --show and open OUT/annotated.mp4")
    return None


class Window:
    """A window titled ``title`` showing each frame given; ``stop`` is set when the user closes it or quits."""

    def __init__(self, title: str, stop: threading.Event) -> None:
        problem = display_problem()
        if problem is not None:
            raise UsageError(problem)
        import cv2

        self.title, self.stop, self._cv2 = title, stop, cv2
        self._shown = False

    def __call__(self, rgb: np.ndarray) -> None:
        cv2 = self._cv2
        try:
            cv2.imshow(self.title, np.ascontiguousarray(rgb[..., ::-1]))
            key = cv2.waitKey(1) & 0xFF
            closed = self._shown and cv2.getWindowProperty(self.title, cv2.WND_PROP_VISIBLE) < 1
        except cv2.error as exc:
            raise BackendUnavailableError(f"OpenCV cannot show a window: {str(exc).strip().splitlines()[-1]} "
                                          f"(drop --show and open OUT/annotated.mp4)") from None
        self._shown = True
        if key in QUIT_KEYS or closed:
            self.stop.set()

    def close(self) -> None:
        if self._shown:
            self._cv2.destroyWindow(self.title)
            self._cv2.waitKey(1)
