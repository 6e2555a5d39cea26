"""Scale-out: the produce flow's CPU-heavy tasks on a real Dask cluster (worker processes started
here), hosted-provider calls kept in threads, caching intact across runs."""

from __future__ import annotations

import cloudpickle
import pytest

pytest.importorskip("prefect_dask")

from blocks.previz import PrevizProvider  # noqa: E402
from flows.runners import DASK_ADDRESS_ENV, TakeflowTaskRunner, dask_runner, runs_on_cpu  # noqa: E402
from tasks.storyboard import parse_storyboard  # noqa: E402


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
        with Client(cluster) as client:
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
    assert {"generate_take", "score_take"} <= ran, ran  # previz rendering and scoring
    assert (tmp_path / "a" / "dask-reel" / "final.mp4").is_file()
    # the same work in another folder is served from the result/cache storage the workers wrote
    again = produce(storyboard=storyboard, options=RunOptions(out_dir=str(tmp_path / "b")), return_state=True)
    assert again.is_completed(), again.message
    assert again.result().cached == 4 and again.result().generated == 0


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
