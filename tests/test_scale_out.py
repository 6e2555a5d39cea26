"""Scale-out: the produce flow's CPU-heavy tasks on a real Dask cluster (worker processes started
here), hosted-provider calls kept in threads, caching intact across runs; and two process workers
of a `prefect server start` backed by PostgreSQL producing two storyboards at once on one budget,
sharing the ledger (also on PostgreSQL) and the result/cache storage."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import cloudpickle
import pytest

from blocks.ledger import Ledger
from blocks.previz import PrevizProvider
from flows.runners import DASK_ADDRESS_ENV, TakeflowTaskRunner, dask_runner, runs_on_cpu
from tasks.storyboard import parse_storyboard
from tests.postgres_server import postgres_url  # noqa: F401  (fixture)
from tests.prefect_pg_server import create_database, prefect_server, start_worker, stop

ROOT = Path(__file__).resolve().parents[1]


def board(title: str, takes: int = 2) -> dict:
    return {"title": title,
            "defaults": {"duration": 1, "fps": 12, "takes": takes, "delivery": "720p", "quality_bar": 0.0,
                         "extra_takes": 0},
            "shots": [{"id": "fox", "brief": "a red fox trots through snow; slow pan left; soft blue dusk light"},
                      {"id": "oak", "brief": "a lone oak on a hill at dusk; slow dolly in; warm backlight"}]}


@pytest.fixture(scope="module")
def dask_cluster():
    """One single-threaded worker process, as `dask worker --nthreads 1` would run."""
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        with Client(cluster, set_as_default=False) as client:  # the runner must find it by its address
            yield cluster.scheduler_address, client


def dask_task_names(client) -> set[str]:
    """Names of the tasks the cluster's scheduler has handed to its workers."""
    return set(client.run_on_scheduler(lambda dask_scheduler: list(dask_scheduler.task_prefixes)))


def test_cpu_heavy_tasks_run_on_dask_and_stay_cached(prefect_server, dask_cluster, tmp_path, monkeypatch):
    from flows.produce import RunOptions, produce

    address, client = dask_cluster
    monkeypatch.setenv(DASK_ADDRESS_ENV, address)
    storyboard = parse_storyboard(board("Dask Reel"))
    first = produce(storyboard=storyboard, options=RunOptions(out_dir=str(tmp_path / "a")), return_state=True)
    assert first.is_completed(), first.message
    report = first.result()
    assert report.generated == 4 and report.cached == 0
    ran = dask_task_names(client)
    assert {"generate_take", "score_take", "assemble_final", "make_poster", "make_contact_sheet_task"} <= ran, ran
    assert (tmp_path / "a" / "dask-reel" / "final.mp4").is_file()
    # the same work in another folder is served from the result/cache storage the workers wrote
    again = produce(storyboard=storyboard, options=RunOptions(out_dir=str(tmp_path / "b")), return_state=True)
    assert again.is_completed(), again.message
    assert again.result().cached == 4 and again.result().generated == 0


def test_a_task_on_a_worker_gets_the_flows_settings_and_opens_no_client_of_its_own(prefect_server, dask_cluster):
    """prefect-dask rebuilds the flow's runner around every task a worker runs; that one connected
    to the cluster again (a client, a check of every worker, the plugin installed anew) per task."""
    from prefect import flow, task
    from prefect.settings import PREFECT_API_URL

    address, client = dask_cluster

    @task(name="score-take")  # a CPU-heavy task's name: the runner sends it to Dask
    def where_it_runs() -> tuple[str, str | None, bool]:
        import distributed

        try:
            distributed.default_client()
        except ValueError:
            return distributed.get_worker().address, PREFECT_API_URL.value(), False
        return distributed.get_worker().address, PREFECT_API_URL.value(), True

    @flow(task_runner=TakeflowTaskRunner(1, dask_address=address))
    def twice() -> list:
        return [where_it_runs.submit().result() for _ in range(2)]

    for worker, api_url, opened_a_client in twice():
        assert worker in client.scheduler_info()["workers"]
        assert api_url == PREFECT_API_URL.value() and not opened_a_client


