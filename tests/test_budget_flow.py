"""The ledger inside real runs, against the Runway simulator on a real Prefect server: two runs on
one budget never pass it together, a take the provider charged for although moderation refused
it is counted and stops further spend, the gate's fit policy shrinks the plan, draft-then-final
renders only the winner on the premium model, and bad budget input is one line before any spend."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from blocks.catalogue import DEFAULT_PATH
from blocks.ledger import Ledger
from blocks.registry import provider_class
from simulators.serve import client_settings, start_simulator
from tasks.storyboard import parse_storyboard

ROOT = Path(__file__).resolve().parents[1]
TAKE = 24  # credits of a 2 s runway/gen4.5 take at 12 credits/s


@pytest.fixture
def state(tmp_path, monkeypatch):
    url = f"sqlite:///{tmp_path / 'state.db'}"
    monkeypatch.setenv("TAKEFLOW_STATE_URL", url)
    return Ledger(url)


@pytest.fixture
def runway(prefect_server, state):
    sim = start_simulator("runway", latency=0.3)
    provider_class("runway")(**client_settings("runway", sim), first_poll=0.05, poll_interval=0.2).save(
        "runway", overwrite=True)
    yield sim
    sim.stop()
    provider_class("runway").delete("runway")


def board(title: str, shots: int = 2, **defaults) -> dict:
    return {"title": title,
            "defaults": {"provider": "runway", "model": "gen4.5", "duration": 2, "fps": 24, "takes": 2,
                         "delivery": "720p", "quality_bar": 0.0, "extra_takes": 0, **defaults},
            "shots": [{"id": f"s{n}", "brief": f"a harbour at dawn, boat {n}; static camera; soft light"}
                      for n in range(shots)]}


def run(data: dict, out: Path, **options):
    from flows.produce import RunOptions, produce
    return produce(storyboard=parse_storyboard(data), options=RunOptions(out_dir=str(out), **options),
                   return_state=True)


def test_two_runs_started_together_on_one_budget_never_pass_it(runway, state, prefect_server, tmp_path):
    from simulators.base import Fault
    from tests.provider_faults import transient_faults

    state.create_budget("shared", 5 * TAKE)  # each run needs 4 takes: together they would need 8
    # what goes wrong in real use, on the way: 429s, 5xx, dropped polls and downloads, cut and
    # corrupt files, an expired URL, and a take refused by moderation after submission (charged)
    runway.inject(*transient_faults(), Fault("fail", failure="moderation"))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PREFECT_API_URL": prefect_server["api_url"],
           "PREFECT_RESULTS_LOCAL_STORAGE_PATH": str(prefect_server["results"])}
    runs = []
    for name in ("Harbour East", "Harbour West"):
        path = tmp_path / f"{name.split()[1].lower()}.yaml"
        path.write_text(yaml.safe_dump(board(name)))
        runs.append(subprocess.Popen([sys.executable, "-m", "flows.cli", "produce", str(path), "--budget-name",
                                      "shared", "--out", str(tmp_path / "out")], env=env, cwd=tmp_path,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    results = [(p.wait(300), p.stdout.read(), p.stderr.read()) for p in runs]
    status = state.status("shared")
    assert status.spent <= 5 * TAKE and status.reserved == 0
    assert runway.creates <= 5 and runway.creates * TAKE == status.spent == runway.record()["charged"]
    assert [t["status"] for t in runway.record()["tasks"]].count("failed") == 1  # charged, and counted
    assert not runway.faults  # every fault fired
    stopped = [err for code, _, err in results if code != 0]
    # the later run stops at the gate (what is left is reserved) or when its reservations run out
    assert len(stopped) >= 1 and all("budget 'shared'" in err for err in stopped), results
    assert all([line.startswith("error: ") for line in err.strip().splitlines()].count(True) == 1 for err in stopped)
    for code, out, _ in results:
        if code == 0:  # a completed run paid its four takes (the moderated one among them, if it was its)
            assert "credits: 96 this run" in out


def test_a_moderated_take_the_provider_charged_is_counted_and_stops_further_spend(runway, state, tmp_path):
    from simulators.base import Fault

    runway.inject(Fault("fail", failure="moderation"))  # refused after submission: Runway keeps the credits
    data = board("Moderated", shots=1, takes=1, extra_takes=3, quality_bar=1.0, budget=2 * TAKE)
    result = run(data, tmp_path)
    assert result.is_failed() and result.name == "BudgetExceeded"
    assert "budget 'project-moderated' is spent (48 of 48 credits)" in result.message
    assert runway.creates == 2  # without the charge counted a third take would have been sent
    assert state.status("project-moderated").spent == 2 * TAKE
    report = json.loads((tmp_path / "moderated" / "report.json").read_text())
    takes = report["shots"][0]["takes"]
    assert takes[0]["error"] and takes[0]["charged"] == TAKE and takes[1]["charged"] == TAKE
    assert takes[-1]["over_budget"] and report["credits_spent"] == 2 * TAKE == report["credits_this_run"]
    rerun = run(data, tmp_path)  # a resume counts the storyboard's whole spend, not only its own
    assert rerun.name == "BudgetExceeded" and runway.creates == 2
    again = json.loads((tmp_path / "moderated" / "report.json").read_text())
    assert again["credits_spent"] == 2 * TAKE and again["credits_this_run"] == 0


def test_the_fit_policy_shrinks_the_plan_to_the_budget(runway, state, tmp_path):
    result = run(board("Fitted", takes=3, budget_policy="fit"), tmp_path, budget=4 * TAKE)
    assert result.is_completed(), result.message
    report = json.loads((tmp_path / "fitted" / "report.json").read_text())
    assert report["plan_changes"]  # what changed is said (drafts on a cheaper model, or fewer takes)
    assert report["credits_spent"] <= 4 * TAKE and report["credits_spent"] == runway.record()["charged"]


def test_the_stop_policy_says_what_is_needed_and_left(runway, state, tmp_path):
    state.create_budget("small", TAKE)
    result = run(board("Stopped"), tmp_path, budget_name="small")
    assert result.name == "BudgetExceeded" and runway.creates == 0
    assert "needs 96 credits but budget 'small' has 24 left" in result.message
    assert "nothing was spent" in result.message


def test_draft_then_final_renders_only_the_winner_on_the_premium_model(runway, state, tmp_path):
    data = board("Drafted", shots=1, takes=3, duration=4,
                 draft={"model": "runway/kling3.0_standard", "duration": 3})
    result = run(data, tmp_path)
    assert result.is_completed(), result.message
    report = json.loads((tmp_path / "drafted" / "report.json").read_text())
    shot = report["shots"][0]
    stages = [(t["stage"], t["model"], t["seed"]) for t in shot["takes"]]
    assert [s[:2] for s in stages] == [("draft", "kling3.0_standard")] * 3 + [("final", "gen4.5")]
    winner = next(t for t in shot["takes"] if any("draft take" in h for h in shot["history"])
                  and f"draft take {t['take']} won" in " ".join(shot["history"]))
    assert shot["chosen"] == 4 and stages[-1][2] == winner["seed"]
    assert runway.creates == 4 and report["credits_spent"] == 3 * 27 + 48
    assert report["draft_saving"] == {"all_premium": 144.0, "draft_then_final": 129.0, "saved_percent": 10.4}


def _cli(*argv) -> tuple[int, str]:
    from flows.cli import main
    import contextlib
    import io

    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        try:
            code = main(list(argv))
        except SystemExit as exc:
            code = exc.code
    return code, err.getvalue()


@pytest.mark.parametrize("argv, message", [
    (["--budget-name", "nope"], "unknown budget 'nope'; create it with takeflow budget create nope"),
    (["--budget", "nan"], "--budget: 'nan' is not allowed; give a number of credits, 0 or more"),
    (["--budget", "-3"], "--budget: '-3' is not allowed; give a number of credits, 0 or more"),
    (["--budget", "plenty"], "--budget: 'plenty' is not allowed; give a number of credits, 0 or more"),
])
def test_bad_budget_input_is_one_line_before_any_spend(state, tmp_path, argv, message):
    path = tmp_path / "board.yaml"
    path.write_text(yaml.safe_dump(board("Bad Input")))
    code, err = _cli("produce", str(path), *argv)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("budget, message", [
    (-5, "defaults.budget: should be greater than or equal to 0"),
    ("lots", "defaults.budget: should be a valid number"),
    (".nan", "defaults.budget: is nan, not a finite number"),
])
def test_bad_storyboard_budget_is_one_line(state, tmp_path, budget, message):
    path = tmp_path / "board.yaml"
    path.write_text(yaml.safe_dump(board("Bad Input")).replace("extra_takes: 0", f"extra_takes: 0\n  budget: {budget}"))
    code, err = _cli("estimate", str(path))
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1


def test_a_model_missing_from_the_price_catalogue_is_one_line(state, tmp_path, monkeypatch):
    catalogue = yaml.safe_load(DEFAULT_PATH.read_text())
    catalogue["models"] = [m for m in catalogue["models"] if m["model"] != "gen4.5"]
    own = tmp_path / "catalogue.yaml"
    own.write_text(yaml.safe_dump(catalogue))
    monkeypatch.setenv("TAKEFLOW_CATALOGUE", str(own))
    path = tmp_path / "board.yaml"
    path.write_text(yaml.safe_dump(board("Bad Input")))
    code, err = _cli("produce", str(path))
    assert code == 2 and "'gen4.5' is not a runway model in the catalogue" in err
    assert len(err.strip().splitlines()) == 1


def test_estimate_prints_the_table_and_the_budget(state, tmp_path, capsys):
    state.create_budget("team", 100)
    path = tmp_path / "board.yaml"
    path.write_text(yaml.safe_dump(board("Quoted", duration=4, draft={"model": "kling3.0_standard", "duration": 3})))
    code, err = _cli("estimate", str(path), "--budget-name", "team")
    out = capsys.readouterr().out
    assert code == 3 and "needs 204 credits but budget 'team' has 100 left" in err
    assert out.count(" draft ") == 4 and out.count(" final ") == 2 and "runway/kling3.0_standard" in out


def test_a_cached_rerun_is_refused_before_spend_when_its_remaining_upscale_is_over_an_exhausted_budget(
        runway, state, tmp_path):
    local = board("Upscaled", shots=1, delivery="1080p")
    assert run(local, tmp_path, budget=2 * TAKE).is_completed()  # both takes paid: the budget is spent
    upscale = 20  # 2 s at 1080p on the Magnific upscaler, 10 credits/s in the catalogue
    paid = board("Upscaled", shots=1, delivery="1080p", upscaler="runway/magnific_video_upscaler_creative")
    refused = run(paid, tmp_path, budget=2 * TAKE)
    assert refused.name == "BudgetExceeded" and "nothing was spent" in refused.message
    assert f"needs {upscale} credits ({upscale} of them upscaling) but budget 'project-upscaled' has 0 left" \
        in refused.message
    assert runway.creates == 2 and state.status("project-upscaled").spent == 2 * TAKE  # takes cached, no upscale
    assert run(paid, tmp_path, budget=2 * TAKE + upscale).is_completed()
    assert runway.creates == 3 and state.status("project-upscaled").spent == 2 * TAKE + upscale
    again = run(paid, tmp_path, budget=2 * TAKE + upscale)  # all of it paid: nothing left to refuse
    assert again.is_completed(), again.message
    report = json.loads((tmp_path / "upscaled" / "report.json").read_text())
    assert runway.creates == 3 and report["credits_this_run"] == 0 and report["credits_spent"] == 2 * TAKE + upscale


def paused_run(client, name: str, process: subprocess.Popen, timeout: float = 180):
    """The flow run `name` once it waits paused at the budget gate."""
    import time

    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterName

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        runs = client.read_flow_runs(flow_run_filter=FlowRunFilter(name=FlowRunFilterName(any_=[name])))
        paused = [r for r in runs if r.state is not None and r.state.is_paused()]
        if paused:
            return paused[0]
        time.sleep(0.5)
    raise AssertionError(f"{name} never paused: {process.communicate(timeout=30)}")


@pytest.mark.parametrize("decision", [{"action": "reduce"}, {"action": "approve", "new_limit": 4 * TAKE},
                                      {"action": "cancel"}])
def test_a_run_paused_at_the_gate_resumes_with_the_decision_from_the_ui(runway, state, prefect_server, tmp_path,
                                                                        decision):
    from prefect import get_client
    from prefect.flow_runs import resume_flow_run

    path = tmp_path / "board.yaml"
    path.write_text(yaml.safe_dump(board("Paused")))  # 4 takes: 96 credits against a budget of 48
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PREFECT_API_URL": prefect_server["api_url"],
           "PREFECT_RESULTS_LOCAL_STORAGE_PATH": str(prefect_server["results"])}
    process = subprocess.Popen([sys.executable, "-m", "flows.cli", "produce", str(path), "--budget", str(2 * TAKE),
                                "--policy", "pause", "--out", str(tmp_path / "out")], env=env, cwd=tmp_path,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    with get_client(sync_client=True) as client:
        paused = paused_run(client, "produce-paused", process)
        assert runway.creates == 0  # nothing is sent while the run waits for a decision
        resume_flow_run(paused.id, run_input=decision)
        out, err = process.communicate(timeout=300)
        final = client.read_flow_run(paused.id).state
    spent = state.status("project-paused").spent
    if decision["action"] == "cancel":
        assert final.is_cancelled() and runway.creates == 0 and spent == 0, (out, err)
        assert "cancelled at the budget gate (nothing was spent)" in err
        return
    assert process.returncode == 0 and final.is_completed(), (out, err)
    report = json.loads((tmp_path / "out" / "paused" / "report.json").read_text())
    assert report["credits_spent"] == spent == runway.record()["charged"]
    if decision["action"] == "reduce":  # shrunk to fit what was left, and said so
        assert spent <= 2 * TAKE and report["plan_changes"] and state.status("project-paused").limit == 2 * TAKE
    else:  # approved with the limit raised from the form: the whole plan ran
        assert runway.creates == 4 and spent == 4 * TAKE and state.status("project-paused").limit == 4 * TAKE
        assert report["plan_changes"] == [f"approved at the budget gate with the limit raised to {4 * TAKE}"]


@pytest.mark.parametrize("argv, message", [
    (["budget", "create", "team", "--limit", "nan"], "--limit: nan is not a usable number of credits"),
    (["budget", "create", "team", "--limit", "-10"], "--limit: -10.0 is not a usable number of credits"),
    (["budget", "create", "team", "--limit", "ten"], "--limit: 'ten' is not a number of credits"),
    (["budget", "create", "team", "--limit", "inf"], "--limit: inf is not a usable number of credits"),
    (["budget", "create", "Team Budget", "--limit", "10"], "budget name 'Team Budget': use 1-63 lowercase"),
    (["budget", "create", "team", "--limit", "10", "--period", "yearly"], "period 'yearly': use one of daily"),
    (["budget", "set", "nope", "--limit", "10"], "unknown budget 'nope'; create it with takeflow budget create"),
    (["budget", "set", "existing", "--limit", "NaN"], "--limit: nan is not a usable number of credits"),
    (["budget", "show", "nope"], "unknown budget 'nope'"),
    (["budget", "history", "nope"], "unknown budget 'nope'"),
])
def test_bad_budget_commands_are_one_line_and_change_nothing(state, argv, message):
    state.create_budget("existing", 50)
    code, err = _cli(*argv)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err
    assert [(s.name, s.limit) for s in state.budgets()] == [("existing", 50)]


@pytest.mark.parametrize("options, message", [
    ({"budget": "nan"}, "options.budget:"),
    ({"budget": -1}, "options.budget: should be greater than or equal to 0"),
    ({"budget": "plenty"}, "options.budget: should be a valid number"),
    ({"budget_name": "nope"}, "unknown budget 'nope'; create it with takeflow budget create nope"),
    ({"budget_name": "Not A Name"}, "options.budget_name:"),
])
def test_bad_budget_parameters_of_a_deployment_run_fail_in_one_line_before_spend(runway, state, tmp_path,
                                                                                 options, message):
    from flows.produce import produce

    result = produce(storyboard=board("Bad Parameters"), options={"out_dir": str(tmp_path), **options},
                     return_state=True)
    assert result.is_failed() and result.name == "InvalidInput" and message in result.message, result.message
    assert "\n" not in result.message and "nothing was spent" in result.message
    assert runway.creates == 0 and state.entries() == []
