"""No function in ihuyi_async/ longer than about 60 lines without a reason next to it (#15).

A reason is a comment ``# long: <why>`` on the ``def`` line or the line above it.
Lines are counted from the first statement after the docstring to the end.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "ihuyi_async"
LIMIT = 60


def test_functions_are_short_or_say_why() -> None:
    long: list[str] = []
    for path in sorted(PACKAGE.rglob("*.py")):
        lines = path.read_text(encoding="utf-8").splitlines()
        for node in ast.walk(ast.parse("\n".join(lines))):
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            body = node.body
            first = body[0]
            if (
                len(body) > 1
                and isinstance(first, ast.Expr)
                and isinstance(first.value, ast.Constant)
                and isinstance(first.value.value, str)
            ):
                first = body[1]
            size = (node.end_lineno or node.lineno) - first.lineno + 1
            start = node.decorator_list[0].lineno if node.decorator_list else node.lineno
            nearby = " ".join(lines[max(0, start - 2) : node.lineno])
            if size > LIMIT and "# long:" not in nearby:
                long.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno} {node.name} ({size} lines)")
    assert long == [], "\n".join(long)
