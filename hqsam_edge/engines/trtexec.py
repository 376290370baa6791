"""The equivalent ``trtexec`` command lines, for users who build on the device by hand.

TensorRT generations differ: 8.5/8.6 (JetPack 5, 6.0) and 10.x (JetPack 6.1+,
7) take precision flags (``--fp16``, ``--int8``) on the fp32 graph or the Q/DQ
graph; 11.x has no precision flags and builds the precision graph strongly
typed.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import UsageError
from ..export.profiles import Profile

GENERATIONS = ("8", "10", "11")


def _shapes(profile: Profile, which: int) -> str:
    return ",".join(f"{name}:{'x'.join(map(str, dims[which]))}" for name, dims in profile.shapes.items())


def trtexec_command(onnx: str | Path, engine: str | Path, profile: Profile, *, precision: str, generation: str,
                    workspace_gb: float = 4.0, timing_cache: str | Path | None = None, dla_core: int | None = None,
                    version_compatible: bool = False) -> list[str]:
    """One ``trtexec`` invocation as an argument list (join with spaces to print)."""
    if generation not in GENERATIONS:
        raise UsageError(f"unknown TensorRT generation {generation!r}; choose one of: {', '.join(GENERATIONS)}")
    cmd = ["trtexec", f"--onnx={onnx}", f"--saveEngine={engine}"]
    cmd += [f"--minShapes={_shapes(profile, 0)}", f"--optShapes={_shapes(profile, 1)}",
            f"--maxShapes={_shapes(profile, 2)}"]
    cmd.append(f"--memPoolSize=workspace:{int(workspace_gb * 1024)}M")
    if generation in ("8", "10"):
        if precision == "fp16":
            cmd.append("--fp16")
        elif precision == "int8":
            cmd += ["--int8", "--fp16"]  # Q/DQ graph: int8 where quantized, fp16 elsewhere
    elif generation == "11":
        pass  # strongly typed: the precision is in the graph
    if timing_cache is not None:
        cmd.append(f"--timingCacheFile={timing_cache}")
    if dla_core is not None:
        cmd += [f"--useDLACore={dla_core}", "--allowGPUFallback"]
    if version_compatible:
        cmd.append("--versionCompatible")
    return cmd
