"""Tables as plain data: what a command reports, rendered as markdown (``--markdown``, files, logs) or, on a
terminal, by the command line (``rich``). Report builders return a list of blocks: ``Table`` s and lines."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Table:
    """A titled table: ``headers``, ``rows`` of cells (already formatted), ``numeric`` columns right-aligned."""

    headers: Sequence[str]
    rows: Sequence[Sequence[str]]
    title: str | None = None
    numeric: frozenset[int] = field(default_factory=frozenset)  # column indices

    def markdown(self) -> str:
        lines = [self.title, ""] if self.title else []
        lines.append("| " + " | ".join(self.headers) + " |")
        lines.append("|" + "|".join("---:" if i in self.numeric else "---" for i in range(len(self.headers))) + "|")
        lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in self.rows]
        return "\n".join(lines)


Block = Table | str


def markdown(blocks: Sequence[Block]) -> str:
    """Blocks as markdown: tables as pipes, lines as they are, a blank line between blocks."""
    return "\n\n".join(b.markdown() if isinstance(b, Table) else b for b in blocks)
