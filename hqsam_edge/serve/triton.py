"""A Triton Inference Server model repository from an artifact folder.

The folder's ``manifest.json`` says what is there; tensor names, types and
shapes come from ``hqsam_edge.export.contract`` (graphs) and
``hqsam_edge.serve.triton_model`` (the served model). The repository::

    REPO/
      <name>_encoder/config.pbtxt, 1/model.onnx | 1/model.plan
      <name>_decoder/config.pbtxt, 1/model.onnx | 1/model.plan
      <name>/config.pbtxt, 1/model.py        Python backend: image + prompts -> masks
      <name>/files.json                      size and sha256 of every copied graph / engine

``<name>_encoder`` takes ``image`` FP32 ``[B,3,1024,1024]`` (SAM's resized,
normalised, padded frame) with B a Triton batch dimension: the dynamic batcher
merges requests of different images into one encoder call, up to
``max_batch_size`` (TensorRT engines: their profile's B).

``<name>_decoder`` takes one image's ``image_embeddings`` ``[1,256,64,64]``
(and ``hq_features`` ``[1,32,256,256]``) with P prompts (``point_coords``
``[P,N,2]`` in the 1024 frame, ``point_labels`` ``[P,N]``, ``mask_input``
``[P,1,256,256]``, ``has_mask_input`` ``[P]``). The features are batch 1
while the prompts have P first, so Triton's batcher, which concatenates
requests along one leading dimension of every input, cannot merge requests
(they would also need different images' features). The decoder is therefore
``max_batch_size: 0`` with P a dynamic dimension, and "dynamic batching over
prompts" means: all prompts of one request go to the decoder in one call (up
to ``max_prompts``, the TensorRT profile's bound, in more calls beyond it).

``<name>`` is ``triton_model.TritonPythonModel`` (see there for its inputs and
outputs). It calls the other two through BLS and needs ``hqsam-edge``
installed in the Python backend's environment. The artifact's files are
checked against the folder's manifest before they are copied; the copies keep
their sizes and sha256 in ``<name>/files.json``, and the Python model checks
them when Triton loads it (``triton_model.check_repository``).

With ``runtime="python"`` the encoder and decoder are Python models instead
(``1/model.py`` beside ``1/model.onnx``, ``serve.triton_graph``: ONNX Runtime
in the Python backend, each with its own ``files.json``), for servers without
the onnxruntime backend. Every Python model's tensors pass through /dev/shm:
``Repository.shm`` (``serve.shm``) is the need at the repository's bounds.

The repository is built in a temporary folder beside ``REPO`` and renamed into
place: a failure leaves no half-written repository.
"""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..atomic import staged_folder
from ..errors import ArtifactError, UsageError
from ..export import contract as C
from ..export.manifest import Artifact, Manifest, read_manifest, remove_stale_temporaries
from ..export.onnx_files import external_data_files
from .. import inputs
from ..inputs import require_choice
from . import triton_model as S
from .shm import ShmBudget, shm_budget
from .triton_graph import GraphParameters

BACKENDS = ("onnxruntime", "tensorrt")
RUNTIMES = inputs.TRITON_RUNTIMES
KINDS = {"gpu": "KIND_GPU", "cpu": "KIND_CPU"}
PLATFORMS = {"onnxruntime": "onnxruntime_onnx", "tensorrt": "tensorrt_plan"}
MODEL_FILES = {"onnxruntime": "model.onnx", "tensorrt": "model.plan"}  # Triton's default file names
DATA_TYPES = {np.dtype(np.float32): "TYPE_FP32", np.dtype(np.uint8): "TYPE_UINT8", np.dtype(np.int32): "TYPE_INT32",
              np.dtype(np.int64): "TYPE_INT64", np.dtype(np.bool_): "TYPE_BOOL"}
DEFAULT_MAX_BATCH = 4  # encoder images per call under ONNX Runtime (Triton's own default max batch)
DEFAULT_MAX_PROMPTS = 64  # decoder prompts per call under ONNX Runtime (`build --max-prompts` default)
DEFAULT_REQUEST_PROMPTS = 64  # prompts per request (at least the decoder's per call): bounds the answer's size
DEFAULT_MAX_IMAGE_PIXELS = 4096 * 4096  # a 12 MP phone photo (4032 x 3024) fits
VERSION = "1"
MODEL_PY = '''"""Triton Python-backend model of hqsam-edge: needs `pip install hqsam-edge` in this Python."""

from hqsam_edge.serve.triton_model import TritonPythonModel  # noqa: F401
'''
GRAPH_MODEL_PY = '''"""Triton Python-backend model of one hqsam-edge graph under ONNX Runtime: needs
`pip install hqsam-edge onnxruntime "numpy<2"` in this Python."""

from hqsam_edge.serve.triton_graph import TritonPythonModel  # noqa: F401
'''


