"""score_take adds the metrics of learned scorers whose weights are present, and only theirs."""

from __future__ import annotations

from pathlib import Path

import tasks.score
from blocks.previz_render import render_previz
from tasks.learned import ScorerRegistry
from tasks.metrics import Expectation
from tasks.score import score_take


class BrightnessScorer:
    """A stand-in learned scorer: its 'weights' are a file the test creates."""

    name = "mean-brightness"

    def __init__(self, weights: Path):
        self._weights = weights

    def weights_path(self) -> Path:
        return self._weights

    def available(self) -> bool:
        return self._weights.is_file()

    def score(self, frames, prompt):
        return {"mean_brightness": sum(float(f.mean()) for f in frames) / len(frames) / 255}


def test_learned_metrics_join_the_take_metrics(tmp_path, monkeypatch):
    take = tmp_path / "take.mp4"
    render_previz(take, width=160, height=90, fps=12, duration=1, prompt="a fox; slow pan left; dusk",
                  seed=3, motion_amount=0.5, reference_image=None, regions=())
    expected = Expectation(width=160, height=90, fps=12, duration=1)
    weights = tmp_path / "brightness.onnx"
    registry = ScorerRegistry()
    registry.register(BrightnessScorer(weights))
    monkeypatch.setattr(tasks.score, "default_registry", lambda: (registry, []))

    without = score_take.fn(take, expected, (), "a fox")
    assert "mean_brightness" not in without.metrics
    weights.write_bytes(b"weights")
    with_learned = score_take.fn(take, expected, ("mean-brightness",), "a fox")
    assert 0 < with_learned.metrics["mean_brightness"] < 1
    assert {k: v for k, v in with_learned.metrics.items() if k != "mean_brightness"} == without.metrics
