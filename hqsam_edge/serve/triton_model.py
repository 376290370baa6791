"""The Python-backend model of a Triton repository: an image (or its encoding) plus prompts -> masks.

Inputs (every one optional, as in the model's ``config.pbtxt``), per request:

- ``image``: UINT8 ``[H,W,3]`` RGB, the original picture; or instead
- ``image_embeddings`` FP32 ``[1,256,64,64]``, ``hq_features`` FP32
  ``[1,32,256,256]`` (HQ models) and ``original_size`` INT32 ``[2]`` (H, W): an
  image encoded by an earlier request, so that a client encodes once and sends
  prompts many times;
- prompts in pixels (x, y) of the original image, K of them: ``boxes`` FP32
  ``[K,4]`` (x0, y0, x1, y1), ``point_coords`` FP32 ``[K,N,2]`` with
  ``point_labels`` INT32 ``[K,N]`` (1 foreground, 0 background), and
  ``mask_input`` FP32 ``[K,1,256,256]`` low-res logits of an earlier answer.

Outputs: ``masks`` BOOL ``[K,M,H,W]`` at the original size, ``scores`` FP32
``[K,M]``, ``low_res_masks`` FP32 ``[K,M,256,256]`` (logits in the padded
1024 frame, SAM's ``mask_input`` format); and ``image_embeddings`` /
``hq_features`` of the image sent. M is 1 for HQ-SAM and 1 or 3 for plain SAM,
as the artifact was exported. A request without prompts is an encode request
and returns the features by default; otherwise the masks are the default.

Pre- and post-processing are ``hqsam_edge``'s own (``Predictor`` and
``hqsam_edge.data.transforms``: PIL's bilinear resize, torch's mask
upscaling), so a served mask equals the mask ``Predictor`` gives for the same
graphs. That needs ``pip install hqsam-edge`` in the Python that runs Triton's
Python backend stub; a numpy re-implementation would have to re-derive PIL's
antialiased resize and could drift from the library by a pixel.

``Segmenter`` is that logic over two plain callables (``encoder(feeds) ->
dict``, ``decoder(feeds) -> dict``, by contract names); ``TritonPythonModel``
only builds those callables from BLS requests to the repository's encoder and
decoder models. Tests run ``Segmenter`` with ONNX Runtime sessions.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Collection, Mapping
from dataclasses import MISSING, asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np

from ..data import transforms as T
from ..errors import ArtifactError, HQSamEdgeError, UsageError
from ..export import contract as C
from ..runtime.base import Backend, ModelInfo
from ..runtime.predictor import Predictor

Feeds = Mapping[str, np.ndarray]
GraphCall = Callable[[dict[str, np.ndarray]], Mapping[str, Any]]

# The served model's tensors ("K" prompts, "N" points, "M" masks per prompt; "H", "W" the original image), the
# contract's (``hqsam_edge.export.contract``: the processing and decoder graphs') under the served names and axes.
IMAGE_RGB = C.IMAGE_RGB.renamed("image")
ORIGINAL_SIZE = C.ORIGINAL_SIZE
BOXES = C.TensorSpec("boxes", np.float32, ("K", 4))  # the served model's own: x0, y0, x1, y1 in pixels
POINT_COORDS = C.POINT_COORDS.renamed(P="K")  # in pixels of the original image, not the resized frame
POINT_LABELS = C.TensorSpec(C.POINT_LABELS.name, np.int32, POINT_COORDS.shape[:2])  # labels as clients send them
MASK_INPUT = C.MASK_INPUT.renamed(P="K")
MASKS = C.MASKS.renamed(P="K")
SCORES = C.SCORES.renamed(P="K")
LOW_RES_MASKS = C.LOW_RES_MASKS.renamed(P="K", T="M")  # the chosen masks' logits

FILES_JSON = "files.json"  # in the Python model's folder: size and sha256 of the encoder's and decoder's files

PROMPT_INPUTS = (BOXES, POINT_COORDS, POINT_LABELS, MASK_INPUT)
MASK_OUTPUTS = (MASKS, SCORES, LOW_RES_MASKS)


def feature_specs(is_hq: bool) -> tuple[C.TensorSpec, ...]:
    """The encoder outputs of one image, as the decoder takes them (batch 1)."""
    return (C.DECODER_IMAGE_EMBEDDINGS, C.DECODER_HQ_FEATURES) if is_hq else (C.DECODER_IMAGE_EMBEDDINGS,)


def serve_inputs(is_hq: bool) -> tuple[C.TensorSpec, ...]:
    return (IMAGE_RGB, *feature_specs(is_hq), ORIGINAL_SIZE, *PROMPT_INPUTS)


def serve_outputs(is_hq: bool) -> tuple[C.TensorSpec, ...]:
    return (*MASK_OUTPUTS, *feature_specs(is_hq))


@dataclass(frozen=True)
class ServeParameters:
    """What the Python model must know, written by ``hqsam_edge.serve.triton`` as ``config.pbtxt`` parameters.

    ``max_prompts``: prompts per decoder call (more are split into several
    calls); ``max_points``: points per prompt the decoder takes, 0 for no bound
    (TensorRT engines have one, from their profile). ``max_request_prompts`` and
    ``max_image_pixels`` bound a request (0: no bound), and so its answer;
    ``shm_bytes``: the /dev/shm the repository's Python models need at those
    bounds (``serve.shm``), checked when the model loads (0: not checked).
    """

    backbone: str
    variant: str
    image_size: int
    multimask_output: bool
    hq_token_only: bool
    encoder_model: str
    decoder_model: str
    max_prompts: int
    max_points: int = 0
    max_request_prompts: int = 0
    max_image_pixels: int = 0
    shm_bytes: int = 0

    @property
    def info(self) -> ModelInfo:
        return ModelInfo(self.backbone, self.variant, self.image_size, self.multimask_output, self.hq_token_only)

    def to_strings(self) -> dict[str, str]:
        return {k: (str(v).lower() if isinstance(v, bool) else str(v)) for k, v in asdict(self).items()}

    @classmethod
    def from_strings(cls, params: Mapping[str, str]) -> ServeParameters:
        parse: dict[str, Callable[[str], Any]] = {"bool": lambda t: t == "true", "int": int, "str": str}
        values: dict[str, Any] = {}
        for f in fields(cls):
            if f.name in params:
                values[f.name] = parse[str(f.type)](params[f.name])
            elif f.default is MISSING:
                raise ArtifactError(f"the model's config.pbtxt has no parameter {f.name!r}; "
                                    "write the repository again with `hqsam-edge triton`")
        return cls(**values)

    @classmethod
    def from_model_config(cls, config: Mapping[str, Any]) -> ServeParameters:
        """From the model configuration Triton hands ``initialize`` (``json.loads(args["model_config"])``)."""
        params = config.get("parameters", {})
        return cls.from_strings({k: v["string_value"] for k, v in params.items()})


class CallableBackend(Backend):
    """The runtime ``Backend`` over two callables that run the encoder and decoder graphs.

    ``encoder({"image": [1,3,S,S]})`` and ``decoder({features..., prompts...})``
    return dicts by contract name. P prompts go to the decoder in calls of at
    most ``max_prompts`` (the TensorRT engines' profile bound); N points per
    prompt are checked against ``max_points`` (0: no bound).
    """

    name = "triton"

    def __init__(self, info: ModelInfo, encoder: GraphCall, decoder: GraphCall, *, max_prompts: int,
                 max_points: int = 0) -> None:
        super().__init__(info)
        if max_prompts < 1:
            raise UsageError(f"max_prompts must be at least 1, not {max_prompts}")
        self.encoder, self.decoder = encoder, decoder
        self.max_prompts, self.max_points = max_prompts, max_points or None

    def _activate(self) -> None:
        return None

    def encode(self, image: np.ndarray) -> dict[str, np.ndarray]:
        out = self.encoder({C.IMAGE.name: image})
        return {s.name: np.asarray(out[s.name], dtype=np.float32) for s in C.encoder_outputs(self.info.is_hq)}

    def _decode(self, features: dict[str, np.ndarray], prompts: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        out = self.decoder({**features, **prompts})
        return {spec.name: np.asarray(out[spec.name], dtype=np.float32) for spec in C.decoder_outputs()}

    def features_to_numpy(self, features: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return dict(features)


class _FeaturePredictor(Predictor):
    """``Predictor`` that also takes an image's features from an earlier request."""

    def set_features(self, features: Mapping[str, np.ndarray], original_size: np.ndarray) -> None:
        """Features by decoder name (``[1,256,64,64]``, ``[1,32,256,256]``) of an ``H x W`` image."""
        size = np.asarray(original_size).reshape(-1)
        if size.shape != (2,) or not np.all(size >= 1):
            raise UsageError(f"{ORIGINAL_SIZE.name} must be the image's [H, W] in pixels; got {size.tolist()}")
        values = {}
        for spec in feature_specs(self.info.is_hq):
            if spec.name not in features:
                raise UsageError(f"{spec.name} is missing: send the encoder outputs of the image, or the image")
            value = np.ascontiguousarray(features[spec.name], dtype=np.float32)
            if value.shape != spec.shape:
                raise UsageError(f"{spec.name} must be {list(spec.shape)}; got {list(value.shape)}")
            values[spec.name] = value
        h, w = int(size[0]), int(size[1])
        self.reset_image()
        self._set_encoded(values, (h, w), T.preprocess_shape(h, w, self.info.image_size))


class Segmenter:
    """The served model's logic: one request's inputs (by the names above) -> its outputs.

    ``encoder`` / ``decoder``: callables from a feed dict to an output dict, by
    contract names (``hqsam_edge.export.contract``); any runtime fits (ONNX
    Runtime sessions in tests, BLS requests in Triton).
    """

    def __init__(self, params: ServeParameters, encoder: GraphCall, decoder: GraphCall) -> None:
        self.params = params
        backend = CallableBackend(params.info, encoder, decoder, max_prompts=params.max_prompts,
                                  max_points=params.max_points)
        self.predictor = _FeaturePredictor(backend)
        self.is_hq = params.info.is_hq

    def __call__(self, inputs: Mapping[str, np.ndarray | None],
                 requested: Collection[str] | None = None) -> dict[str, np.ndarray]:
        """``inputs``: the request's tensors (absent ones missing or None); ``requested``: output names
        (None: masks for a request with prompts, the image features for one without)."""
        given = {k: v for k, v in inputs.items() if v is not None}
        features = [s.name for s in feature_specs(self.is_hq)]
        sent_features = [name for name in features if name in given]
        if IMAGE_RGB.name in given and sent_features:
            raise UsageError(f"send either {IMAGE_RGB.name} or {', '.join(features)}, not both")
        self._check_bounds(given)
        if IMAGE_RGB.name in given:
            self.predictor.set_image(np.asarray(given[IMAGE_RGB.name]))
        elif sent_features:
            if ORIGINAL_SIZE.name not in given:
                raise UsageError(f"{ORIGINAL_SIZE.name} ([H, W] of the image) must come with {', '.join(features)}")
            self.predictor.set_features(given, given[ORIGINAL_SIZE.name])
        else:
            raise UsageError(f"send an {IMAGE_RGB.name} (UINT8 HxWx3 RGB) or an encoded image "
                             f"({', '.join(features)}, {ORIGINAL_SIZE.name})")
        has_prompts = any(s.name in given for s in PROMPT_INPUTS)
        wanted = list(requested) if requested else [s.name for s in (MASK_OUTPUTS if has_prompts else
                                                                        feature_specs(self.is_hq))]
        known = {s.name for s in serve_outputs(self.is_hq)}
        unknown = [name for name in wanted if name not in known]
        if unknown:
            raise UsageError(f"unknown output(s) {', '.join(unknown)}; this model has {', '.join(sorted(known))}")
        out: dict[str, np.ndarray] = {}
        if any(s.name in wanted for s in MASK_OUTPUTS):
            if not has_prompts:
                raise UsageError(f"masks need prompts: send {BOXES.name}, {POINT_COORDS.name} + {POINT_LABELS.name} "
                                 f"or {MASK_INPUT.name}")
            masks, scores, low_res = self.predictor.predict_batch(
                given.get(POINT_COORDS.name), given.get(POINT_LABELS.name), given.get(BOXES.name),
                given.get(MASK_INPUT.name))
            out.update({MASKS.name: masks, SCORES.name: scores, LOW_RES_MASKS.name: low_res})
        out.update(self.predictor.get_image_features())
        return {name: np.ascontiguousarray(out[name]) for name in wanted}


    def _check_bounds(self, given: Mapping[str, np.ndarray]) -> None:
        """The repository's bounds on one request (its answer's size, and so its shared memory)."""
        limit, fix = self.params.max_request_prompts, "write the repository again with a larger bound"
        counts = [len(np.asarray(given[s.name])) for s in PROMPT_INPUTS if s.name in given and np.ndim(given[s.name])]
        if limit and counts and max(counts) > limit:
            raise UsageError(f"{max(counts)} prompts in one request; this model takes at most {limit} "
                             f"(--max-request-prompts): send them in several requests, or {fix}")
        if IMAGE_RGB.name in given:
            shape = np.shape(given[IMAGE_RGB.name])
        else:
            shape = tuple(np.asarray(given.get(ORIGINAL_SIZE.name, [0, 0])).reshape(-1)[:2])
        pixels, limit = int(np.prod(shape[:2])) if len(shape) >= 2 else 0, self.params.max_image_pixels
        if limit and pixels > limit:
            raise UsageError(f"the image has {pixels} pixels ({shape[0]}x{shape[1]}); this model takes at most "
                             f"{limit} (--max-image-pixels): send a smaller image, or {fix}")


# -- Triton ----------------------------------------------------------------------------------------

def check_repository(model_dir: str | Path) -> None:
    """``ArtifactError`` (one line) unless every graph or engine file that ``hqsam-edge triton`` copied into the
    repository is still the one copied: its size and sha256 in ``<model_dir>/files.json``, paths relative to
    the repository (``model_dir``'s parent)."""
    from ..export import integrity

    model_dir = Path(model_dir)
    path, repo = model_dir / FILES_JSON, model_dir.parent
    fix = "write the repository again with `hqsam-edge triton`"
    try:
        records = dict(json.loads(path.read_text())["files"])
    except (OSError, ValueError, KeyError, TypeError):
        raise ArtifactError(f"{path} is missing or damaged: {fix}") from None
    for result in integrity.check(repo, records, records, stamp=model_dir / integrity.STAMP):
        if not result.ok:
            raise ArtifactError(result.problem(repo, str(path), fix))



def _pb_utils():
    """Triton's ``triton_python_backend_utils``: present only inside the Python backend stub."""
    import triton_python_backend_utils as pb_utils  # type: ignore[import-not-found]

    return pb_utils


def _to_numpy(tensor) -> np.ndarray:
    """A ``pb_utils.Tensor`` on the host -> numpy (GPU tensors through DLPack, which creates a torch CUDA
    context in this instance: the BLS calls below ask for host outputs so that it does not happen)."""
    if tensor.is_cpu():
        return tensor.as_numpy()
    from torch.utils.dlpack import from_dlpack

    return from_dlpack(tensor.to_dlpack()).cpu().numpy()


def bls_request_options(pb_utils) -> dict[str, Any]:
    """Outputs of BLS requests in host memory (``preferred_memory``, Triton 23.04 and later; older servers
    return them where the model left them)."""
    if hasattr(pb_utils, "PreferredMemory"):
        return {"preferred_memory": pb_utils.PreferredMemory(pb_utils.TRITONSERVER_MEMORY_CPU, 0)}
    return {}


def bls_call(model_name: str, output_names: tuple[str, ...]) -> GraphCall:
    """A graph callable that sends one BLS request to ``model_name`` in the same Triton server."""
    pb_utils = _pb_utils()
    options = bls_request_options(pb_utils)

    def call(feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        request = pb_utils.InferenceRequest(
            model_name=model_name, requested_output_names=list(output_names),
            inputs=[pb_utils.Tensor(name, np.ascontiguousarray(value)) for name, value in feeds.items()], **options)
        response = request.exec()
        if response.has_error():
            raise RuntimeError(f"model {model_name}: {response.error().message()}")
        return {name: _to_numpy(pb_utils.get_output_tensor_by_name(response, name)) for name in output_names}

    return call


class TritonPythonModel:
    """Triton's entry point: builds a ``Segmenter`` over BLS calls to the encoder and decoder models."""

    def initialize(self, args: dict[str, str]) -> None:
        from .shm import check_shm

        check_repository(args["model_repository"])  # a failed check fails the model's load, with its reason
        params = ServeParameters.from_model_config(json.loads(args["model_config"]))
        check_shm(params.shm_bytes)
        is_hq = params.info.is_hq
        encoder = bls_call(params.encoder_model, tuple(s.name for s in C.encoder_outputs(is_hq)))
        decoder = bls_call(params.decoder_model, tuple(s.name for s in C.decoder_outputs()))
        self.segmenter = Segmenter(params, encoder, decoder)
        self.inputs = serve_inputs(is_hq)
        self.all_outputs = {s.name for s in serve_outputs(is_hq)}

    def execute(self, requests: list) -> list:
        pb_utils = _pb_utils()
        responses = []
        for request in requests:
            try:
                inputs = {}
                for spec in self.inputs:
                    tensor = pb_utils.get_input_tensor_by_name(request, spec.name)
                    inputs[spec.name] = None if tensor is None else _to_numpy(tensor)
                # Triton lists every output when the client names none (older stubs lack the method).
                requested = set(getattr(request, "requested_output_names", list)())
                out = self.segmenter(inputs, None if requested in (set(), self.all_outputs) else requested)
                responses.append(pb_utils.InferenceResponse(
                    output_tensors=[pb_utils.Tensor(name, value) for name, value in out.items()]))
            except Exception as exc:  # noqa: BLE001 - one failed request must not fail the others
                message = str(exc) if isinstance(exc, HQSamEdgeError) else f"{type(exc).__name__}: {exc}"
                responses.append(pb_utils.InferenceResponse(output_tensors=[], error=pb_utils.TritonError(message)))
        return responses