@dataclass(frozen=True)
class TritonSpec:
    """Everything ``hqsam-edge triton`` decides; the defaults are the real ones.

    ``max_prompts`` / ``max_batch`` None: the TensorRT engines' profile bounds,
    or 64 prompts and 4 images under ONNX Runtime. ``kind`` places the encoder
    and decoder instances (the Python model runs on the CPU).

    ``runtime``: ``native`` serves the graphs with Triton's onnxruntime or
    tensorrt backend; ``python`` (ONNX graphs only) runs them with ONNX Runtime
    inside Triton's Python backend, for servers built without those backends
    (``serve.triton_graph``). ``python_instances``: instances of the image +
    prompts model, i.e. requests in flight at once, and so the most encoder
    requests Triton's batcher can merge: one instance sends its BLS requests
    one at a time, so the encoder never sees two together (measured with a
    real server; None: ``max_batch``, or ``instances`` if more). A request holds
    at most ``max_request_prompts`` prompts (None: 64, or ``max_prompts`` if
    larger) and an image of at most ``max_image_pixels``: they bound the answer
    and so the /dev/shm the repository needs (``serve.shm``).
    """

    folder: str
    out: str
    backend: str = "onnxruntime"
    precision: str | None = None
    name: str | None = None
    max_prompts: int | None = None
    max_batch: int | None = None
    instances: int = 1
    kind: str = "gpu"
    max_queue_delay_us: int = 0
    preferred_batch_sizes: tuple[int, ...] = ()
    overwrite: bool = False
    runtime: str = "native"
    python_instances: int | None = None
    max_request_prompts: int | None = None
    max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS


@dataclass(frozen=True)
class Repository:
    path: Path
    name: str
    encoder: str
    decoder: str
    backend: str
    precision: str
    max_batch: int
    max_prompts: int
    note: str = ""
    runtime: str = "native"
    shm: ShmBudget | None = None

    def summary(self) -> str:
        where = "Python backend, ONNX Runtime" if self.runtime == "python" else self.backend
        needs = "hqsam-edge, onnxruntime and numpy<2" if self.runtime == "python" else "hqsam-edge and numpy<2"
        shm = f"; the Python models need {self.shm.describe()}" if self.shm else ""
        return (f"wrote {self.path}: {self.name} (image + prompts -> masks, Python backend), {self.encoder} "
                f"({where} {self.precision}, up to {self.max_batch} images per call), {self.decoder} "
                f"(up to {self.max_prompts} prompts per call); serve with `tritonserver --model-repository "
                f"{self.path}` where the Python of its Python backend has {needs}{shm}{self.note}")


# -- config.pbtxt ----------------------------------------------------------------------------------

class Enum(str):
    """A protobuf enum value (written bare, not quoted)."""


def _scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Enum):
        return str(value)
    if isinstance(value, int):
        return str(value)
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


def render_pbtxt(message: dict[str, Any], indent: int = 0) -> str:
    """A ``ModelConfig`` as plain data (field name -> scalar, list or nested dict) -> protobuf text format.

    Lists of dicts are repeated messages; maps are lists of ``{"key", "value"}``.
    """
    pad = "  " * indent
    lines = []
    for key, value in message.items():
        if isinstance(value, dict):
            lines += [f"{pad}{key} {{", render_pbtxt(value, indent + 1), f"{pad}}}"]
        elif isinstance(value, (list, tuple)):
            if value and isinstance(value[0], dict):
                for item in value:
                    lines += [f"{pad}{key} {{", render_pbtxt(item, indent + 1), f"{pad}}}"]
            elif value:
                lines.append(f"{pad}{key}: [ {', '.join(_scalar(v) for v in value)} ]")
        else:
            lines.append(f"{pad}{key}: {_scalar(value)}")
    return "\n".join(line for line in lines if line)


