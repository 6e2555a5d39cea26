"""The takeflow command: validate prints the plan; bad input is refused in one line, exit non-zero,
before any work starts; produce runs a storyboard to a finished video."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from blocks.media import probe
from flows.cli import main
from tests.conftest import EXAMPLES

GOOD_SHOT = {"brief": "a fox trots through snow; slow pan left; soft dusk light"}


def write(tmp_path, data, name="board.yaml"):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.mark.parametrize("example", sorted(p.name for p in EXAMPLES.glob("*.yaml")))
def test_validate_prints_the_plan_of_every_example(example, capsys):
    assert main(["validate", str(EXAMPLES / example)]) == 0
    out = capsys.readouterr().out
    assert "prompt:" in out and "estimated cost: " in out
    assert ("estimated cost: 0 credits" in out) == (example != "simulated-providers.yaml")  # previz is free


def test_validate_reports_lint_with_suggestions(tmp_path, capsys):
    path = write(tmp_path, {"title": "t", "shots": [{"brief": "a beautiful castle"}]})
    assert main(["validate", str(path)]) == 0
    out = capsys.readouterr().out
    assert "lint subject: vague word 'beautiful'" in out and "lint camera: no camera instruction" in out


BAD = {
    "unknown field": ({"title": "t", "shots": [GOOD_SHOT], "music": "x"}, "music: unknown field"),
    "no shots": ({"title": "t", "shots": []}, "shots: the storyboard has no shots"),
    "zero duration": ({"title": "t", "shots": [{**GOOD_SHOT, "duration": 0}]}, "shots[0].duration:"),
    "negative duration": ({"title": "t", "defaults": {"duration": -1}, "shots": [GOOD_SHOT]}, "defaults.duration:"),
    "aspect": ({"title": "t", "defaults": {"aspect_ratio": "21:9"}, "shots": [GOOD_SHOT]}, "defaults.aspect_ratio:"),
    "unreadable reference": ({"title": "t", "shots": [{**GOOD_SHOT, "reference_image": "missing.png"}]},
                             "shots[0].reference_image: missing.png: no such file"),
    "non-image reference": ({"title": "t", "shots": [{**GOOD_SHOT, "reference_image": "board.yaml"}]},
                            "shots[0].reference_image: board.yaml: is not an image"),
    "touching brush": ({"title": "t", "shots": [{**GOOD_SHOT, "motion_brush": [
        {"polygon": [[0, 0], [0.5, 0], [0.5, 1]], "direction": "up"},
        {"polygon": [[0.5, 0], [1, 0], [1, 1]], "direction": "down"}]}]}, "shots[0].motion_brush: regions 0 and 1"),
    "takes below one": ({"title": "t", "defaults": {"takes": 0}, "shots": [GOOD_SHOT]}, "defaults.takes:"),
}


@pytest.mark.parametrize("command", ["validate", "produce"])
@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_input_is_refused_in_one_line(case, command, tmp_path, capsys):
    data, expected = BAD[case]
    path = write(tmp_path, data)
    assert main([command, str(path), *(["--out", str(tmp_path / "out")] if command == "produce" else [])]) == 2
    captured = capsys.readouterr()
    assert captured.err.startswith(f"error: board.yaml: {expected}"), captured.err
    assert captured.err.count("\n") == 1 and "Traceback" not in captured.err
    assert not (tmp_path / "out").exists()


def test_takes_flag_below_one_is_refused_by_the_console_script(tmp_path):
    path = write(tmp_path, {"title": "t", "shots": [GOOD_SHOT]})
    done = subprocess.run([sys.executable, "-m", "flows.cli", "produce", str(path), "--takes", "0"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert "--takes: '0' is not allowed; give a whole number from 1 to 16" in done.stderr and "Traceback" not in done.stderr


def test_produce_command_makes_the_final_video(prefect_server, tmp_path):
    """The README's main command, run as a user would, against the session's Prefect server."""
    env = {**os.environ, "PREFECT_API_URL": prefect_server["api_url"],
           "PREFECT_RESULTS_LOCAL_STORAGE_PATH": str(prefect_server["results"])}
    takeflow = Path(sys.executable).parent / "takeflow"  # the console script pip installed
    done = subprocess.run([str(takeflow), "produce", str(EXAMPLES / "neon-vertical.yaml"), "--out", str(tmp_path),
                           "--takes", "1"], capture_output=True, text=True, timeout=600, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "final video:" in done.stdout and "Traceback" not in done.stderr
    info = probe(tmp_path / "neon-noodles" / "final.mp4")
    assert (info.width, info.height, info.fps) == (1080, 1920, 30)
    assert abs(info.duration - 6.0) <= 1 / 30


def test_models_lists_the_catalogue_with_prices_in_credits(capsys):
    assert main(["models", "--provider", "sora"]) == 0
    out = capsys.readouterr().out
    assert "1 credit = 0.01 USD" in out
    assert "sora/sora-2 " in out and "RETIRED 2026-09-24" in out and "runway/" not in out
