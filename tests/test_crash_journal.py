"""Never paid twice, whatever dies when: the take journal and the store of paid outputs against the
provider simulators, with each crash point reproduced by leaving the journal as a dead run would."""

from __future__ import annotations

import subprocess
import sys
import threading
import time

import httpx
import pytest
import sqlalchemy as sa

from blocks import journal
from blocks.kling import KlingProvider
from blocks.providers import GenerationRequest
from blocks.remote import ProviderError, request_key
from blocks.runway import RunwayProvider
from blocks.verify import decode_check
from simulators.base import Fault
from simulators.kling import KlingSimulator
from simulators.runway import RunwaySimulator
from simulators.serve import client_settings, read_record

pytestmark = pytest.mark.usefixtures("own_takeflow_home")

TAKE = GenerationRequest(prompt="a lighthouse on a cliff at dusk, slow push in", model="gen4.5", seed=7,
                         duration=2, fps=24, aspect_ratio="16:9")
KLING_TAKE = TAKE.model_copy(update={"model": "kling-v2-6", "duration": 5})


@pytest.fixture(scope="module")
def runway_sim():
    with RunwaySimulator(latency=0.3, seed=1) as sim:
        yield sim


@pytest.fixture(scope="module")
def kling_sim():
    with KlingSimulator(latency=0.3, seed=1) as sim:
        yield sim


@pytest.fixture
def runway(runway_sim):
    runway_sim.faults.clear()
    return RunwayProvider(**client_settings("runway", runway_sim), first_poll=0.05, poll_interval=0.2)


@pytest.fixture
def kling(kling_sim):
    kling_sim.faults.clear()
    kling_sim.lose_create_answers = 0
    return KlingProvider(**client_settings("kling", kling_sim), first_poll=0.05, poll_interval=0.2)


def dead_owner() -> str:
    """The journal name of a process that has exited (as a SIGKILLed run leaves it)."""
    code = "from blocks.journal import me; print(me())"
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()


def leave_as_dead_run(key: str, **values) -> None:
    """Make the entry look like one a run killed at that point left behind."""
    with journal._engine().begin() as conn:
        conn.execute(journal.entries.update().where(journal.entries.c.key == key)
                     .values(owner=dead_owner(), **values))


def test_the_intent_is_journalled_before_the_create_is_sent(runway, runway_sim, tmp_path):
    key = runway.work_key(request_key(TAKE))
    seen = []

    def create():
        seen.append(journal.get(key))  # what a SIGKILL at this instant would leave
        return runway.submit(TAKE)

    runway.run_task(request_key(TAKE), create, tmp_path / "take.mp4", lambda state: 0.0)
    assert seen[0].state == "intent" and seen[0].task_id is None
    assert journal.get(key).state == "done" and journal.get(key).task_id in runway_sim.tasks


def test_a_task_journalled_by_a_dead_run_is_resumed_not_created_again(runway, runway_sim, tmp_path):
    key = runway.work_key(request_key(TAKE))
    creates = runway_sim.creates
    task_id = runway.submit(TAKE)  # the create returned, then the run died
    journal.claim(key, runway.name)
    journal.created(key, task_id)
    leave_as_dead_run(key)
    result = runway.generate(TAKE, tmp_path / "take.mp4")
    assert runway_sim.creates - creates == 1 and decode_check(result.path).problem is None
    assert result.credits == runway_sim.record()["tasks"][-1]["credits"] > 0  # the resuming run reports it


def test_an_intent_without_task_id_stops_the_take_as_unknown_outcome_where_the_api_cannot_look_it_up(
        runway, runway_sim, tmp_path):
    key = runway.work_key(request_key(TAKE))
    journal.claim(key, runway.name)
    leave_as_dead_run(key)  # died after journalling the intent: the create may or may not have gone out
    creates = runway_sim.creates
    with pytest.raises(ProviderError) as caught:
        runway.generate(TAKE, tmp_path / "take.mp4")
    assert caught.value.kind == "unknown_outcome" and "python -m blocks.journal forget" in str(caught.value)
    assert runway_sim.creates == creates  # never sent again
    assert journal.forget(key)  # what the user does after checking the dashboard
    runway.generate(TAKE, tmp_path / "take.mp4")
    assert runway_sim.creates == creates + 1


