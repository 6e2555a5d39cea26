"""What the user sees while a production runs: a terminal progress display (when the CLI runs
the flow) and a Prefect progress artifact on the flow run, both fed as stages advance."""

from __future__ import annotations

import contextlib
from typing import Iterator

from prefect.artifacts import create_progress_artifact, update_progress_artifact
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

_display: Progress | None = None


@contextlib.contextmanager
def terminal_display() -> Iterator[None]:
    """Show live per-stage progress bars on stderr while the block runs (a plain log otherwise)."""
    global _display
    console = Console(stderr=True)
    _display = Progress(TextColumn("{task.description:<9}"), BarColumn(), MofNCompleteColumn(),
                        TimeElapsedColumn(), TextColumn("{task.fields[note]}"), console=console)
    try:
        with _display:
            yield
    finally:
        _display = None


class RunProgress:
    """Progress of one production; each stage's share of the artifact's 0–100 % is its weight."""

    def __init__(self, weights: dict[str, float], key: str | None = None):
        total = sum(weights.values())
        self._shares = {name: 100 * w / total for name, w in weights.items()}
        self._percent = 0.0
        self._artifact = create_progress_artifact(0.0, key=key, description="production progress")
        self._rows: dict[str, int] = {}
        self._totals: dict[str, int] = {}

    def start(self, stage: str, total: int) -> None:
        """Announce `total` units of work in a stage; later calls add to it (extra takes)."""
        first = stage not in self._totals
        self._totals[stage] = self._totals.get(stage, 0) + total
        if _display is None:
            return
        if first:
            self._rows[stage] = _display.add_task(stage, total=total, note="")
        else:
            _display.update(self._rows[stage], total=self._totals[stage])

    def advance(self, stage: str, note: str = "") -> None:
        self._percent = min(100.0, self._percent + self._shares[stage] / max(1, self._totals[stage]))
        if self._artifact is not None:
            update_progress_artifact(self._artifact, round(self._percent, 1))
        if stage in self._rows:
            _display.update(self._rows[stage], advance=1, note=note)

    def finish(self) -> None:
        """The edit is delivered: 100 %, although takes added mid-run left the stages' sums short."""
        self._percent = 100.0
        if self._artifact is not None:
            update_progress_artifact(self._artifact, 100.0, description="production progress: delivered")
