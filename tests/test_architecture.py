"""docs/ARCHITECTURE.md's folder map is the import graph: every module is on the map, imports
go only to its own layer or earlier ones, and no two modules import each other."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).parents[1]
PACKAGE = ROOT / "batch"


def layers() -> dict[str, int]:
    """Top-level module or package of `batch` -> its layer's position in the map."""
    text = (ROOT / "docs" / "ARCHITECTURE.md").read_text()
    block = re.search(r"```layers\n(.*?)```", text, re.S)
    assert block is not None, "docs/ARCHITECTURE.md has no ```layers block"
    found: dict[str, int] = {}
    for position, line in enumerate(block.group(1).strip().splitlines()):
        for name in line.split()[1:]:
            found[name] = position
    return found


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> set[str]:
    """The `batch` modules a file imports, anywhere in it (lazy imports count)."""
    found: set[str] = set()
    package = module_name(path) if path.name == "__init__.py" else module_name(path.parent)
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.startswith("batch")}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1])
                base = f"{base}.{node.module}" if node.module else base
            if base == "batch" or base.startswith("batch."):
                submodules = {f"{base}.{alias.name}" for alias in node.names}
                found |= submodules
                if not all(_exists(name) for name in submodules):
                    found.add(base)  # a name defined in the package itself
    return {name for name in found if _exists(name)}


def _exists(name: str) -> bool:
    path = ROOT / name.replace(".", "/")
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def top(name: str) -> str:
    parts = name.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


GRAPH = {module_name(p): imports(p) for p in PACKAGE.rglob("*.py")}


def test_every_module_is_on_the_map() -> None:
    """A new module or package must be placed in a layer of docs/ARCHITECTURE.md."""
    placed = layers()
    missing = sorted({top(name) for name in GRAPH} - set(placed))
    assert missing == []
    assert sorted(set(placed) - {top(name) for name in GRAPH}) == []  # no stale names


def test_no_import_goes_to_a_later_layer() -> None:
    """Dependencies point one way: never from a layer to one listed after it."""
    placed = layers()
    upward = [
        f"{module} -> {target}"
        for module, targets in GRAPH.items()
        for target in targets
        if placed[top(target)] > placed[top(module)]
    ]
    assert upward == []


def test_there_are_no_import_cycles() -> None:
    """No module reaches itself through its imports (packages count by their __init__)."""
    cycles: list[str] = []
    done: set[str] = set()

    def visit(module: str, path: list[str]) -> None:
        if module in path:
            cycles.append(" -> ".join([*path[path.index(module) :], module]))
            return
        if module in done:
            return
        for target in sorted(GRAPH.get(module, ())):
            if target != module and not module.startswith(target + "."):
                visit(target, [*path, module])
        done.add(module)

    for module in sorted(GRAPH):
        visit(module, [])
    assert cycles == []


def test_the_map_can_fail() -> None:
    """The checks see a real import: runner imports the store, so the store must come first."""
    placed = layers()
    assert "batch.store" in GRAPH["batch.runner"]
    assert placed["store"] < placed["runner"]
