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
  (exact layer names: 8.x matches no partial wildcard); or the FP16 graph
  built ``--stronglyTyped`` (10.x; always so on 11.x, which has no precision
  flags at all).
- ``--memPoolSize=workspace:N`` in plain MiB: the one spelling every version
  from 8.4 to 11 reads alike (10.0 applied an ``M`` suffix twice).
- DLA: ``--useDLACore`` with ``--allowGPUFallback`` on the encoder only (the
  decoder's shapes are dynamic, which DLA cannot run).
"""

from __future__ import annotations

import shlex
from pathlib import Path

from .recipe import EngineJob, EngineSpec, plan, trtexec_timing_cache


def trtexec_command(job: EngineJob, *, timing_cache: str | Path | None = None) -> list[str]:
    """One ``trtexec`` invocation as an argument list (``shlex.join`` it to print)."""
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
    if job.pin_fp32:
        spec = ",".join(f"{name}:fp32" for name in job.pin_fp32)
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
    return [join(trtexec_command(job, timing_cache=cache)) for job in plan(folder, spec, generation)]


def join(cmd: list[str]) -> str:
    return shlex.join(cmd)
