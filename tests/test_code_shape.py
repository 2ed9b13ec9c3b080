"""House rules on the code's shape: functions stay short (a longer one says why in a comment
right above it), and no server module grows past ~300 lines."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FOLDERS = ("engines", "avatars", "server", "trt_build", "vn3d", "scripts", "tests")
MAX_FUNCTION_LINES = 80
MAX_SERVER_MODULE_LINES = 300


def long_functions(path: Path) -> list[str]:
    """Functions over the limit without a comment above them that mentions "80 lines"."""
    lines = path.read_text().splitlines()
    out = []
    for node in ast.walk(ast.parse("\n".join(lines))):
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        length = node.end_lineno - node.lineno + 1
        first = min([node.lineno, *(d.lineno for d in node.decorator_list)])
        above = []
        k = first - 2
        while k >= 0 and lines[k].lstrip().startswith("#"):
            above.append(lines[k])
            k -= 1
        if length > MAX_FUNCTION_LINES and "80 lines" not in " ".join(above):
            where = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path.name
            out.append(f"{where}:{node.lineno} {node.name} ({length} lines)")
    return out


def test_functions_are_short_or_say_why() -> None:
    found = [f for d in FOLDERS for p in sorted((ROOT / d).rglob("*.py"))
             for f in long_functions(p)]
    assert found == []


def test_the_length_check_sees_a_long_function(tmp_path) -> None:
    body = "\n".join(f"    x{i} = {i}" for i in range(MAX_FUNCTION_LINES))
    path = tmp_path / "probe.py"
    path.write_text(f"def f():\n{body}\n")
    assert len(long_functions(path)) == 1
    path.write_text(f"# over 80 lines on purpose: a probe\ndef f():\n{body}\n")
    assert long_functions(path) == []


def test_server_modules_stay_small() -> None:
    sizes = {p.name: len(p.read_text().splitlines()) for p in (ROOT / "server").glob("*.py")}
    assert max(sizes.values()) <= MAX_SERVER_MODULE_LINES, sizes
