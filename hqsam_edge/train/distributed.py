"""The training job's processes: torchrun's environment, devices, the process group, and collectives.

One process by default; under ``torchrun`` every process reads its rank from
``RANK`` / ``WORLD_SIZE`` / ``LOCAL_RANK``, joins the group (NCCL on CUDA,
gloo on the CPU) and averages its figures with the others.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
from torch import nn

from ..errors import UsageError


@dataclass(frozen=True)
class DistContext:
    """This process in the job: from torchrun's ``RANK`` / ``WORLD_SIZE`` / ``LOCAL_RANK``."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def dist_context() -> DistContext:
    env = os.environ
    try:
        return DistContext(int(env.get("RANK", 0)), int(env.get("WORLD_SIZE", 1)), int(env.get("LOCAL_RANK", 0)))
    except ValueError:
        raise UsageError("RANK / WORLD_SIZE / LOCAL_RANK must be integers (set by torchrun)") from None


def select_device(ctx: DistContext, device: str | None) -> torch.device:
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    dev = torch.device(device)
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise UsageError("--device cuda was asked for, but no CUDA device is present")
        if dev.index is None:
            dev = torch.device("cuda", ctx.local_rank % torch.cuda.device_count())
        torch.cuda.set_device(dev)
    return dev


def init_distributed(ctx: DistContext, device: torch.device) -> None:
    """Join the torchrun job: NCCL on CUDA, gloo on the CPU (no-op for one process)."""
    import torch.distributed as dist

    if ctx.distributed and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")


def barrier(ctx: DistContext) -> None:
    if ctx.distributed:
        import torch.distributed as dist

        dist.barrier()


def average(values: list[float], ctx: DistContext) -> list[float]:
    if not ctx.distributed:
        return values
    import torch.distributed as dist

    t = torch.tensor(values, dtype=torch.float64)
    if dist.get_backend() == "nccl":
        t = t.cuda()
    dist.all_reduce(t)
    return (t / ctx.world_size).cpu().tolist()


def check_replicas_in_sync(model: nn.Module, ctx: DistContext) -> None:
    """Every process must hold the same HQ weights after training (DDP averages the gradients)."""
    if not ctx.distributed:
        return
    import torch.distributed as dist

    from ..model.build import learnable_hq_parameters

    local = torch.stack([p.detach().double().sum() for p in learnable_hq_parameters(model)] or [torch.zeros(())])
    gathered = [torch.zeros_like(local) for _ in range(ctx.world_size)]
    if dist.get_backend() == "nccl":
        local, gathered = local.cuda(), [g.cuda() for g in gathered]
    dist.all_gather(gathered, local)
    spread = max(float((g - gathered[0]).abs().max()) for g in gathered)
    if spread > 1e-6 * (1 + float(gathered[0].abs().max())):
        raise RuntimeError(f"the {ctx.world_size} processes hold different HQ weights (spread {spread:.3g})")