def tensor_entry(spec: C.TensorSpec, *, batched: bool = False, optional: bool = False, **dims: int) -> dict[str, Any]:
    """One ``ModelInput`` / ``ModelOutput``: dynamic axes -1 unless fixed in ``dims``; a Triton batch
    dimension (``batched``) is left out of ``dims``, as Triton wants."""
    shape = [dims.get(d, -1) if isinstance(d, str) else d for d in spec.shape]
    entry: dict[str, Any] = {"name": spec.name, "data_type": Enum(DATA_TYPES[np.dtype(spec.dtype)]),
                             "dims": shape[1:] if batched else shape}
    if optional:
        entry["optional"] = True
    return entry


def _instances(count: int, kind: str) -> list[dict[str, Any]]:
    return [{"count": count, "kind": Enum(kind)}]


def _served_by(backend: str, runtime: str, graph: str, is_hq: bool) -> dict[str, Any]:
    """``platform`` of Triton's native backend, or the Python backend with the graph model's parameters."""
    if runtime == "native":
        return {"platform": PLATFORMS[backend]}
    return {"backend": "python", "parameters": _parameters(GraphParameters(graph, is_hq).to_strings())}


def _parameters(values: dict[str, str]) -> list[dict[str, Any]]:
    return [{"key": k, "value": {"string_value": v}} for k, v in values.items()]


def encoder_config(name: str, backend: str, is_hq: bool, *, max_batch: int, instances: int, kind: str,
                   max_queue_delay_us: int, preferred_batch_sizes: tuple[int, ...],
                   runtime: str = "native") -> dict[str, Any]:
    batching: dict[str, Any] = {"max_queue_delay_microseconds": max_queue_delay_us}
    if preferred_batch_sizes:
        batching = {"preferred_batch_size": list(preferred_batch_sizes), **batching}
    return {
        "name": name, **_served_by(backend, runtime, "encoder", is_hq), "max_batch_size": max_batch,
        "input": [tensor_entry(s, batched=True) for s in C.encoder_inputs()],
        "output": [tensor_entry(s, batched=True) for s in C.encoder_outputs(is_hq)],
        "instance_group": _instances(instances, KINDS[kind]),
        "dynamic_batching": batching,
    }


def decoder_config(name: str, backend: str, is_hq: bool, *, instances: int, kind: str,
                   runtime: str = "native") -> dict[str, Any]:
    return {
        "name": name, **_served_by(backend, runtime, "decoder", is_hq), "max_batch_size": 0,
        "input": [tensor_entry(s) for s in C.decoder_inputs(is_hq)],
        "output": [tensor_entry(s) for s in C.decoder_outputs(is_hq)],
        "instance_group": _instances(instances, KINDS[kind]),
    }


def python_config(name: str, params: S.ServeParameters, num_masks: int, *, instances: int) -> dict[str, Any]:
    is_hq = params.info.is_hq
    return {
        "name": name, "backend": "python", "max_batch_size": 0,
        "input": [tensor_entry(s, optional=True) for s in S.serve_inputs(is_hq)],
        "output": [tensor_entry(s, M=num_masks) for s in S.serve_outputs(is_hq)],
        "instance_group": _instances(instances, KINDS["cpu"]),
        "parameters": _parameters(params.to_strings()),
    }


# -- files -----------------------------------------------------------------------------------------

