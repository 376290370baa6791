"""``merge``: the results of a ``segment`` run split into shards (``segment --shard K/N``), once all are done."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .group import command


@command()
def merge(
    out: Annotated[Path, typer.Argument(help="The --out folder every shard of `hqsam-edge segment --shard` wrote.")],
):
    """Write OUT/results.json (and errors.json) of a sharded segment run; names the shards not yet finished."""
    from ..apps.segment import merge_shards
    from ..errors import SKIPPED_EXIT_CODE

    summary = merge_shards(out)
    typer.echo(summary.line())
    if summary.failed:
        raise typer.Exit(SKIPPED_EXIT_CODE)
