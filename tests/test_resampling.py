"""When no take of a shot is good enough: more seeds, then the fallback model, within the shot's
share of the budget; a shot that never passes ends NoAcceptableTake and the others are kept."""

from __future__ import annotations

import json
from dataclasses import replace

import cv2
import numpy as np

from blocks.previz import PrevizProvider
from flows.takes import ShotTakes, next_jobs
from tasks.plan import ModelChoice, plan_shot
from tasks.prompts import expand_prompt
from tasks.report import TakeRecord
from tasks.score import Selection
from tasks.storyboard import parse_storyboard


def shot_takes(tmp_path, takes=2, extra_takes=3, fallback=None, share=None) -> ShotTakes:
    board = parse_storyboard({"title": "T", "defaults": {"takes": takes, "extra_takes": extra_takes,
                                                         "duration": 2},
                              "shots": [{"id": "a", "brief": "a fox; slow pan left; dusk light"}]})
    plan = plan_shot(board, 0, expand_prompt.fn(board.shots[0], "a", "T", takes))
    plan = plan.model_copy(update={"fallback": ModelChoice(provider="previz", model=fallback) if fallback else None})
    records = {take: TakeRecord(take=take, seed=seed, model=plan.model, provider="previz", credits=4)
               for take, seed in enumerate(plan.prompts.seeds, 1)}
    selection = Selection(take=None, numbers=list(range(1, takes + 1)), totals=[None] * takes,
                          reason="no take passed QC", quality=[None] * takes, acceptable=False)
    return ShotTakes(plan, None, records=records, selection=selection, share=share)


def add(step):
    """The shot once the takes it asked for are made (none passing)."""
    made = {job.take: TakeRecord(take=job.take, seed=job.seed, model=job.choice.model, provider="previz", credits=4)
            for job in step.jobs}
    return replace(step.shot, records={**step.shot.records, **made})


def test_extra_seeds_first_then_the_fallback_model_then_stop(tmp_path):
    shot, provider = shot_takes(tmp_path, fallback="motion-preview-max"), {"previz": PrevizProvider()}
    first = next_jobs(shot, "T", provider)
    assert [j.take for j in first.jobs] == [3, 4] and {j.choice.model for j in first.jobs} == {"motion-preview"}
    assert len({j.seed for j in first.jobs} | {r.seed for r in shot.records.values()}) == 4
    assert shot.history == () and first.shot.pending  # the decision is returned, the input untouched
    second = next_jobs(add(first), "T", provider)
    assert [j.take for j in second.jobs] == [5]  # only 3 extra takes allowed in all
    third = next_jobs(add(second), "T", provider)
    assert [j.take for j in third.jobs] == [6, 7] and {j.choice.model for j in third.jobs} == {"motion-preview-max"}
    last = next_jobs(add(third), "T", provider)
    assert last.jobs == () and not last.shot.pending
    assert last.shot.history[-1].startswith("no more takes allowed")


def test_no_extra_takes_past_the_shots_budget_share(tmp_path):
    shot = shot_takes(tmp_path, share=10)  # 8 credits already spent on two 2 s takes at 2/s
    step = next_jobs(shot, "T", {"previz": PrevizProvider(credits_per_second=2)})
    assert step.jobs == ()
    assert "share of the budget (10 credits, 8 spent)" in step.shot.history[-1]


def test_acceptable_shot_gets_no_more_takes(tmp_path):
    shot = replace(shot_takes(tmp_path), selection=Selection(
        take=1, numbers=[1, 2], totals=[1.0, 0.5], reason="take 1", quality=[0.9, 0.8], acceptable=True))
    assert next_jobs(shot, "T", {"previz": PrevizProvider()}).jobs == ()


def test_shot_that_never_passes_ends_no_acceptable_take_and_the_others_are_kept(prefect_server, tmp_path):
    from flows.produce import RunOptions, produce

    cv2.imwrite(str(tmp_path / "black.png"), np.zeros((90, 160, 3), np.uint8))
    board = parse_storyboard({
        "title": "Mixed", "defaults": {"duration": 1, "fps": 12, "takes": 2, "extra_takes": 2, "delivery": "720p"},
        "shots": [{"id": "fox", "brief": "a red fox trots through snow; slow pan left; soft dusk light"},
                  {"id": "void", "brief": "a dark room; slow pan left; no light", "reference_image": "black.png"}]},
        tmp_path)
    state = produce(storyboard=board, options=RunOptions(out_dir=str(tmp_path)), return_state=True)
    assert state.is_failed() and state.name == "NoAcceptableTake"
    report = json.loads((tmp_path / "mixed" / "report.json").read_text())
    fox, void = report["shots"]
    chosen = next(t for t in fox["takes"] if t["take"] == fox["chosen"])
    assert fox["state"] == "ok" and (tmp_path / "mixed" / chosen["file"]).is_file()
    assert void["state"] == "NoAcceptableTake" and void["chosen"] is None
    assert [t["take"] for t in void["takes"]] == [1, 2, 3, 4]
    assert all("black frames" in " ".join(t["hard_fails"]) for t in void["takes"])
    assert void["history"][0] == "no take passed the bar: 2 more takes with new seeds"
    assert (tmp_path / "mixed" / void["contact_sheet"]).is_file()
    assert report["final"] is None
