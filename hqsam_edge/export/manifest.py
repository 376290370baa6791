"""``manifest.json``: what an artifact folder holds and how it was made.

Every command that reads a folder reads this file; nothing is inferred from
file names. Written atomically (temporary name, then rename).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..atomic import write_text
from ..errors import ArtifactError
from . import contract as C

MANIFEST = "manifest.json"
FORMAT_VERSION = 1


def tensor_entries(specs: tuple[C.TensorSpec, ...]) -> list[dict[str, Any]]:
    return [{"name": s.name, "dtype": s.dtype.__name__, "shape": list(s.shape)} for s in specs]


@dataclass
class Artifact:
    """One runnable variant: a backend, a precision and the files it needs (by graph)."""

    backend: str  # "onnxruntime" or "tensorrt"
    precision: str  # "fp32", "fp16", "int8"
    files: dict[str, str]  # {"encoder": "encoder.onnx", "decoder": "decoder.onnx"}
    tool_versions: dict[str, str] = field(default_factory=dict)
    device: str = "cpu"
    parity: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class Manifest:
    backbone: str
    variant: str
    image_size: int
    checkpoint: str | None
    checkpoint_sha256: str | None
    random_seed: int | None
    hq_token_only: bool
    multimask_output: bool
    opset: int
    graphs: dict[str, dict[str, Any]]
    parity: dict[str, Any]
    artifacts: list[Artifact]
    tool_versions: dict[str, str]
    created: str
    format: int = FORMAT_VERSION
    platform: dict[str, Any] = field(default_factory=dict)  # the machine that exported (runtime/hardware.py)

    @property
    def is_hq(self) -> bool:
        return self.variant == "hq"

    def find(self, backend: str, precision: str | None = None, flavour: str | None = None) -> Artifact:
        """The artifact for ``backend`` (``precision`` None: the first listed, fp32 before others).

        Graph variants made for another runtime (``extra["flavour"]``, e.g. the
        symmetric INT8 graph TensorRT wants) are found only when asked for.
        """
        flavour = flavour or backend
        matches = [a for a in self.artifacts if a.backend == backend and precision in (None, a.precision)
                   and a.extra.get("flavour", backend) == flavour]
        if not matches:
            have = ", ".join(f"{a.backend}/{a.precision}" for a in self.artifacts) or "none"
            want = f"{backend}/{precision}" if precision else backend
            raise ArtifactError(
                f"no {want} artifact in this folder (it has: {have}); make one with "
                f"`hqsam-edge build DIR --backend {backend} --precision {precision or 'fp32'}`"
            )
        return matches[0]

    def add(self, artifact: Artifact) -> None:
        """Add or replace the artifact of the same backend and precision."""
        def key(a: Artifact) -> tuple:
            return a.backend, a.precision, a.extra.get("flavour", a.backend)

        self.artifacts = [a for a in self.artifacts if key(a) != key(artifact)] + [artifact]

    def build_model(self):
        """The exported PyTorch model again: from its checkpoint (sha256 checked) or its random-weight seed."""
        import torch

        from ..model import build_model
        from ..model.checkpoint import sha256_file

        if self.checkpoint is not None:
            path = Path(self.checkpoint)
            if not path.is_file() or sha256_file(path) != self.checkpoint_sha256:
                raise ArtifactError(f"the exported checkpoint {path} is missing or changed; it is needed to rebuild "
                                    "the PyTorch model (reference checks, --backend torch)")
            return build_model(self.backbone, self.variant, path)
        torch.manual_seed(self.random_seed or 0)
        return build_model(self.backbone, self.variant)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=False) + "\n"

    def write(self, folder: str | Path) -> Path:
        return write_text(Path(folder) / MANIFEST, self.to_json())


def read_manifest(folder: str | Path) -> Manifest:
    """Read and check ``folder/manifest.json``; ``ArtifactError`` naming what is wrong."""
    folder = Path(folder)
    path = folder / MANIFEST
    if not folder.is_dir():
        raise ArtifactError(f"artifact folder not found: {folder} (make one with `hqsam-edge export`)")
    if not path.is_file():
        raise ArtifactError(f"{folder} has no {MANIFEST}: not an artifact folder of `hqsam-edge export`")
    try:
        data = json.loads(path.read_text())
        data["artifacts"] = [Artifact(**a) for a in data.get("artifacts", [])]
        manifest = Manifest(**data)
    except (json.JSONDecodeError, TypeError, KeyError) as exc:
        raise ArtifactError(f"{path} is damaged or from another version ({exc}); export the folder again") from None
    if manifest.format != FORMAT_VERSION:
        raise ArtifactError(f"{path} has format {manifest.format}; this hqsam-edge reads {FORMAT_VERSION}")
    for artifact in manifest.artifacts:
        for name in artifact.files.values():
            if not (folder / name).is_file():
                raise ArtifactError(f"{folder / name} is listed in {MANIFEST} but missing; export/build again")
    return manifest
