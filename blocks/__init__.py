"""takeflow's Prefect blocks: provider APIs, storage and budgets.

`prefect block register -m blocks` registers every block type below, so each one can be created
and edited in the Prefect UI. The classes are imported on first access (PEP 562), so importing one
block module does not import every provider's.
"""

from __future__ import annotations

import importlib

# class name -> module; the block types a Prefect server should know
BLOCK_CLASSES: dict[str, str] = {
    "Budget": "blocks.budget",
    "LocalStorage": "blocks.storage",
    "S3Storage": "blocks.storage_s3",
    "PrevizProvider": "blocks.previz",
    "RunwayProvider": "blocks.runway",
    "KlingProvider": "blocks.kling",
    "VeoProvider": "blocks.veo",
    "SoraProvider": "blocks.sora",
    "SeedanceProvider": "blocks.seedance",
    "LtxProvider": "blocks.ltx",
    "FalProvider": "blocks.fal",
}

__all__ = sorted(BLOCK_CLASSES)


def __getattr__(name: str):
    if name not in BLOCK_CLASSES:
        raise AttributeError(f"module 'blocks' has no attribute '{name}'")
    return getattr(importlib.import_module(BLOCK_CLASSES[name]), name)


def __dir__() -> list[str]:  # what `prefect block register -m blocks` walks (inspect.getmembers)
    return sorted({*globals(), *BLOCK_CLASSES})
