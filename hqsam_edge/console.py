"""What the command line prints: report blocks (``tables.Table`` s and lines) as rich tables on a terminal
and as markdown everywhere else (a log, a pipe, CI), so that nothing shows raw pipes on a terminal and
nothing depends on a terminal's width in a log."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import IO

from .tables import Block, Table, markdown


def is_terminal(stream: IO[str] | None = None) -> bool:
    stream = stream or sys.stdout
    return bool(getattr(stream, "isatty", lambda: False)())


def show(blocks: Sequence[Block], stream: IO[str] | None = None) -> None:
    """Print ``blocks``: rich tables on a terminal, markdown otherwise."""
    stream = stream or sys.stdout
    if not is_terminal(stream):
        print(markdown(blocks), file=stream)
        return
    from rich.console import Console
    from rich.table import Table as RichTable

    console = Console(file=stream)
    for i, block in enumerate(blocks):
        if i:
            console.print()
        if isinstance(block, str):
            console.print(block, markup=False, highlight=False)
            continue
        table = RichTable(title=block.title, title_justify="left", show_lines=False)
        for k, header in enumerate(block.headers):
            table.add_column(header, justify="right" if k in block.numeric else "left", overflow="fold")
        for row in block.rows:
            table.add_row(*(str(c) for c in row))
        console.print(table)


def key_values(pairs: Sequence[tuple[str, str]], title: str | None = None) -> Table:
    """A two-column table (``info``)."""
    return Table(["", ""], [[k, v] for k, v in pairs], title=title)
