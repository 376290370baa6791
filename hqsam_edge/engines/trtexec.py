"""The equivalent ``trtexec`` command lines, for users who build on the device by hand.

Each line is an ``EngineJob`` of ``recipe.plan``, the jobs the real build
makes, spelled as trtexec's options (``samples/common/sampleOptions.cpp``);
every choice (source graph, flags, pins, DLA) is the job's:

- TF32 is on by default in TensorRT (trtexec clears it only with ``--noTF32``):
  fp32 engines say ``--noTF32``, so their matmuls and convolutions are fp32.
- Reduced precision on TensorRT 8.6 and 10.x: ``--fp16`` (and ``--int8``
  for the Q/DQ encoder only: on a graph without Q/DQ nodes trtexec would set
  dummy ranges) with the norms, softmax and reductions kept in FP32 by
  ``--precisionConstraints=obey --layerPrecisions=... --layerOutputTypes=...``
  (exact layer names: 8.x matches no partial wildcard). The names are the
  layers the build pins (``recipe.layers_to_pin`` of the parsed network: a
  node's layers ``<node>`` and ``<node>_<N>``), read where TensorRT of that
  generation is installed; elsewhere the nodes' own names, with a note
  that the line misses their further layers. Or the FP16 graph
  built ``--stronglyTyped`` (10.x; always so on 11.x, which has no precision
  flags at all).
- ``--memPoolSize=workspace:N`` in plain MiB: the one spelling every version
  from 8.4 to 11 reads alike (10.0 applied an ``M`` suffix twice).
- DLA: ``--useDLACore`` with ``--allowGPUFallback`` on the encoder only (the
  decoder's shapes are dynamic, which DLA cannot run).
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from pathlib import Path

from .. import progress
from .recipe import EngineJob, EngineSpec, generation_of, plan, trtexec_timing_cache

NODE_NAMES_NOTE = ("note: TensorRT {generation} is not usable here: the --layerPrecisions lines name the ONNX nodes, "
                   "not the further layers TensorRT's parser makes of them (<node>_<N>); print them where TensorRT "
                   "{generation} is installed for the layers the build pins")


def trtexec_command(job: EngineJob, *, timing_cache: str | Path | None = None,
                    fp32_layers: Sequence[str] | None = None) -> list[str]:
    """One ``trtexec`` invocation as an argument list (``shlex.join`` it to print); ``fp32_layers``: the layers
    the build pins (``tensorrt_build.pinned_layers``), else ``job.pin_fp32``'s node names."""
    cmd = ["trtexec", f"--onnx={job.onnx}", f"--saveEngine={job.engine}"]
    cmd += [f"--minShapes={job.profile.spec(0)}", f"--optShapes={job.profile.spec(1)}",
            f"--maxShapes={job.profile.spec(2)}"]
    cmd.append(f"--memPoolSize=workspace:{int(job.workspace_gb * 1024)}")
    if job.strongly_typed_flag:
        cmd.append("--stronglyTyped")  # the default (and the only mode) on 11
    if job.int8:
        cmd.append("--int8")
    if job.fp16:
        cmd.append("--fp16")
    pins = job.pin_fp32 if fp32_layers is None else fp32_layers
    if job.pin_fp32 and pins:
        spec = ",".join(f"{name}:fp32" for name in pins)
        constraints = "prefer" if job.prefer_constraints else "obey"
        cmd += [f"--precisionConstraints={constraints}", f"--layerPrecisions={spec}", f"--layerOutputTypes={spec}"]
    if not job.tf32:
        cmd.append("--noTF32")
    if timing_cache is not None:
        cmd.append(f"--timingCacheFile={timing_cache}")
    if job.dla_core is not None:
        cmd += [f"--useDLACore={job.dla_core}", "--allowGPUFallback"]
    if job.version_compatible:
        cmd.append("--versionCompatible")
    return cmd


def trtexec_lines(spec: EngineSpec, generation: str) -> list[str]:
    """The trtexec command lines equivalent to ``build``, one per graph, for TensorRT ``generation``."""
    from ..export.manifest import read_manifest

    folder = Path(spec.folder)
    read_manifest(folder)  # a folder of ours
    cache = folder / trtexec_timing_cache(generation)
    jobs = plan(folder, spec, generation)
    parsed = _parsed_pins(jobs, generation)
    return [join(trtexec_command(job, timing_cache=cache, fp32_layers=parsed.get(job.graph))) for job in jobs]


def _parsed_pins(jobs: list[EngineJob], generation: str) -> dict[str, tuple[str, ...]]:
    """The layers each pinning job's build pins, parsed by the TensorRT here when it is of ``generation``; {} (and
    a note) when it is not."""
    pinning = [job for job in jobs if job.pin_fp32]
    if not pinning:
        return {}
    from ..runtime.environment import tensorrt_status

    if tensorrt_status().usable:
        from .tensorrt_build import pinned_layers, tensorrt_version

        if generation_of(tensorrt_version()) == generation:
            return {job.graph: pinned_layers(job) for job in pinning}
    progress.note(NODE_NAMES_NOTE.format(generation=generation))
    return {}


def join(cmd: list[str]) -> str:
    return shlex.join(cmd)
