"""The storyboard model is a leaf: it imports blocks/ and leaf helpers, and nothing it imports
leads back into it. Read from the source with ast (every import, at the top, inside functions or
under TYPE_CHECKING), so a late import cannot hide a cycle."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("blocks", "tasks", "flows")
# helpers the storyboard may use: they import nothing from tasks/ or flows/ themselves
LEAF_HELPERS = {"tasks.routing", "tasks.inputs", "tasks.srt"}


def imports_of(module: str) -> set[str]:
    path = ROOT.joinpath(*module.split(".")).with_suffix(".py")
    if not path.is_file():  # a package: `from blocks import x` names blocks/__init__.py
        path = ROOT.joinpath(*module.split("."), "__init__.py")
    if not path.is_file():
        return set()
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {name for name in found if name.split(".")[0] in PACKAGES}


def reachable(start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        for name in imports_of(todo.pop()):
            if name not in seen:
                seen.add(name)
                todo.append(name)
    return seen


def test_the_storyboard_model_imports_no_pipeline_module():
    reached = reachable("tasks.storyboard")
    assert "tasks.storyboard" not in reached, "an import of tasks/storyboard.py leads back to it"
    pipeline = {name for name in reached if not name.startswith("blocks")}
    assert pipeline <= LEAF_HELPERS, f"tasks/storyboard.py reaches {sorted(pipeline - LEAF_HELPERS)}"
    for helper in LEAF_HELPERS:
        inside = {n for n in imports_of(helper) if not n.startswith("blocks")}
        assert inside <= LEAF_HELPERS, f"{helper} is not a leaf: it imports {sorted(inside - LEAF_HELPERS)}"


def test_blocks_import_nothing_from_the_pipeline():
    for path in sorted((ROOT / "blocks").glob("*.py")):
        outside = {n for n in imports_of(f"blocks.{path.stem}") if not n.startswith("blocks")}
        assert not outside, f"blocks/{path.name} imports {sorted(outside)}"
