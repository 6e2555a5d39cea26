"""Cache keys built from the *content* of a task's inputs, so identical work is never redone.

Prefect hashes a Path by its text, which would give stale hits when a file changes in place and
misses when the same bytes sit elsewhere. Here every existing file is replaced by the sha256 of
its bytes, pydantic models and blocks by their data, and output locations are left out.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any, Callable

from prefect.context import TaskRunContext
from prefect.utilities.hashing import hash_objects
from pydantic import BaseModel

from blocks.media import file_digest
from blocks.providers import VideoProvider

# Bump when a task's output would change for the same inputs (new renderer, new metric formula).
PIPELINE_VERSION = "1"


@lru_cache(maxsize=4096)
def _digest(path: str, size: int, mtime_ns: int) -> str:
    # Keyed on size and mtime too, so a file rewritten in place is hashed again.
    return file_digest(path)


def content_identity(value: Any) -> Any:
    """A JSON-able stand-in for `value` that changes exactly when its content changes."""
    if isinstance(value, VideoProvider):
        return value.cache_identity()
    if isinstance(value, Path) or (isinstance(value, str) and value.startswith("/") and Path(value).is_file()):
        path = Path(value)
        if path.is_file():
            stat = path.stat()
            return {"sha256": _digest(str(path), stat.st_size, stat.st_mtime_ns)}
        return {"missing": str(path)}
    if isinstance(value, BaseModel):
        return {name: content_identity(getattr(value, name)) for name in type(value).model_fields}
    if isinstance(value, dict):
        return {str(k): content_identity(v) for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))}
    if isinstance(value, (list, tuple)):
        return [content_identity(v) for v in value]
    return value


def content_key(*ignore: str, version: str = "") -> Callable[[TaskRunContext, dict[str, Any]], str | None]:
    """Build a `cache_key_fn` hashing the task's name and its inputs' content, minus `ignore`.

    Leave out parameters that only say where to write, so the same work in another output
    folder is still a cache hit. `version` names the task's own logic: change it when the task
    computes something different from the same inputs (a new scorer), so old results are not reused.
    """

    def key(context: TaskRunContext, parameters: dict[str, Any]) -> str | None:
        kept = {k: v for k, v in parameters.items() if k not in ignore}
        return hash_objects(context.task.name, PIPELINE_VERSION, version, content_identity(kept))

    return key


def work_name(*inputs: Any) -> str:
    """A short name derived from the inputs' content, so outputs of different work never share a path."""
    return hash_objects(content_identity(list(inputs)))[:12]
