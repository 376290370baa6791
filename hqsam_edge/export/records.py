"""The typed parts of a manifest's artifact: how it was made, its engines' bounds and recipes, its calibration.

Frozen records, written into ``manifest.json`` as nested objects (format 3)
and read back with ``from_dict``; ``from_extra`` reads the free-form
``extra`` dictionary of format 1 / 2 manifests into them.

    "provenance":  {"created": "2025-...", "platform": {...}}             every artifact a build makes
    "engine":      {"compute_capability": "8.7", "limits": {...},        TensorRT engine artifacts
                    "dla_core": null, "version_compatible": false,
                    "timing_cache": "timing...cache", "recipes": {"encoder": {...}, "decoder": {...}}}
    "calibration": {"method": "max", "images": "synthetic", ...,         INT8 graph artifacts
                    "layer_search": {...} or null}
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

from ..inputs import DYNAMIC_RANGES
from .profiles import Limits

# a layer the INT8 layer search kept in float: (node, SQNR dB with it alone in int8, its fp32 ms or None)
KeptLayer = tuple[str, float, "float | None"]


def _known(cls: type, data: dict[str, Any]) -> dict[str, Any]:
    """``data`` less the keys ``cls`` has no field for (a newer writer's additions)."""
    names = {f.name for f in fields(cls)}
    return {k: v for k, v in data.items() if k in names}


@dataclass(frozen=True)
class Provenance:
    """When and where an artifact was made: ``created`` (UTC, ISO 8601) and ``platform``
    (``hardware.Platform.to_dict``)."""

    created: str
    platform: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Provenance:
        return cls(**_known(cls, data))


@dataclass(frozen=True)
class EngineRecipe:
    """How one engine was built (``engines.recipe.EngineJob``, as recorded): its source graph, whether it was
    strongly typed, the precision flags, TF32, how many layers were pinned to FP32 and which (the TensorRT layer
    names the build pinned, as the trtexec line prints them), its DLA core."""

    source: str
    strongly_typed: bool = False
    fp16: bool = False
    int8: bool = False
    tf32: bool = True
    fp32_layers: int = 0
    dla_core: int | None = None
    pinned_layers: tuple[str, ...] = ()

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EngineRecipe:
        data = _known(cls, data)
        return cls(**{**data, "pinned_layers": tuple(data.get("pinned_layers", ()))})


@dataclass(frozen=True)
class EngineRecord:
    """What a TensorRT engine pair needs to be loaded and used: the GPU kind it was built for, its profile
    bounds, its DLA core, whether its plans are version compatible, its timing cache and per-graph recipes."""

    limits: Limits
    compute_capability: str = ""
    dla_core: int | None = None
    version_compatible: bool = False
    timing_cache: str = ""
    recipes: dict[str, EngineRecipe] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EngineRecord:
        data = _known(cls, data)
        return cls(**{**data, "limits": Limits(**data["limits"]),
                      "recipes": {str(g): EngineRecipe.from_dict(r) for g, r in data.get("recipes", {}).items()}})


@dataclass(frozen=True)
class LayerSearch:
    """The INT8 layer search's choice (``calib.sensitivity``): the check it first missed, the SQNR goal it met,
    the order it ranked layers in, the fp32 time of the layers quantized and of all candidates, and the layers
    it kept in float."""

    first_miss: str
    goal_sqnr_db: float
    search_sqnr_db: float
    order: str
    quantized_fp32_ms: float
    candidate_fp32_ms: float
    kept_float: tuple[KeptLayer, ...] = ()

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LayerSearch:
        data = _known(cls, data)
        kept = tuple((str(n), float(s), None if ms is None else float(ms)) for n, s, ms in data.get("kept_float", ()))
        return cls(**{**data, "kept_float": kept})


@dataclass(frozen=True)
class Calibration:
    """How an INT8 graph was calibrated: the range method (``dynamic``: none, activations ranged per call), the
    images (a folder, ``synthetic``, or ``none``) and their count, the layers quantized of the candidates, the
    layers excluded by name, the layer search (if any), and the weights' bits (7 where ONNX Runtime's uint8 x
    int8 GEMMs could saturate; None in records older than the field)."""

    method: str
    images: str
    count: int
    quantized_layers: int
    candidate_layers: int
    excluded: tuple[str, ...] = ()
    layer_search: LayerSearch | None = None
    weight_bits: int | None = None

    @property
    def ranged_per_call(self) -> bool:
        """Activations quantized per call (no calibration): ONNX Runtime's CPU kernels only."""
        return self.method == DYNAMIC_RANGES

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Calibration:
        data = _known(cls, data)
        search = data.get("layer_search")
        return cls(**{**data, "excluded": tuple(data.get("excluded", ())),
                      "layer_search": None if search is None else LayerSearch.from_dict(search)})


ENGINE_KEYS = ("compute_capability", "dla_core", "version_compatible", "timing_cache", "recipes")
LIMIT_KEYS = ("max_prompts", "max_points", "max_batch")


def from_extra(extra: dict[str, Any]) -> dict[str, Any]:
    """The format-3 fields (``provenance``, ``engine``, ``calibration``, as written in JSON) of a format 1 / 2
    artifact's ``extra`` (the keys named here are read, others dropped). An engine record is made where
    ``extra`` names any profile bound (``Limits``' defaults stand for the bounds it leaves out)."""
    provenance = Provenance.from_dict(extra) if "created" in extra else None
    engine = None
    if any(k in extra for k in LIMIT_KEYS):
        # engines of formats 1 / 2 were tuned for one prompt and one image
        limits = Limits(**{k: int(extra[k]) for k in LIMIT_KEYS if k in extra}, opt_prompts=1, opt_batch=1)
        engine = EngineRecord.from_dict({**{k: extra[k] for k in ENGINE_KEYS if k in extra},
                                         "limits": asdict(limits)})
    calibration = extra.get("calibration")
    records = {"provenance": provenance, "engine": engine,
               "calibration": None if calibration is None else Calibration.from_dict(calibration)}
    return {name: None if record is None else asdict(record) for name, record in records.items()}
