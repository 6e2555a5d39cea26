"""Prompt expansion and lint: structure, vague words, missing camera/light, stable distinct seeds."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tasks.prompts import RuleBasedExpander, lint_prompt, take_seeds
from tasks.storyboard import Shot


def expand(**fields):
    return RuleBasedExpander().expand(Shot(**fields))


def test_brief_is_split_in_model_order():
    prompt = expand(brief="a woman in a white coat walks slowly through a wheat field; camera tracking "
                          "from behind at low height; warm golden-hour light")
    assert prompt.subject == "a woman in a white coat"
    assert prompt.action == "walks slowly"
    assert prompt.environment == "through a wheat field"
    assert prompt.camera.startswith("camera tracking")
    assert prompt.lighting == "warm golden-hour light"
    text = prompt.text()
    assert text.index("woman") < text.index("wheat") < text.index("tracking") < text.index("golden")


def test_structured_fields_override_the_brief():
    prompt = expand(brief="a fox trots through snow; slow pan left", camera="static camera")
    assert prompt.camera == "static camera" and prompt.subject == "a fox"


def test_lint_flags_vague_words_with_suggestions():
    issues = lint_prompt(expand(brief="a beautiful epic castle; slow dolly in; dramatic light"))
    flagged = {i.problem: i.suggestion for i in issues}
    for word in ("beautiful", "epic", "dramatic"):
        assert flagged[f"vague word '{word}'"]
    assert "no camera instruction" not in flagged and "no lighting or mood" not in flagged


def test_lint_flags_missing_camera_and_lighting():
    problems = [i.problem for i in lint_prompt(expand(brief="an old lighthouse on a cliff"))]
    assert problems == ["no camera instruction", "no lighting or mood"]


def test_seeds_are_distinct_and_stable():
    seeds = take_seeds("Film", "shot-01", 5)
    assert len(set(seeds)) == 5
    assert take_seeds("Film", "shot-01", 3) == seeds[:3]
    assert take_seeds("Film", "shot-02", 5) != seeds


BRIEFS = yaml.safe_load((Path(__file__).parent / "data" / "briefs.yaml").read_text())


@pytest.mark.parametrize("clause, subject, action, environment", BRIEFS, ids=[b[0][:40] for b in BRIEFS])
def test_real_briefs_keep_noun_phrases_whole(clause, subject, action, environment):
    prompt = expand(brief=clause)
    assert (prompt.subject, prompt.action, prompt.environment) == (subject, action, environment)


def test_split_brief_prompt_reads_as_the_brief():
    prompt = expand(brief="A small fishing boat glides into the harbour past the stone lighthouse; slow dolly "
                          "in at eye level, the boat stays centred; soft pink dawn light, low mist on the water")
    assert prompt.subject == "a small fishing boat"
    assert prompt.action == "glides into the harbour past the stone lighthouse"
    assert prompt.camera == "slow dolly in at eye level, the boat stays centred"
    assert prompt.lighting == "soft pink dawn light, low mist on the water" and prompt.environment == ""
    assert prompt.text().startswith("A small fishing boat glides into the harbour past the stone lighthouse. "
                                    "Slow dolly in")
