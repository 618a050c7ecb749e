"""The house rules that keep the layout honest: checked by walking the code, not by review.

The library package never imports Prefect (the flows orchestrate it), no module in it grows past
the size one person can hold in their head, and its modules import without a circle.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import milvus_ingest

PACKAGE = Path(milvus_ingest.__file__).resolve().parent
MAX_LINES = 350


def _modules() -> dict[str, Path]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE.parent).with_suffix("")
        parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
        found[".".join(parts)] = path
    return found


def _imports(path: Path, module: str) -> set[str]:
    """Every module name ``path`` imports, anywhere in it (function-level imports too)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            assert not node.level, f"{module}: relative import (the package uses absolute imports)"
            if node.module:
                names.add(node.module)
                names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def test_the_library_never_imports_prefect():
    offenders = {
        name: sorted(i for i in _imports(path, name) if i == "prefect" or i.startswith("prefect."))
        for name, path in _modules().items()
    }
    assert {k: v for k, v in offenders.items() if v} == {}


def test_importing_the_whole_library_loads_no_prefect():
    modules = " ".join(f"import {m};" for m in _modules())
    code = f"{modules} import sys; print('prefect' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_no_module_is_over_the_size_limit():
    sizes = {name: len(path.read_text(encoding="utf-8").splitlines()) for name, path in _modules().items()}
    assert {k: v for k, v in sizes.items() if v > MAX_LINES} == {}


def test_no_import_circle_inside_the_library():
    modules = _modules()
    graph = {
        name: {other for other in modules if other != name and other in _imports(path, name)}
        for name, path in modules.items()
    }

    def cycle_from(start: str) -> list[str] | None:
        stack = [(start, [start])]
        while stack:
            node, trail = stack.pop()
            for nxt in graph[node]:
                if nxt == start:
                    return [*trail, start]
                if nxt not in trail:
                    stack.append((nxt, [*trail, nxt]))
        return None

    # A package importing its own submodules (``__init__`` re-exports) is not a circle.
    for name in graph:
        graph[name] = {o for o in graph[name] if not o.startswith(name + ".")}
    circles = [c for c in (cycle_from(n) for n in sorted(graph)) if c]
    assert circles == []


def test_the_public_api_is_importable_from_the_package():
    for name in milvus_ingest.__all__:
        assert getattr(milvus_ingest, name) is not None, name