def test_kling_finds_a_create_whose_answer_was_lost_by_its_external_task_id(kling, kling_sim, tmp_path):
    kling_sim.lose_create_answers = 1
    creates = kling_sim.creates
    key = kling.work_key(request_key(KLING_TAKE))
    journal.claim(key, kling.name)
    leave_as_dead_run(key)
    kind, body = kling.build(KLING_TAKE)  # the dead run's create reached Kling; its answer did not
    external = kling.external_ids(body, KLING_TAKE.seed)[0]
    with pytest.raises(httpx.RemoteProtocolError):
        httpx.post(f"{kling_sim.url}/v1/videos/{kind}", json={**body, "external_task_id": external},
                   headers=kling.auth_headers())
    result = kling.generate(KLING_TAKE, tmp_path / "take.mp4")
    assert kling_sim.creates - creates == 1 and decode_check(result.path).problem is None


def test_deleting_the_output_folder_or_using_another_pays_nothing(runway, runway_sim, tmp_path):
    runway.generate(TAKE, tmp_path / "out" / "take.mp4")
    creates = runway_sim.creates
    subprocess.run(["rm", "-rf", str(tmp_path / "out")], check=True)
    again = runway.generate(TAKE, tmp_path / "out" / "take.mp4")
    elsewhere = runway.generate(TAKE, tmp_path / "other" / "take.mp4")
    assert runway_sim.creates == creates and again.credits == elsewhere.credits == 0.0
    assert decode_check(again.path).problem is None and elsewhere.path.read_bytes() == again.path.read_bytes()


def test_two_runs_needing_the_same_take_wait_for_one_create(runway, runway_sim, tmp_path):
    creates, results, errors = runway_sim.creates, [], []

    def run(name: str) -> None:
        try:
            results.append(runway.generate(TAKE.model_copy(update={"seed": 99}), tmp_path / name / "take.mp4"))
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(f"run{i}",)) for i in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors and runway_sim.creates - creates == 1
    assert sorted(r.credits for r in results)[:2] == [0.0, 0.0] and max(r.credits for r in results) > 0


def test_a_download_cut_short_with_a_matching_length_is_fetched_again_not_paid_again(
        runway, runway_sim, tmp_path):
    runway_sim.inject(Fault("cut"))
    creates = runway_sim.creates
    result = runway.generate(TAKE.model_copy(update={"seed": 11}), tmp_path / "take.mp4")
    check = decode_check(result.path)
    assert runway_sim.creates - creates == 1 and check.problem is None and check.decoded == 48
    assert runway_sim.count("download") >= 2 and not runway_sim.faults


