"""The exception types of hqsam-edge.

Every error a user can cause (a bad file, a wrong option, a missing optional
dependency) is one of these. Messages say what is wrong and how to fix it; the
CLI prints ``str(error)`` as one line and exits with the error's ``exit_code``:

- 1: a bad file, folder, checkpoint, image or data set; a backend not usable here; a parity miss;
- 2: a user's mistake in an option or argument (``UsageError``);
- 3: a command that finished but left some inputs out (``SKIPPED_EXIT_CODE``);
- 4: a tool that failed on well-formed input (``BuildError``: TensorRT's parser or builder);
- 130 / 143: interrupted by SIGINT / SIGTERM (``interrupts``).
"""

from __future__ import annotations


class HQSamEdgeError(Exception):
    """Base class: a user-facing error with a message that says how to fix it."""

    exit_code = 1


class UsageError(HQSamEdgeError, ValueError):
    """An option or argument that cannot be used (unknown backbone, bad prompt...)."""

    exit_code = 2


class CheckpointError(HQSamEdgeError):
    """A checkpoint that is missing, corrupt, or made for another model."""


class DownloadError(HQSamEdgeError):
    """A download that failed or produced a file whose checksum does not match."""


class ImageError(HQSamEdgeError):
    """An image that cannot be read or is not an RGB picture."""


class ArtifactError(HQSamEdgeError):
    """An artifact folder that is missing, incomplete, or inconsistent with its manifest."""


class BackendUnavailableError(HQSamEdgeError):
    """A runtime backend whose libraries or device are not present on this machine."""


class ParityError(HQSamEdgeError):
    """An exported or converted graph whose outputs miss the reference by more than allowed."""


class DataError(HQSamEdgeError):
    """A data set folder that is missing, incomplete, or holds unreadable or mismatched images and masks."""


class BuildError(HQSamEdgeError):
    """A tool (TensorRT's ONNX parser or builder) that failed on input it should take: not the user's mistake."""

    exit_code = 4


class ImageNotSetError(UsageError, RuntimeError):
    """Masks asked for before an image was set (a ``RuntimeError`` too, as ``SamPredictor`` raises)."""


SKIPPED_EXIT_CODE = 3  # a command that finished but left some inputs out (``segment --on-error skip``)
