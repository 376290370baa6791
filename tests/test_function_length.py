"""No function of the package is over 60 lines (its docstring not counted) unless its docstring says why, in a
line containing "Long:".

Short functions are the project's habit (the median is about 7 lines); a long one is usually two jobs. The
exception is allowed where splitting would hurt reading, and then the reason is written where it is seen.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "hqsam_edge"
MAX_LINES = 60


def code_lines(node: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    """Lines from ``def`` to the end, less the docstring's."""
    lines = node.end_lineno - node.lineno + 1
    first = node.body[0]
    if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str):
        lines -= first.end_lineno - first.lineno + 1
    return lines


def long_functions(root: Path = PACKAGE) -> list[str]:
    found = []
    for path in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            lines = code_lines(node)
            if lines > MAX_LINES and "Long:" not in (ast.get_docstring(node) or ""):
                found.append(f"{path.relative_to(root.parent)}:{node.lineno} {node.name} ({lines} lines)")
    return found


def test_no_function_is_over_60_lines_without_a_reason():
    assert long_functions() == []


def test_the_check_sees_a_long_function(tmp_path):
    body = "\n".join(f"    x{i} = {i}" for i in range(MAX_LINES))
    short = "\n".join(f"    x{i} = {i}" for i in range(MAX_LINES - 1))
    doc = '    """What it does.\n\n    More.\n    """\n'
    (tmp_path / "m.py").write_text(f"def f():\n{body}\n\n\n"
                                   f'def g():\n    """Long: a table."""\n{body}\n\n\n'
                                   f"def h():\n{doc}{short}\n")
    assert long_functions(tmp_path) == [f"{tmp_path.name}/m.py:1 f ({MAX_LINES + 1} lines)"]
