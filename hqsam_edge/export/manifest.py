"""``manifest.json``: what an artifact folder holds and how it was made.

Every command that reads a folder reads this file; nothing is inferred from
file names. Written atomically (temporary name, then rename).

An artifact is one variant a runtime uses: a ``backend`` (``onnxruntime`` or
``tensorrt``), a ``precision``, a ``format`` (``onnx`` graphs or TensorRT
``engine`` plans) and its files by graph. ONNX Runtime runs ``onnx``
artifacts; TensorRT builds its engines from ``onnx`` artifacts (its own, such
as the symmetric INT8 Q/DQ graph, or ONNX Runtime's fp32 / fp16 graphs) and
runs ``engine`` ones.

``files`` records the size and sha256 of every file the artifacts name (with
the graphs' external data) and of the calibration caches
(``export.integrity``); whatever opens a folder checks the files it will use
against them first (``check_files``). A manifest without ``files`` was written
by an older hqsam-edge: its folder is refused until ``hqsam-edge verify DIR
--update`` records them (trusting them on first open would trust a file
replaced before that).

What an artifact records beyond its files is typed (``export.records``): how
it was made (``provenance``), a TensorRT engine pair's bounds and recipes
(``engine``), an INT8 graph's calibration (``calibration``). Older manifests
(format 1, 2: a free-form ``extra`` dictionary) are upgraded as they are read.

Reading a manifest changes nothing on disk. A command that is about to work in
a folder first removes what a killed process left there
(``remove_stale_temporaries``).
"""

from __future__ import annotations

import datetime as _dt
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..atomic import remove_stale, write_text
from ..errors import ArtifactError
from ..inputs import MANIFEST, artifact_folder
from . import contract as C
from . import integrity
from .records import Calibration, EngineRecord, Provenance, from_extra

FORMAT_VERSION = 3
FORMATS = {"onnxruntime": ("onnx",), "tensorrt": ("engine", "onnx")}  # the first is what the backend runs


def tensor_entries(specs: tuple[C.TensorSpec, ...]) -> list[dict[str, Any]]:
    return [{"name": s.name, "dtype": s.dtype.__name__, "shape": list(s.shape)} for s in specs]


def graph_file(graph: str, precision: str = "fp32", backend: str = "onnxruntime") -> str:
    """The file name of a graph: ``encoder.onnx`` (fp32), ``encoder.fp16.onnx``, ``encoder.int8.tensorrt.onnx``."""
    if precision == "fp32":
        return f"{graph}.onnx"
    return f"{graph}.int8.{backend}.onnx" if precision == "int8" else f"{graph}.{precision}.onnx"


INT8_ON_FP16 = "encoder_on_fp16"  # the files key of a TensorRT INT8 graph artifact's strongly typed encoder


def int8_on_fp16_file(graph: str = "encoder") -> str:
    """``encoder.int8.tensorrt.fp16.onnx``: the Q/DQ graph laid out for TensorRT, its other layers in FP16."""
    return f"{graph}.int8.tensorrt.fp16.onnx"


def engine_file(graph: str, precision: str, dla_core: int | None = None) -> str:
    """``encoder.fp16.engine`` for a GPU pair; ``encoder.int8.dla0.engine`` (and its GPU decoder
    ``decoder.int8.dla0.engine``) for a pair whose encoder runs on DLA core 0, so a board keeps both."""
    return f"{graph}.{precision}.engine" if dla_core is None else f"{graph}.{precision}.{target_of(dla_core)}.engine"


def target_of(dla_core: int | None) -> str:
    """Where an engine pair's encoder runs: ``gpu``, or ``dla0`` / ``dla1``."""
    return "gpu" if dla_core is None else f"dla{dla_core}"


def tool_versions() -> dict[str, str]:
    """Versions of the libraries that make and check artifacts on this machine."""
    from .._version import __version__
    from ..hardware import module_version

    libraries = ("torch", "onnx", "onnxruntime")
    return {"hqsam_edge": __version__, **{m: module_version(m) or "not installed" for m in libraries}}