def test_a_cut_download_is_what_header_checks_accept(runway_sim, runway, tmp_path):
    runway.generate(TAKE.model_copy(update={"seed": 12}), tmp_path / "whole.mp4")
    half = tmp_path / "half.mp4"
    data = (tmp_path / "whole.mp4").read_bytes()
    half.write_bytes(data[: len(data) // 2])
    from blocks.media import probe
    assert probe(half).width  # a header check alone accepts it: it probes as a video
    assert "frames" in (decode_check(half).problem or "") or "ends early" in (decode_check(half).problem or "")


def test_a_moderation_refusal_the_provider_bills_is_reported_with_its_credits(runway, runway_sim, tmp_path):
    runway_sim.inject(Fault("fail", failure="moderation"))  # Runway: SAFETY.INPUT.*, not refunded
    request = TAKE.model_copy(update={"seed": 13})
    with pytest.raises(ProviderError) as caught:
        runway.generate(request, tmp_path / "take.mp4")
    [task] = [t for t in runway_sim.record()["tasks"] if t["id"] in str(caught.value)]
    assert caught.value.kind == "moderation" and task["status"] == "failed"
    assert caught.value.credits == task["credits"] == runway.estimate_credits(request) > 0
    assert journal.get(runway.work_key(request_key(request))) is None  # the next attempt creates anew


def test_a_failure_the_provider_does_not_bill_reports_no_credits(kling, kling_sim, tmp_path):
    kling_sim.inject(Fault("fail", failure="moderation"))
    with pytest.raises(ProviderError) as caught:
        kling.generate(KLING_TAKE.model_copy(update={"seed": 14}), tmp_path / "take.mp4")
    assert caught.value.kind == "moderation" and caught.value.credits == 0.0
    [task] = [t for t in kling_sim.record()["tasks"] if t["id"] in str(caught.value)]
    assert task["status"] == "failed" and task["credits"] == 0.0


def test_the_simulators_books_are_served_to_users_and_match_the_python_record(runway_sim, kling_sim):
    for sim in (runway_sim, kling_sim):
        served = read_record(sim.url)
        assert served == sim.record() and served["creates"] == len(served["tasks"])
        assert served["charged"] == round(sum(t["credits"] for t in served["tasks"]), 4)


def test_the_journal_survives_in_the_shared_database_not_the_output_folder(own_takeflow_home):
    journal.claim("k" * 40, "runway")
    tables = sa.inspect(journal._engine()).get_table_names()
    assert "take_journal" in tables and (own_takeflow_home / "state.db").is_file()


# ---- the ledger across the same crash points: each provider task is counted once, at its charge ----

def dead_reservation(ledger, key: str, credits: float, task: str | None = None) -> str:
    """A reservation as a SIGKILLed run leaves it: open, its holder gone, maybe naming its task."""
    from blocks.ledger import entries_table

    entry = ledger.reserve("crash", credits, key=key, label="take")
    ledger.abandon(entry)
    with ledger.engine.begin() as db:
        db.execute(entries_table.update().where(entries_table.c.id == entry)
                   .values(owner=dead_owner(), task_id=task))
    return entry


@pytest.fixture
def draw():
    from blocks.ledger import ledger_for
    from tasks.spend import BudgetDraw

    ledger = ledger_for()
    ledger.create_budget("crash", 1000, exist_ok=True)
    return ledger, BudgetDraw(budget="crash", state_url=ledger.url, project="crash")


def pay(draw, provider, request, dest):
    """One take through the ledger, as generate-take pays for it."""
    from tasks.spend import paying, work_key

    ledger, spend = draw
    key = work_key("generate-take", provider=provider, request=request)
    with paying(spend, provider.name, key, provider.estimate_credits(request), "take") as hold:
        return hold.commit(provider.generate(request, dest).credits)


def test_a_run_killed_after_storing_the_output_but_before_the_ledger_commit_is_counted_by_the_rerun(
        runway, runway_sim, draw, tmp_path):
    from tasks.spend import work_key

    ledger, _ = draw
    request = TAKE.model_copy(update={"seed": 21})
    runway.generate(request, tmp_path / "take.mp4")  # the killed run's task, downloaded and stored
    work = journal.get(runway.work_key(request_key(request)))
    dead_reservation(ledger, work_key("generate-take", provider=runway, request=request), 24,
                     runway.task_ref(work.key, work.task_id))
    creates = runway_sim.creates
    assert pay(draw, runway, request, tmp_path / "rerun.mp4") == work.credits == 24
    assert runway_sim.creates == creates and ledger.status("crash").spent == 24
    assert pay(draw, runway, request, tmp_path / "again.mp4") == 0  # reused again: counted once
    assert ledger.status("crash").spent == 24 and ledger.status("crash").reserved == 0


def test_an_unknown_create_is_held_once_however_often_the_take_is_asked_for(
        runway, runway_sim, draw, tmp_path):
    ledger, _ = draw
    request = TAKE.model_copy(update={"seed": 22})
    key = runway.work_key(request_key(request))
    journal.claim(key, runway.name)
    leave_as_dead_run(key)  # the intent of a run killed while its create was in flight
    creates, before = runway_sim.creates, ledger.status("crash")
    for attempt in range(2):
        with pytest.raises(ProviderError, match="unknown_outcome|cannot find a task"):
            pay(draw, runway, request, tmp_path / "take.mp4")
    after = ledger.status("crash")  # held on the budget until Runway's usage record decides it
    assert after.reserved - before.reserved == runway.estimate_credits(request) == 24 and after.spent == before.spent
    assert runway_sim.creates == creates
    ref = runway.task_ref(key, None, journal.get(key).claimed_at)
    unknown = [e for e in ledger.entries("crash") if e.task_id == ref]
    assert [e.status for e in unknown] == ["held", "released"]


def test_a_restart_settles_a_dead_runs_reservation_by_its_tasks_status(
        runway, runway_sim, kling, kling_sim, draw, tmp_path):
    from tasks.spend import reconcile_orphans

    ledger, _ = draw
    request = TAKE.model_copy(update={"seed": 23})
    succeeded = runway.submit(request)  # the run died while polling these two
    kling_sim.inject(Fault("fail", failure="moderation"))
    failed = kling.submit(KLING_TAKE.model_copy(update={"seed": 23}))
    key = runway.work_key(request_key(request))
    for provider, work, task in ((runway, key, succeeded), (kling, "kling-work", failed)):
        dead_reservation(ledger, f"{provider.name}-{task}", 40, provider.task_ref(work, task))
    journal.claim(key, runway.name)
    journal.created(key, succeeded)
    leave_as_dead_run(key)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and (runway.poll(succeeded).status, kling.poll(failed).status) != (
            "succeeded", "failed"):
        time.sleep(0.2)  # both tasks end at the providers while nobody watches
    spent = ledger.status("crash").spent
    settled = reconcile_orphans(ledger, "crash", {"runway": runway, "kling": kling})
    assert len(settled) == 2 and ledger.orphans("crash") == []
    charges = {t["id"]: t["credits"] for sim in (runway_sim, kling_sim) for t in sim.record()["tasks"]}
    assert charges[failed.rsplit("/", 1)[-1]] == 0 and charges[succeeded] == 24
    assert ledger.status("crash").spent - spent == 24  # the failed Kling task released, Runway's at its cost
    assert pay(draw, runway, request, tmp_path / "take.mp4") == 0  # the rerun resumes it: not counted again
    assert ledger.status("crash").spent - spent == 24 and ledger.status("crash").reserved == 0


def test_a_held_create_is_withdrawn_once_a_lookup_shows_what_became_of_the_create(
        kling, kling_sim, draw, tmp_path):
    ledger, _ = draw
    request = KLING_TAKE.model_copy(update={"seed": 24})
    kling_sim.inject(Fault("drop", on="create", times=kling.max_retries + 1))  # every create's answer lost
    before, creates = ledger.status("crash"), kling_sim.creates
    with pytest.raises(ProviderError, match="connection broke"):
        pay(draw, kling, request, tmp_path / "take.mp4")
    held = ledger.status("crash")  # held meanwhile: reserved on the budget, not spent
    assert held.reserved - before.reserved == kling.estimate_credits(request) and held.spent == before.spent
    assert pay(draw, kling, request, tmp_path / "take.mp4") > 0  # the lookup: Kling never made it; made now
    charged = kling_sim.record()["tasks"][-1]["credits"]
    after = ledger.status("crash")
    assert kling_sim.creates == creates + 1 and after.spent - before.spent == charged
    assert after.reserved == before.reserved