def test_a_hosted_provider_is_polled_in_threads_while_its_takes_are_scored_on_dask(prefect_server, tmp_path,
                                                                                   monkeypatch):
    """The Runway adapter (an httpx client in the block) never leaves the flow's process."""
    from distributed import Client, LocalCluster

    from blocks.registry import provider_class
    from flows.produce import RunOptions, produce
    from simulators.serve import client_settings, start_simulator

    sim = start_simulator("runway", latency=0.2)
    provider_class("runway")(**client_settings("runway", sim), first_poll=0.05, poll_interval=0.2).save(
        "runway", overwrite=True)
    data = board("Hosted Dask Reel", takes=1)
    data["defaults"].update(provider="runway", model="gen4.5", duration=2)
    data["shots"] = data["shots"][:1]
    try:
        with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, \
                Client(cluster, set_as_default=False) as client:
            monkeypatch.setenv(DASK_ADDRESS_ENV, cluster.scheduler_address)
            state = produce(storyboard=parse_storyboard(data), options=RunOptions(out_dir=str(tmp_path)),
                            return_state=True)
            ran = dask_task_names(client)
    finally:
        sim.stop()
        provider_class("runway").delete("runway")
    assert state.is_completed(), state.message
    assert sim.creates == 1 and "score_take" in ran and "generate_take" not in ran, ran