def provenance() -> Provenance:
    """When and where an artifact is made: now (UTC) and here (``hardware.this_platform``)."""
    from ..hardware import this_platform

    return Provenance(_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"), this_platform().to_dict())


@dataclass
class Artifact:
    """One variant a runtime uses: a backend, a precision, a format and the files it needs (by graph)."""

    backend: str  # "onnxruntime" or "tensorrt"
    precision: str  # "fp32", "fp16", "int8"
    files: dict[str, str]  # {"encoder": "encoder.onnx", "decoder": "decoder.onnx"}
    format: str = "onnx"  # "onnx" graphs, or "engine" (TensorRT plans)
    tool_versions: dict[str, str] = field(default_factory=dict)
    device: str = "cpu"
    parity: dict[str, Any] = field(default_factory=dict)
    provenance: Provenance | None = None  # None: made by export (the manifest's own ``created`` / ``platform``)
    engine: EngineRecord | None = None  # TensorRT engine pairs
    calibration: Calibration | None = None  # INT8 graphs

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Artifact:
        """An artifact of a format-3 manifest."""
        parts = {"provenance": Provenance, "engine": EngineRecord, "calibration": Calibration}
        return cls(**{k: (parts[k].from_dict(v) if k in parts and v is not None else v) for k, v in data.items()})

    @property
    def target(self) -> str:
        """``gpu`` or ``dla<N>``: where a TensorRT engine pair's encoder runs (``gpu`` for everything else)."""
        return target_of(self.engine.dla_core if self.engine is not None and self.format == "engine" else None)

    @property
    def key(self) -> tuple[str, str, str, str]:
        return self.backend, self.precision, self.format, self.target

    def describe(self) -> str:
        return f"{self.backend}/{self.precision}" + (" (onnx graphs)" if self.backend == "tensorrt" and
                                                      self.format == "onnx" else "") + \
            (f" on {self.target}" if self.target != "gpu" else "")


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
    files: dict[str, dict[str, Any]] | None = None  # {name: {size, sha256[, external_data]}}; None: older

    @property
    def is_hq(self) -> bool:
        return self.variant == "hq"

    @property
    def decoder_returns_tokens(self) -> bool:
        """Whether the decoder graph returns every mask token (``multimask_output`` / ``hq_token_only`` are then
        the folder's defaults, chosen per call), or, exported by an older hqsam-edge, only the masks of the
        options it was exported with."""
        shapes = [e["shape"] for e in self.graphs["decoder"]["outputs"] if e["name"] == C.LOW_RES_MASKS.name]
        return bool(shapes) and shapes[0][1] == C.mask_tokens(self.is_hq)

    @property
    def random_weights(self) -> bool:
        """Exported with ``--random-weights`` (no checkpoint: ``random_seed`` rebuilds the weights)."""
        return self.checkpoint_sha256 is None

    def find(self, backend: str, precision: str | None = None, format: str | None = None, *,
             folder: str | Path | None = None, dla_core: int | None = None) -> Artifact:
        """The artifact ``backend`` runs (``format`` None: what it runs: engines for TensorRT, ONNX graphs for
        ONNX Runtime; ``precision`` None: the first listed, fp32 before others). Engine pairs: ``dla_core`` the
        pair built for that DLA core; None: the GPU pair, or a DLA pair where the folder has no GPU one.
        ``folder``: named in the refusal's build command (else ``DIR``)."""
        format = format or FORMATS.get(backend, ("onnx",))[0]
        matches = [a for a in self.artifacts if a.backend == backend and a.format == format
                   and precision in (None, a.precision)]
        if dla_core is not None:
            matches = [a for a in matches if a.target == target_of(dla_core)]
        else:
            matches.sort(key=lambda a: a.target != "gpu")  # stable: GPU pairs first, the listed order kept
        if not matches:
            have = ", ".join(a.describe() for a in self.artifacts) or "none"
            want = (f"{backend}/{precision}" if precision else backend) + \
                ("" if dla_core is None else f" on {target_of(dla_core)}")
            dla = "" if dla_core is None else f" --dla-core {dla_core}"
            raise ArtifactError(
                f"no {want} artifact in this folder (it has: {have}); make one with "
                f"`hqsam-edge build {folder or 'DIR'} --backend {backend} --precision {precision or 'fp32'}{dla}`"
            )
        return matches[0]

    def add(self, artifact: Artifact) -> None:
        """Add or replace the artifact of the same backend, precision, format and target (GPU / DLA core)."""
        self.artifacts = [a for a in self.artifacts if a.key != artifact.key] + [artifact]

    def record_files(self, folder: str | Path, names) -> None:
        """Record the size and sha256 of ``names`` in ``folder`` as they are now (ONNX graphs with their
        external data): call it for the files just written, before ``write``."""
        self.files = {**(self.files or {}), **integrity.record(folder, names)}

    def check_files(self, folder: str | Path, names) -> None:
        """``ArtifactError``, one line naming the file and what differs, unless each file of ``names`` (and
        the external data its record names) is the file recorded."""
        folder = Path(folder)
        if self.files is None:
            raise ArtifactError(f"{folder / MANIFEST} was written by an older hqsam-edge and records no size or "
                                f"sha256 of its files: check that they are the files you made, then record them "
                                f"with `hqsam-edge verify {folder} --update` (or export the folder again)")
        for result in integrity.check(folder, self.files, names):
            if not result.ok:
                raise ArtifactError(result.problem(folder))

    def build_model(self):
        """The exported PyTorch model again: from its checkpoint (sha256 checked) or its random-weight seed."""
        import torch

        from ..model import build_model
        from ..digest import sha256_file

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
    """Read and check ``folder/manifest.json``; ``ArtifactError`` naming what is wrong. Nothing is changed on
    disk (``remove_stale_temporaries`` is for a command about to work in the folder)."""
    folder = Path(folder)
    path = folder / MANIFEST
    artifact_folder(folder)
    try:
        data = _upgrade(json.loads(path.read_text()))
        data["artifacts"] = [Artifact.from_dict(a) for a in data.get("artifacts", [])]
        if data.get("files") is not None:
            data["files"] = {str(name): dict(record) for name, record in data["files"].items()}
        manifest = Manifest(**data)
    except (json.JSONDecodeError, TypeError, KeyError, AttributeError, ValueError) as exc:
        raise ArtifactError(f"{path} is damaged or from another version ({exc}); export the folder again") from None
    if manifest.format != FORMAT_VERSION:
        raise ArtifactError(f"{path} has format {manifest.format}; this hqsam-edge reads {FORMAT_VERSION}")
    for artifact in manifest.artifacts:
        for name in artifact.files.values():
            if not (folder / name).is_file():
                raise ArtifactError(f"{folder / name} is listed in {MANIFEST} but missing; export/build again")
    return manifest


def remove_stale_temporaries(folder: str | Path) -> list[Path]:
    """Remove what a killed process left in an artifact folder (its temporaries, a build's staging) and beside
    it (an export's staging, a replaced folder set aside); what was removed. Temporaries of a live process stay
    (``atomic.remove_stale``). Called where a command starts work in a folder, never by reading it."""
    folder = Path(folder)
    return [*remove_stale(folder), *remove_stale(folder.parent, prefix=f".{folder.name}.")]


def _upgrade(data: dict[str, Any]) -> dict[str, Any]:
    """Format 1 -> 2 -> 3, each step on the dictionary as read."""
    if data.get("format") == 1:
        data = _upgrade_1(data)
    if data.get("format") == 2:
        data = _upgrade_2(data)
    return data


def _upgrade_1(data: dict[str, Any]) -> dict[str, Any]:
    """Format 1 -> 2: an artifact's ``extra["flavour"]`` became its backend (the INT8 graph laid out for
    TensorRT is a ``tensorrt`` artifact of ``format`` ``onnx``), and every artifact names its format."""
    for a in data.get("artifacts", []):
        flavour = a.get("extra", {}).pop("flavour", None)
        if a["backend"] == "tensorrt":
            a["format"] = "engine"
        else:
            a["backend"], a["format"] = flavour or a["backend"], "onnx"
    return {**data, "format": 2}


def _upgrade_2(data: dict[str, Any]) -> dict[str, Any]:
    """Format 2 -> 3: an artifact's free-form ``extra`` became typed records (``records.from_extra``)."""
    artifacts = [{**{k: v for k, v in a.items() if k != "extra"}, **from_extra(a.get("extra") or {})}
                 for a in data.get("artifacts", [])]
    return {**data, "artifacts": artifacts, "format": 3}
