"""The shared memory (/dev/shm) a Triton repository of hqsam-edge needs, from its bounds, and the check of it.

Triton's Python backend moves every tensor between the server and a Python model's stub process through a
shared-memory region per stub (``/dev/shm/<prefix>...``): it starts at the backend's ``shm-default-byte-size``
(1 MiB unless ``--backend-config=python,shm-default-byte-size=N``) and grows by at least
``shm-growth-byte-size`` (1 MiB) when a request needs more; it does not shrink. Docker gives a container 64 MB
of /dev/shm unless started with ``--shm-size``; a stub that cannot grow its region fails its request.

The need is an upper bound: the sum of what one request at the repository's bounds (largest image, most
prompts) can hold in a stub's region at once, for every stub that can hold one at the same time. For the
image + prompts model: the image, the prompts (``mask_input`` included), the encoder's and the decoder's
inputs and outputs it sends and receives by BLS, and its answer (``masks`` at the image's size, one byte a
pixel, ``low_res_masks`` and the features); for the graphs in the Python backend (``runtime="python"``): one
encoder call of ``max_batch`` images and one decoder call of ``max_prompts`` prompts.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass

import numpy as np

from ..errors import ArtifactError
from ..export import contract as C

MIB = 1 << 20
DOCKER_DEFAULT_SHM = 64 * MIB
SHM_PATH = "/dev/shm"
_F32 = 4
_LOW_RES = C.LOW_RES_SIZE * C.LOW_RES_SIZE * _F32  # one 256x256 float32 plane


def _bytes(spec: C.TensorSpec) -> int:
    """One image's worth of a batched graph tensor (its shape after the batch axis)."""
    return int(np.prod(spec.shape[1:])) * np.dtype(spec.dtype).itemsize


def _features(is_hq: bool) -> int:
    return sum(_bytes(s) for s in C.encoder_outputs(is_hq))


def _image() -> int:
    return _bytes(C.IMAGE)


@dataclass(frozen=True)
class ShmBudget:
    """Bytes of /dev/shm: ``request`` per instance of the image + prompts model (``python_instances`` of them),
    ``graphs`` per instance of the encoder and decoder models when they run in the Python backend
    (``graph_instances``, 0 on the onnxruntime / tensorrt backends)."""

    request: int
    graphs: int
    python_instances: int
    graph_instances: int

    @property
    def total(self) -> int:
        return self.request * self.python_instances + self.graphs * self.graph_instances

    @property
    def docker_shm_size(self) -> str:
        """``docker run --shm-size`` value: the total plus 64 MiB for the server itself, in whole GiB or MiB."""
        need = self.total + 64 * MIB
        gib = -(-need // (1 << 30))
        return f"{gib}g" if gib > 1 else f"{-(-need // (256 * MIB)) * 256}m"

    def describe(self) -> str:
        return (f"{fmt_bytes(self.total)} of /dev/shm at most (`docker run --shm-size={self.docker_shm_size}`; "
                f"Docker's default is 64 MB)")


def fmt_bytes(n: int) -> str:
    return f"{n / (1 << 30):.1f} GiB" if n >= 1 << 30 else f"{n / MIB:.0f} MiB"


def shm_budget(*, is_hq: bool, num_masks: int, max_batch: int, max_prompts: int, request_prompts: int,
               max_image_pixels: int, python_instances: int, graph_instances: int) -> ShmBudget:
    """The upper bound (module docstring) for a repository with these bounds; ``graph_instances`` 0 when the
    graphs run on Triton's native backends."""
    features, tokens = _features(is_hq), C.mask_tokens(is_hq)
    k, chunk = request_prompts, min(max_prompts, request_prompts)
    prompts = k * (4 * _F32 + _LOW_RES)  # boxes and mask_input (points: a few bytes each)
    decoder_call = features + chunk * (_LOW_RES + _F32) + chunk * (tokens * _LOW_RES + 4 * _F32)
    answer = k * num_masks * (max_image_pixels + _LOW_RES + _F32) + features
    request = 3 * max_image_pixels + prompts + (_image() + features) + decoder_call + answer
    graphs = max_batch * (_image() + features) + decoder_call if graph_instances else 0
    return ShmBudget(request, graphs, python_instances, graph_instances)


def check_shm(need: int, path: str = SHM_PATH) -> None:
    """``ArtifactError`` unless ``path`` (/dev/shm) holds ``need`` bytes: the Python model's load fails with
    the size to start the container with."""
    if need <= 0:
        return
    try:
        size = shutil.disk_usage(path).total
    except OSError:
        return  # no /dev/shm to measure (not Linux): the backend says so itself
    if size < need:
        budget = ShmBudget(need, 0, 1, 0)
        raise ArtifactError(f"{path} holds {fmt_bytes(size)}, but this repository's Python models need up to "
                            f"{fmt_bytes(need)} of it at their bounds: start the container with "
                            f"`--shm-size={budget.docker_shm_size}`, or write the repository again with smaller "
                            "--max-image-pixels / --max-request-prompts / --python-instances")