def test_a_run_on_its_temporary_server_sends_that_server_to_the_workers(dask_cluster, tmp_path):
    """Without PREFECT_API_URL the CLI's run has a temporary server; a worker told nothing would
    start its own, away from the run's task states and provider limits."""
    import subprocess
    import sys

    import yaml

    address, client = dask_cluster
    (tmp_path / "board.yaml").write_text(yaml.safe_dump(board("Embedded Dask Reel", takes=1)))
    env = {**os.environ, DASK_ADDRESS_ENV: address, "PYTHONPATH": str(ROOT)}
    env.pop("PREFECT_API_URL", None)
    done = subprocess.run([sys.executable, "-m", "flows.cli", "produce", "board.yaml", "--out", "out"], env=env,
                          cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert (tmp_path / "out" / "embedded-dask-reel" / "final.mp4").is_file()

    def servers_started(dask_worker):
        from prefect.server.api.server import SubprocessASGIServer
        return [s.running for s in SubprocessASGIServer._instances.values()]
    assert not any(any(started) for started in client.run(servers_started).values())


def test_hosted_provider_calls_stay_in_threads_and_local_work_goes_to_the_cluster():
    from blocks.registry import provider_class

    hosted = provider_class("runway")(api_key="key")
    assert not runs_on_cpu("generate-take", {"provider": hosted})
    assert runs_on_cpu("generate-take", {"provider": PrevizProvider()})
    assert runs_on_cpu("score-take", {}) and runs_on_cpu("assemble-final", {})
    assert not runs_on_cpu("publish", {})


def test_what_a_dask_worker_receives_and_returns_pickles():
    """Everything sent to a worker crosses a process boundary by cloudpickle."""
    from pathlib import Path

    from blocks.providers import GenerationRequest, GenerationResult
    from tasks.generate import generate_take
    from tasks.metrics import Expectation, TakeMetrics
    from tasks.score import score_take
    from tasks.spend import BudgetDraw

    request = GenerationRequest(prompt="a fox", model="motion-preview", duration=1, fps=12, seed=3, aspect_ratio="16:9")
    sent = [generate_take, score_take, PrevizProvider(credits_per_second=1.5), request, Path("/tmp/take.mp4"),
            BudgetDraw(budget="shared", run_id="r"), Expectation(width=256, height=144, fps=12, duration=1),
            GenerationResult(path=Path("/tmp/take.mp4"), provider="previz", model="motion-preview", credits=1.5,
                             seconds=0.1),
            TakeMetrics(passed=True, hard_fails=[], metrics={"sharpness": 0.5}, frames=12)]
    back = cloudpickle.loads(cloudpickle.dumps(sent))
    assert back[2:] == sent[2:] and back[0].name == "generate-take" and back[1].name == "score-take"


@pytest.mark.parametrize("address, message", [
    ("local:0", "TAKEFLOW_DASK_ADDRESS=local:0: the worker count after 'local:' must be a whole number"),
    ("scheduler", "TAKEFLOW_DASK_ADDRESS=scheduler: expected a scheduler address such as tcp://host:8786"),
])
def test_a_malformed_address_is_one_line_naming_the_setting(address, message):
    with pytest.raises(ValueError, match=message.replace(".", r"\.").replace("+", r"\+")):
        dask_runner(address)


def test_a_worker_with_another_ledger_is_refused_before_any_work(dask_cluster, monkeypatch):
    address, _ = dask_cluster
    monkeypatch.setenv("TAKEFLOW_STATE_URL", "sqlite:////tmp/not-the-workers-ledger.db")
    with pytest.raises(RuntimeError, match="has a different TAKEFLOW_STATE_URL; start the workers with "
                                           "TAKEFLOW_STATE_URL set to the flow's") as caught:
        with TakeflowTaskRunner(dask_address=address):
            pass
    assert "not-the-workers-ledger" not in str(caught.value)  # a state URL may carry a password


def slug_of(title: str) -> str:
    return title.lower().replace(" ", "-")


def wait_final(client, run_ids, timeout: float = 300) -> list:
    deadline = time.monotonic() + timeout
    while True:
        runs = [client.read_flow_run(run_id) for run_id in run_ids]
        if all(run.state and run.state.is_final() for run in runs):
            return runs
        assert time.monotonic() < deadline, [(run.name, run.state_name) for run in runs]
        time.sleep(1)


def test_two_workers_on_a_postgres_server_produce_two_storyboards_on_one_budget(postgres_url, tmp_path):  # noqa: F811
    from prefect import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.deployments import run_deployment
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from flows.produce import produce

    state_url = create_database(postgres_url, "takeflow_scale_out").replace("+asyncpg", "+psycopg")
    ledger = Ledger(state_url)
    ledger.create_budget("shared", 8)  # each storyboard: 2 shots x 2 takes x 1 credit; exactly both fit
    with prefect_server(create_database(postgres_url, "prefect_scale_out"), tmp_path / "server") as api, \
            temporary_settings({PREFECT_API_URL: api}), get_client(sync_client=True) as client:
        PrevizProvider(render_height=144, credits_per_second=1.0).save("previz", overwrite=True)
        client.create_work_pool(WorkPoolCreate(name="render", type="process"))
        produce.from_source(str(ROOT), "flows/produce.py:produce").deploy(
            "scale-out", work_pool_name="render", print_next_steps=False)
        env = {**os.environ, "PREFECT_API_URL": api, "PYTHONPATH": str(ROOT), "TAKEFLOW_STATE_URL": state_url,
               "TAKEFLOW_HOME": str(tmp_path / "home"), "PREFECT_WORKER_QUERY_SECONDS": "1",
               "PREFECT_RESULTS_LOCAL_STORAGE_PATH": str(tmp_path / "results")}  # shared by both workers
        env.pop(DASK_ADDRESS_ENV, None)
        workers = [start_worker("render", f"worker-{n}", env, tmp_path / f"worker-{n}.log") for n in (1, 2)]
        try:
            while len([w for w in client.read_workers_for_work_pool("render") if w.status == "ONLINE"]) < 2:
                assert all(w.poll() is None for w in workers), (tmp_path / "worker-1.log").read_text()
                time.sleep(0.5)
            out = tmp_path / "out"
            started = [run_deployment("produce/scale-out", timeout=0, parameters={
                "storyboard": parse_storyboard(board(title)).model_dump(mode="json"),
                "options": {"out_dir": str(out), "budget_name": "shared"}})
                for title in ("East Reel", "West Reel", "North Reel")]
            runs = wait_final(client, [run.id for run in started])
            # the result/cache storage is shared: a completed storyboard again, on the worker that did
            # not produce it, is served from the cache and pays nothing
            done = next(run for run in runs if run.state.name == "Completed")
            title = next(t for t in ("East Reel", "West Reel", "North Reel") if done.name.endswith(slug_of(t)))
            ran_it = next(n for n in (1, 2) if str(done.id) in (tmp_path / f"worker-{n}.log").read_text())
            stop(workers[ran_it - 1])
            rerun, = wait_final(client, [run_deployment("produce/scale-out", timeout=0, parameters={
                "storyboard": parse_storyboard(board(title)).model_dump(mode="json"),
                "options": {"out_dir": str(tmp_path / "again"), "budget_name": "shared"}}).id])
        finally:
            for worker in workers:
                stop(worker)
    # two runs fit the budget; the third starts when a worker is free and finds it spent or held
    assert sorted(run.state.name for run in runs) == ["BudgetExceeded", "Completed", "Completed"], \
        [run.state.message for run in runs]
    refused = next(run for run in runs if run.state.name == "BudgetExceeded")
    assert "nothing was spent" in refused.state.message
    first, second = [run for run in runs if run is not refused]
    # each worker runs one flow at a time (--limit 1): the two productions ran on both workers at once
    assert first.start_time < second.end_time and second.start_time < first.end_time
    status = ledger.status("shared")
    assert status.spent == 8 and status.reserved == 0
    entries = ledger.entries("shared")
    assert sorted(e.credits for e in entries) == [1.0] * 8
    assert {e.run_id for e in entries} == {str(first.id), str(second.id)}
    assert rerun.state.name == "Completed", rerun.state.message
    again = json.loads((tmp_path / "again" / slug_of(title) / "report.json").read_text())
    assert (again["generated"], again["cached"], again["credits_this_run"]) == (0, 4, 0)
    for slug in (first.name.removeprefix("produce-"), second.name.removeprefix("produce-")):  # what each run reports paying for is what it produced
        report = json.loads((out / slug / "report.json").read_text())
        takes = [t for shot in report["shots"] for t in shot["takes"] if t["file"] and not t["from_cache"]]
        assert report["credits_this_run"] == sum(t["credits"] for t in takes) == 4
        assert all((out / slug / t["file"]).is_file() for t in takes) and (out / slug / "final.mp4").is_file()


def test_a_default_client_of_another_cluster_is_refused_not_silently_used(dask_cluster):
    from distributed import Client, LocalCluster

    address, _ = dask_cluster
    with LocalCluster(n_workers=0, processes=False, dashboard_address=":0") as other, Client(other):
        with pytest.raises(RuntimeError, match=f"TAKEFLOW_DASK_ADDRESS={address}, but this process has a "
                                               "default Dask client of"):
            with TakeflowTaskRunner(dask_address=address):
                pass


def test_pinned_workers_claim_distinct_cores_until_none_is_left(monkeypatch, tmp_path):
    import tempfile

    from flows.dask_worker import claim_core

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # the host's lock folder, of this test only
    first, second = claim_core({0, 1}), claim_core({0, 1})
    assert {first[1], second[1]} == {0, 1} and claim_core({0, 1}) is None
    os.close(first[0])  # a worker that ends gives its core back
    again = claim_core({0, 1})
    assert again[1] == first[1]
    for fd in (second[0], again[0]):
        os.close(fd)


def test_workers_keep_opencv_to_one_thread_and_pinned_to_one_core(dask_cluster):
    from flows.dask_worker import OneCoreWorker

    _, client = dask_cluster

    def threads_and_cores():
        import cv2
        return cv2.getNumThreads(), len(os.sched_getaffinity(0)), os.environ["OPENBLAS_NUM_THREADS"]

    try:
        client.register_plugin(OneCoreWorker(pin=True), name=OneCoreWorker.name)
        (pinned,) = client.run(threads_and_cores).values()
        client.register_plugin(OneCoreWorker(pin=False), name=OneCoreWorker.name)  # the old one's teardown unpins
        (unpinned,) = client.run(threads_and_cores).values()
    finally:
        client.unregister_worker_plugin(OneCoreWorker.name)
    assert pinned == (1, 1, "1")
    assert unpinned == (1, len(os.sched_getaffinity(0)), "1")
