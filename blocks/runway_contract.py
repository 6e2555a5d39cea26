"""Runway's per-model request rules, read from the official SDK's own types.

The runwayml SDK (Stainless-generated from Runway's OpenAPI spec) describes every model the
`/v1/text_to_video` and `/v1/image_to_video` endpoints route to as a TypedDict: which fields it
takes, which are required, the enums (`ratio`, `duration`, `resolution`, image `position`s) and,
in docstrings, ranges ("Must be an integer from 2 to 10") and prompt limits ("up to 1000
characters"). `extract` reads those source files with `ast` (the SDK is not imported, and need
not be installed at run time); the result is kept in `blocks/runway_models.py`, which the
adapter shapes its bodies from and the simulator validates against. A test regenerates it from
the installed SDK and fails when the two differ, so an SDK upgrade shows what Runway changed.

Regenerate: python -m blocks.runway_contract [path/to/site-packages/runwayml]
"""

from __future__ import annotations

import ast
import pprint
import re
import sys
from pathlib import Path
from typing import Any

FILES = {"t2v": "types/text_to_video_create_params.py", "i2v": "types/image_to_video_create_params.py"}
GENERATED = Path(__file__).with_name("runway_models.py")
_RANGE = re.compile(r"(?:from|between) (\d+) (?:to|and) (\d+)")
_LIMIT = re.compile(r"up to (\d+) characters")


def _doc_after(body: list[ast.stmt], index: int) -> str:
    following = body[index + 1] if index + 1 < len(body) else None
    if isinstance(following, ast.Expr) and isinstance(following.value, ast.Constant) \
            and isinstance(following.value.value, str):
        return " ".join(following.value.value.split())
    return ""


def _shape(node: ast.expr, classes: dict[str, ast.ClassDef], out: dict[str, Any]) -> None:
    """Fold one annotation into `out`: required, alias, enum values, base types, item fields."""
    if isinstance(node, ast.Subscript):
        head = node.value.id if isinstance(node.value, ast.Name) else getattr(node.value, "attr", "")
        args = node.slice.elts if isinstance(node.slice, ast.Tuple) else [node.slice]
        if head == "Required":
            out["required"] = True
            _shape(args[0], classes, out)
        elif head == "Annotated":
            for extra in args[1:]:
                if isinstance(extra, ast.Call):
                    for kw in extra.keywords:
                        if kw.arg == "alias":
                            out["alias"] = kw.value.value
            _shape(args[0], classes, out)
        elif head == "Union":
            for arg in args:
                _shape(arg, classes, out)
        elif head == "Literal":
            out.setdefault("enum", []).extend(a.value for a in args)
        elif head in ("Iterable", "List", "Sequence"):
            out.setdefault("types", []).append("array")
            item = args[0]
            if isinstance(item, ast.Name) and item.id in classes:
                out["items"] = _fields(classes[item.id], classes)
        elif head in ("Dict", "Mapping"):
            out.setdefault("types", []).append("object")
    elif isinstance(node, ast.Name):
        if node.id in classes:
            out.setdefault("types", []).append("object")
            out["fields"] = _fields(classes[node.id], classes)
        else:
            out.setdefault("types", []).append({"int": "int", "str": "str", "bool": "bool", "float": "float",
                                                "object": "any"}.get(node.id, node.id))


def _fields(cls: ast.ClassDef, classes: dict[str, ast.ClassDef]) -> dict[str, dict[str, Any]]:
    fields: dict[str, dict[str, Any]] = {}
    for index, stmt in enumerate(cls.body):
        if not (isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name)):
            continue
        spec: dict[str, Any] = {"required": False}
        _shape(stmt.annotation, classes, spec)
        doc = _doc_after(cls.body, index)
        if "int" in spec.get("types", []) and (found := _RANGE.search(doc)):
            spec["range"] = [int(found.group(1)), int(found.group(2))]
        if "str" in spec.get("types", []) and (found := _LIMIT.search(doc)):
            spec["max_length"] = int(found.group(1))
        if "enum" in spec:
            spec["enum"] = sorted(set(spec["enum"]), key=str)
        if "types" in spec:
            spec["types"] = sorted(set(spec["types"]))
        fields[spec.pop("alias", stmt.target.id)] = spec
    return fields


def extract(sdk: Path) -> dict[str, dict[str, dict[str, dict[str, Any]]]]:
    """{model: {"t2v"|"i2v": {field: rules}}} as the SDK at `sdk` (its package folder) types them."""
    models: dict[str, dict[str, Any]] = {}
    for endpoint, name in FILES.items():
        tree = ast.parse((sdk / name).read_text())
        classes = {node.name: node for node in tree.body if isinstance(node, ast.ClassDef)}
        union = next(node for node in tree.body if isinstance(node, ast.AnnAssign)
                     and getattr(node.target, "id", "").endswith("CreateParams"))
        for member in union.value.slice.elts:
            fields = _fields(classes[member.id], classes)
            model = fields.pop("model")["enum"][0]
            models.setdefault(model, {})[endpoint] = fields
    return dict(sorted(models.items()))


def sdk_version(sdk: Path) -> str:
    return re.search(r'__version__ = "([^"]+)"', (sdk / "_version.py").read_text()).group(1)


def write(sdk: Path) -> None:
    text = (f'"""Generated by `python -m blocks.runway_contract` from runwayml {sdk_version(sdk)}\'s types: '
            "do not edit.\"\"\"\n\n"
            f"SDK_VERSION = {sdk_version(sdk)!r}\n"
            f"MODELS = {pprint.pformat(extract(sdk), width=110, sort_dicts=True)}\n")
    GENERATED.write_text(text)


if __name__ == "__main__":
    if len(sys.argv) > 1:
        write(Path(sys.argv[1]))
    else:
        import runwayml

        write(Path(runwayml.__file__).parent)