def _copy_graph(folder: Path, file: str, backend: str, version_dir: Path) -> dict[Path, str]:
    """``folder/file`` -> ``version_dir/model.onnx`` (a folder ``model.onnx/`` holding the graph and its
    external data when it has some, as Triton's ONNX Runtime backend wants) or ``model.plan``; each copy
    -> the file it was copied from."""
    source = folder / file
    version_dir.mkdir(parents=True)
    target = version_dir / MODEL_FILES[backend]
    data = [] if backend == "tensorrt" else external_data_files(source)
    if not data:
        shutil.copyfile(source, target)
        return {target: file}
    target.mkdir()
    shutil.copyfile(source, target / "model.onnx")
    copies = {target / "model.onnx": file}
    for name in data:
        if not (folder / name).is_file():
            raise ArtifactError(f"{source} needs its external data {folder / name}, which is missing; export again")
        (target / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(folder / name, target / name)
        copies[target / name] = name
    return copies


def _records(manifest, copies: dict[Path, str], repo: Path) -> dict[str, dict[str, int | str]]:
    """The size and sha256 of each copy (its source's, checked before copying), by path in the repository."""
    return {dest.relative_to(repo).as_posix(): {k: manifest.files[source][k] for k in ("size", "sha256")}
            for dest, source in copies.items()}


def _check_replaceable(out: Path, overwrite: bool) -> None:
    if not out.exists():
        return
    if not overwrite:
        raise UsageError(f"{out} already exists; pass --overwrite to replace it")
    entries = list(out.iterdir()) if out.is_dir() else None
    if entries is None or any(not (e.is_dir() and (e / "config.pbtxt").is_file()) for e in entries):
        raise UsageError(f"{out} is not a Triton model repository (a folder of model folders with config.pbtxt); "
                         "refusing to replace it, choose another --out")


def _check_spec(spec: TritonSpec) -> None:
    require_choice(spec.backend, BACKENDS, "triton backend")
    require_choice(spec.kind, KINDS, "instance kind")
    if spec.backend == "tensorrt" and spec.kind == "cpu":
        raise UsageError("TensorRT engines run on a GPU: use --kind gpu (or --backend onnxruntime for CPU)")
    if spec.runtime not in RUNTIMES:
        raise UsageError(f"unknown runtime {spec.runtime!r} for triton; choose native or python")
    if spec.runtime == "python" and spec.backend != "onnxruntime":
        raise UsageError("--runtime python runs ONNX graphs with ONNX Runtime in Triton's Python backend: "
                         "use --backend onnxruntime (TensorRT engines need Triton's tensorrt backend)")
    if spec.name is not None and not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", spec.name):
        raise UsageError(f"model name {spec.name!r} must be letters, digits, '_', '-' or '.'")
    for what, value in (("--instances", spec.instances), ("--max-prompts", spec.max_prompts),
                        ("--max-batch", spec.max_batch), ("--python-instances", spec.python_instances),
                        ("--max-request-prompts", spec.max_request_prompts),
                        ("--max-image-pixels", spec.max_image_pixels)):
        if value is not None and value < 1:
            raise UsageError(f"{what} must be at least 1, not {value}")
    if spec.max_queue_delay_us < 0:
        raise UsageError(f"--max-queue-delay-us must be 0 or more, not {spec.max_queue_delay_us}")
    if any(b < 1 for b in spec.preferred_batch_sizes):
        raise UsageError(f"preferred batch sizes must be at least 1: {list(spec.preferred_batch_sizes)}")


def _bound(asked: int | None, engine: int | None, default: int, what: str, option: str) -> int:
    """The user's bound, checked against the engine's profile (None: no engine bound)."""
    if engine is None:
        return asked or default
    if asked is not None and asked > engine:
        raise UsageError(f"{option} {asked} exceeds the TensorRT engines' {what} ({engine}); "
                         f"build them again with a larger bound")
    return asked or engine


def write_repository(spec: TritonSpec) -> Repository:
    """Write the model repository ``spec.out`` for the artifact folder ``spec.folder`` (what a killed process
    left in or beside the folder removed first; the repository's own staging is ``staged_folder``'s)."""
    _check_spec(spec)
    folder, out = Path(spec.folder), Path(spec.out)
    manifest = read_manifest(folder)
    remove_stale_temporaries(folder)
    artifact = _served_artifact(spec, folder, manifest)
    _check_replaceable(out, spec.overwrite)

    trt = spec.backend == "tensorrt"
    limits = artifact.engine.limits if trt and artifact.engine is not None else None  # the engines' profile
    engine_prompts = limits.max_prompts if limits else None
    engine_points = limits.max_points if limits else 0
    engine_batch = (limits.max_batch if limits else 1) if trt else None  # the encoder profile's B
    max_prompts = _bound(spec.max_prompts, engine_prompts, DEFAULT_MAX_PROMPTS, "prompts per call", "--max-prompts")
    max_batch = _bound(spec.max_batch, engine_batch, DEFAULT_MAX_BATCH, "batch", "--max-batch")
    if any(b > max_batch for b in spec.preferred_batch_sizes):
        raise UsageError(f"preferred batch sizes {list(spec.preferred_batch_sizes)} exceed the encoder's "
                         f"max batch {max_batch}")

    name = spec.name or f"{manifest.variant}_{manifest.backbone}"
    names = {"python": name, "encoder": f"{name}_encoder", "decoder": f"{name}_decoder"}
    num_masks = C.num_masks(manifest.is_hq, manifest.multimask_output)
    python_instances = spec.python_instances or max(max_batch, spec.instances)
    request_prompts = spec.max_request_prompts or max(DEFAULT_REQUEST_PROMPTS, max_prompts)
    shm = shm_budget(is_hq=manifest.is_hq, num_masks=num_masks, max_batch=max_batch, max_prompts=max_prompts,
                     request_prompts=request_prompts, max_image_pixels=spec.max_image_pixels,
                     python_instances=python_instances,
                     graph_instances=spec.instances if spec.runtime == "python" else 0)
    params = S.ServeParameters(manifest.backbone, manifest.variant, manifest.image_size, manifest.multimask_output,
                               manifest.hq_token_only, names["encoder"], names["decoder"], max_prompts, engine_points,
                               max_request_prompts=request_prompts, max_image_pixels=spec.max_image_pixels,
                               shm_bytes=shm.total)
    configs = {
        "encoder": encoder_config(names["encoder"], spec.backend, manifest.is_hq, max_batch=max_batch,
                                  instances=spec.instances, kind=spec.kind,
                                  max_queue_delay_us=spec.max_queue_delay_us,
                                  preferred_batch_sizes=tuple(spec.preferred_batch_sizes), runtime=spec.runtime),
        "decoder": decoder_config(names["decoder"], spec.backend, manifest.is_hq,
                                  instances=spec.instances, kind=spec.kind, runtime=spec.runtime),
        "python": python_config(name, params, num_masks, instances=python_instances),
    }
    with staged_folder(out, "repository") as staging:
        _write_models(staging, names, configs, manifest, folder, artifact.files, spec.backend, spec.runtime)

    return Repository(out, names["python"], names["encoder"], names["decoder"], spec.backend, artifact.precision,
                      max_batch, max_prompts, _engine_note(artifact) if trt else "", spec.runtime, shm)


def _served_artifact(spec: TritonSpec, folder: Path, manifest: Manifest) -> Artifact:
    """The folder's artifact for ``spec.backend`` / ``spec.precision`` (engines, or ONNX graphs), its files
    checked against the manifest."""
    try:
        artifact = manifest.find(spec.backend, spec.precision, folder=folder)
    except ArtifactError as exc:
        where = (" on the serving GPU (TensorRT engines are built on the kind of GPU that runs them)"
                 if spec.backend == "tensorrt" else "")
        raise ArtifactError(f"{exc}{where}") from None
    if not manifest.decoder_returns_tokens:
        raise ArtifactError(f"{folder} was exported by an older hqsam-edge (its decoder returns the exported "
                            "choice of masks, not every mask token): export it again for Triton")
    if spec.kind == "gpu" and artifact.calibration is not None and artifact.calibration.ranged_per_call:
        raise UsageError(f"{folder}'s int8 graph ranges its activations per call, a CPU recipe (ONNX Runtime's CUDA "
                         "kernels take no uint8 GEMMs): serve it with --kind cpu, or fp16 / TensorRT's INT8 on a GPU")
    manifest.check_files(folder, artifact.files.values())
    return artifact


def _engine_note(artifact: Artifact) -> str:
    """What the serving machine must have for these engines."""
    note = (f"; the engines need TensorRT {artifact.tool_versions.get('tensorrt', '?')} on a "
            f"{artifact.device} (the versions Triton's container must have)")
    if artifact.engine is not None and artifact.engine.version_compatible:
        note += ("; they are version compatible, which Triton loads only when started with "
                 "--backend-config=tensorrt,version-compatible=true")
    return note


def _write_models(staging: Path, names: dict[str, str], configs: dict[str, dict[str, Any]], manifest,
                  folder: Path, files: dict[str, str], backend: str, runtime: str) -> None:
    """Each model's folder: its config, its ``model.py`` (Python models) or graph copy, and ``files.json``
    records of the copies (all of them beside the image + prompts model; a graph's own beside a graph model
    of the ``python`` runtime, which checks it when it loads)."""
    copies: dict[Path, str] = {}
    for part, config in configs.items():
        model_dir = staging / names[part]
        model_dir.mkdir()
        (model_dir / "config.pbtxt").write_text(render_pbtxt(config) + "\n")
        if part == "python":
            (model_dir / VERSION).mkdir()
            (model_dir / VERSION / "model.py").write_text(MODEL_PY)
            continue
        own = _copy_graph(folder, files[part], backend, model_dir / VERSION)
        copies.update(own)
        if runtime == "python":
            (model_dir / VERSION / "model.py").write_text(GRAPH_MODEL_PY)
            (model_dir / S.FILES_JSON).write_text(json.dumps({"files": _records(manifest, own, staging)}, indent=1)
                                                  + "\n")
    (staging / names["python"] / S.FILES_JSON).write_text(
        json.dumps({"files": _records(manifest, copies, staging)}, indent=1) + "\n")
