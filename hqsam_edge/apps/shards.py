"""Shards of an item set for cluster schedulers: ``Shard(index, count)``, which items it owns, and where it
comes from (``--shard K/N``, a SLURM array, a Kubernetes Indexed Job).

Shards are numbered from 0: ``0/4`` ... ``3/4``, as a Kubernetes Indexed Job numbers its pods
(``JOB_COMPLETION_INDEX``) and as a SLURM array task's offset from the array's first index is.

An item belongs to shard ``sha256(name) mod N`` (``shard_of``), its name being the image's path relative to
the image root: the split depends on the name alone, never on the set around it, so adding images to a set
moves no other image between shards (a split by sorted position would move nearly every one, and shards run
before the addition would hold the wrong images), and each shard of a large set gets close to ``1/N`` of it.
The price: a small set splits unevenly (a binomial spread), which matters little where sharding pays.

Where the shard comes from, when ``--shard`` is not given (``shard_from_env``), first found wins:

- a SLURM job array (``sbatch --array=A-B[:S]``): ``K = (SLURM_ARRAY_TASK_ID - SLURM_ARRAY_TASK_MIN) / S``
  (``SLURM_ARRAY_TASK_STEP``, 1 if unset), ``N = SLURM_ARRAY_TASK_COUNT``; the array must be a range (the
  indexes may start anywhere: ``--array=1-8`` and ``--array=0-7`` are the same 8 shards);
- a Kubernetes Indexed Job: ``K = JOB_COMPLETION_INDEX``, ``N = HQSAM_EDGE_SHARDS`` (set it to the Job's
  ``completions``: Kubernetes does not pass that number to the pod).

``--shard 0/1`` is the whole set as one run, whatever the environment says.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass

from ..errors import UsageError

SHARDS_ENV = "HQSAM_EDGE_SHARDS"  # a Kubernetes Indexed Job's number of shards (its ``completions``)


def shard_of(name: str, count: int) -> int:
    """The shard (0 .. count-1) that owns the item ``name``: its sha256 modulo ``count``."""
    return int.from_bytes(hashlib.sha256(name.encode("utf-8")).digest()[:8], "big") % count


@dataclass(frozen=True)
class Shard:
    """Shard ``index`` of ``count`` (0-based)."""

    index: int
    count: int

    def __post_init__(self) -> None:
        if self.count < 1 or not 0 <= self.index < self.count:
            raise UsageError(f"shard {self.index}/{self.count} does not exist: give K/N with 0 <= K < N "
                             f"(shards are numbered from 0: 0/{max(self.count, 1)} is the first)")

    def owns(self, name: str) -> bool:
        return shard_of(name, self.count) == self.index

    @property
    def label(self) -> str:
        """``K-of-N``: the shard as a file name part."""
        return f"{self.index}-of-{self.count}"

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def parse_shard(text: str) -> Shard:
    """``"K/N"`` -> ``Shard(K, N)``; ``UsageError`` for anything else."""
    k, sep, n = text.strip().partition("/")
    if not sep or not k.strip().isdigit() or not n.strip().isdigit():
        raise UsageError(f"{text!r} is not K/N: give shard K of N, numbered from 0 (0/4 ... 3/4 for 4 shards)")
    return Shard(int(k), int(n))


def _int(env: Mapping[str, str], name: str) -> int:
    value = env[name]
    try:
        return int(value)
    except ValueError:
        raise UsageError(f"{name}={value!r} is not a whole number; pass --shard K/N instead") from None


def _from_slurm(env: Mapping[str, str]) -> Shard:
    for name in ("SLURM_ARRAY_TASK_COUNT", "SLURM_ARRAY_TASK_MIN"):
        if name not in env:
            raise UsageError(f"SLURM_ARRAY_TASK_ID is set but {name} is not; pass --shard K/N instead")
    task, first, count = (_int(env, n) for n in ("SLURM_ARRAY_TASK_ID", "SLURM_ARRAY_TASK_MIN",
                                                 "SLURM_ARRAY_TASK_COUNT"))
    step = _int(env, "SLURM_ARRAY_TASK_STEP") if "SLURM_ARRAY_TASK_STEP" in env else 1
    last = _int(env, "SLURM_ARRAY_TASK_MAX") if "SLURM_ARRAY_TASK_MAX" in env else first + step * (count - 1)
    offset = task - first
    if step < 1 or offset % step or last - first != step * (count - 1):
        raise UsageError(f"the SLURM array (tasks {first}..{last}, step {step}, {count} tasks) is not one range: "
                         "submit it as --array=0-<N-1> (or any A-B[:S]), or pass --shard K/N")
    return Shard(offset // step, count)


def shard_from_env(env: Mapping[str, str]) -> Shard | None:
    """The shard a SLURM array task or a Kubernetes Indexed Job's pod runs (module doc); None outside them."""
    if "SLURM_ARRAY_TASK_ID" in env:
        return _from_slurm(env)
    if "JOB_COMPLETION_INDEX" in env:
        if SHARDS_ENV not in env:
            raise UsageError(f"JOB_COMPLETION_INDEX is set (a Kubernetes Indexed Job) but {SHARDS_ENV} is not: set "
                             f"it to the Job's completions in the pod's env, or pass --shard K/N")
        return Shard(_int(env, "JOB_COMPLETION_INDEX"), _int(env, SHARDS_ENV))
    return None


def choose_shard(given: Shard | None, env: Mapping[str, str]) -> Shard | None:
    """``--shard`` if given, else the environment's; None (the whole set) for a single shard."""
    shard = given if given is not None else shard_from_env(env)
    return None if shard is None or shard.count == 1 else shard
