"""The store of paid outputs: every provider output, verified, under the hash of the work that made
it (`<TAKEFLOW_HOME>/outputs/ab/abcdef....mp4`).

Output folders only hold links or copies of these files, so deleting `out/` (or producing into
another `--out`) finds the paid work here instead of paying for it again. The take journal
(blocks/journal.py) records which key is done and the stored file's size.
"""

from __future__ import annotations

from pathlib import Path

from blocks.home import takeflow_home


def output_path(key: str, suffix: str = ".mp4") -> Path:
    """Where the output of the work `key` lives (the folder is created, the file may not exist)."""
    folder = takeflow_home() / "outputs" / key[:2]
    folder.mkdir(parents=True, exist_ok=True)
    return folder / f"{key}{suffix}"


def intact(path: Path, size: int | None) -> bool:
    """The stored file is there with the size it had when it was verified."""
    return path.is_file() and size is not None and path.stat().st_size == size
