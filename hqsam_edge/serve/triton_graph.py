"""The Python-backend model of one graph (encoder or decoder) in a repository of the ``python`` runtime.

Triton servers without the onnxruntime backend (the one ``nvidia-pytriton`` bundles has the Python backend
only) still serve the graphs: ``serve.triton`` then writes ``<name>_encoder`` and ``<name>_decoder`` as Python
models whose ``model.py`` imports ``TritonPythonModel`` from here. Each runs its ``1/model.onnx`` with ONNX
Runtime, with the same inputs and outputs (names, types, shapes from ``hqsam_edge.export.contract``) as the
onnxruntime-backend model it replaces, so the image + prompts model calls either kind the same way.

The encoder keeps Triton's batch dimension: the dynamic batcher hands ``execute`` every request it collected
(each ``[b,3,1024,1024]``), and they run as one ONNX Runtime call on the concatenated batch. The decoder takes
one request per call (``max_batch_size: 0``, as in the native runtime). Each model checks its copied graph
against its own ``files.json`` when Triton loads it, as the image + prompts model checks all of them.

``GraphModel`` is that logic without Triton (tests run it on the repository's graphs); ``TritonPythonModel``
wraps it for the Python backend stub.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ArtifactError, HQSamEdgeError, UsageError
from ..export import contract as C
from . import triton_model as S

GRAPHS = ("encoder", "decoder")
MODEL_FILE = "model.onnx"  # the graph, or a folder of that name holding it and its external data


@dataclass(frozen=True)
class GraphParameters:
    """What a graph model must know, written as ``config.pbtxt`` parameters by ``hqsam_edge.serve.triton``.

    ``threads``: ONNX Runtime's intra-op threads per instance (0: ONNX Runtime's default, every core).
    """

    graph: str
    is_hq: bool
    threads: int = 0

    def to_strings(self) -> dict[str, str]:
        return {"graph": self.graph, "is_hq": str(self.is_hq).lower(), "threads": str(self.threads)}

    @classmethod
    def from_model_config(cls, config: Mapping[str, Any]) -> GraphParameters:
        params = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
        if params.get("graph") not in GRAPHS or "is_hq" not in params:
            raise ArtifactError("the graph model's config.pbtxt lacks its 'graph' / 'is_hq' parameters; "
                                "write the repository again with `hqsam-edge triton`")
        return cls(params["graph"], params["is_hq"] == "true", int(params.get("threads", "0")))

    @property
    def inputs(self) -> tuple[C.TensorSpec, ...]:
        return C.encoder_inputs() if self.graph == "encoder" else C.decoder_inputs(self.is_hq)

    @property
    def outputs(self) -> tuple[C.TensorSpec, ...]:
        return C.encoder_outputs(self.is_hq) if self.graph == "encoder" else C.decoder_outputs(self.is_hq)


def graph_file(version_dir: str | Path) -> Path:
    """``1/model.onnx``, or ``1/model.onnx/model.onnx`` for a graph with external data."""
    path = Path(version_dir) / MODEL_FILE
    return path / MODEL_FILE if path.is_dir() else path


class GraphModel:
    """One graph under ONNX Runtime, fed requests by contract names; ``run`` answers each request alone."""

    def __init__(self, path: str | Path, params: GraphParameters, providers: Sequence[Any] = ("CPUExecutionProvider",)):
        import onnxruntime as ort

        options = ort.SessionOptions()
        # The dynamic batcher feeds batches of every size: ONNX Runtime's memory patterns, planned and kept per
        # input shape, grew a loaded server's memory minute after minute (benchmarks/RESULTS.md, Triton under
        # load); without them it levels off, at the same speed. The CPU arena stays (without it: 0.6x the speed).
        options.enable_mem_pattern = False
        if params.threads:
            options.intra_op_num_threads = params.threads
        self.params = params
        self.session = ort.InferenceSession(str(path), options, providers=list(providers))
        have = [i.name for i in self.session.get_inputs()]
        want = [s.name for s in params.inputs]
        if sorted(have) != sorted(want):
            raise ArtifactError(f"{path} takes {', '.join(have)}, not the {params.graph}'s {', '.join(want)}: "
                                "write the repository again with `hqsam-edge triton`")

    def _check(self, feeds: Mapping[str, np.ndarray | None]) -> dict[str, np.ndarray]:
        checked = {}
        for spec in self.params.inputs:
            value = feeds.get(spec.name)
            if value is None:
                raise UsageError(f"the {self.params.graph} needs {spec.name}")
            fixed = [(i, d) for i, d in enumerate(spec.shape) if isinstance(d, int)]
            if value.ndim != len(spec.shape) or any(value.shape[i] != d for i, d in fixed):
                raise UsageError(f"{spec.name} must be {list(spec.shape)}; got {list(value.shape)}")
            checked[spec.name] = np.ascontiguousarray(value, dtype=spec.dtype)
        return checked

    def run(self, requests: Sequence[Mapping[str, np.ndarray | None]]) -> list[dict[str, np.ndarray] | Exception]:
        """Each request's outputs by name, or the exception that refused it. Encoder requests run as one
        batch (their images concatenated); decoder requests one by one."""
        answers: list[dict[str, np.ndarray] | Exception] = []
        good: list[tuple[int, dict[str, np.ndarray]]] = []
        for i, feeds in enumerate(requests):
            try:
                good.append((i, self._check(feeds)))
            except HQSamEdgeError as exc:
                answers.append(exc)
                continue
            answers.append({})
        names = [s.name for s in self.params.outputs]
        if self.params.graph == "encoder" and len(good) > 1:
            image = C.IMAGE.name
            batch = np.concatenate([feeds[image] for _, feeds in good])
            try:
                outputs = dict(zip(names, self.session.run(names, {image: batch})))
            except Exception as exc:  # noqa: BLE001 - ONNX Runtime's own refusal, for these requests
                return [exc if isinstance(a, dict) else a for a in answers]
            start = 0
            for i, feeds in good:
                stop = start + len(feeds[image])
                answers[i] = {name: outputs[name][start:stop] for name in names}
                start = stop
            return answers
        for i, feeds in good:
            try:
                answers[i] = dict(zip(names, self.session.run(names, feeds)))
            except Exception as exc:  # noqa: BLE001 - ONNX Runtime's own refusal, for this request only
                answers[i] = exc
        return answers


def providers_for(args: Mapping[str, str]) -> list[Any]:
    """ONNX Runtime providers for the instance Triton places: its GPU (``KIND_GPU``) or the CPU."""
    if args.get("model_instance_kind") == "GPU":
        device = int(args.get("model_instance_device_id", "0"))
        return [("CUDAExecutionProvider", {"device_id": device}), "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


class TritonPythonModel:
    """Triton's entry point for a graph model: check the copied graph, open it, answer requests."""

    def initialize(self, args: dict[str, str]) -> None:
        model_dir = Path(args["model_repository"])
        S.check_repository(model_dir)  # a failed check fails the model's load, with its reason
        params = GraphParameters.from_model_config(json.loads(args["model_config"]))
        self.model = GraphModel(graph_file(model_dir / args["model_version"]), params, providers_for(args))

    def execute(self, requests: list) -> list:
        pb_utils = S._pb_utils()
        feeds = []
        for request in requests:
            tensors = {}
            for spec in self.model.params.inputs:
                tensor = pb_utils.get_input_tensor_by_name(request, spec.name)
                tensors[spec.name] = None if tensor is None else S._to_numpy(tensor)
            feeds.append(tensors)
        responses = []
        for answer in self.model.run(feeds):
            if isinstance(answer, Exception):
                message = str(answer) if isinstance(answer, HQSamEdgeError) else f"{type(answer).__name__}: {answer}"
                responses.append(pb_utils.InferenceResponse(output_tensors=[], error=pb_utils.TritonError(message)))
            else:
                responses.append(pb_utils.InferenceResponse(
                    output_tensors=[pb_utils.Tensor(name, np.ascontiguousarray(v)) for name, v in answer.items()]))
        return responses
