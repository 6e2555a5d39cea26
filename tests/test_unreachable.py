"""A provider that cannot be reached ends the run at once with one message: before Prefect
starts when the CLI can tell, and without extra takes when it goes away during a run."""

from __future__ import annotations

import socket
import time

from flows.cli import main
from flows.takes import ShotTakes, next_jobs, unreachable_error
from tasks.plan import plan_shot
from tasks.prompts import expand_prompt
from tasks.report import TakeRecord
from tasks.score import Selection
from tasks.storyboard import parse_storyboard
from tests.conftest import EXAMPLES


def dead_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]  # closed again: nothing listens there


def failed_shot(error: str) -> ShotTakes:
    board = parse_storyboard({"title": "T", "defaults": {"takes": 2, "duration": 2},
                              "shots": [{"id": "a", "brief": "a fox trots through snow"}]})
    plan = plan_shot(board, 0, expand_prompt.fn(board.shots[0], "a", "T", 2))
    records = {take: TakeRecord(take=take, seed=seed, model="gen4.5", provider="runway", error=error)
               for take, seed in enumerate(plan.prompts.seeds, 1)}
    return ShotTakes(plan, None, records=records, selection=Selection(
        take=None, numbers=[1, 2], totals=[None, None], reason="no take", quality=[None, None], acceptable=False))


def test_a_shot_whose_provider_cannot_be_reached_gets_no_extra_takes():
    shot = failed_shot("runway: cannot reach http://127.0.0.1:9: ConnectError")
    step = next_jobs(shot, "T", {})
    assert step.jobs == ()
    assert step.shot.history == ("stopped: runway: cannot reach http://127.0.0.1:9: ConnectError; no more takes tried",)
    assert unreachable_error(failed_shot("runway: HTTP 500").records.values()) is None


def test_produce_refuses_hosted_providers_without_keys_or_answer_before_starting(prefect_server, capsys, tmp_path):
    from blocks.registry import provider_class

    board = EXAMPLES / "simulated-providers.yaml"
    for name in ("kling", "runway", "veo"):  # the blocks `takeflow simulate` saves, never filled
        provider_class(name)().save(name, overwrite=True)
    assert main(["produce", str(board), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "key" in err and "takeflow simulate" in err, err

    port = dead_port()  # the blocks saved by a `takeflow simulate` that has since stopped
    settings = {"kling": {"access_key": "a", "secret_key": "s"}, "runway": {"api_key": "k"}, "veo": {"api_key": "k"}}
    for name, keys in settings.items():
        provider_class(name)(base_url=f"http://127.0.0.1:{port}", **keys).save(name, overwrite=True)
    started = time.monotonic()
    assert main(["produce", str(board), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert f"cannot reach http://127.0.0.1:{port}" in err and "takeflow simulate" in err and err.count("\n") == 1
    assert not (tmp_path / "out").exists()
    print(f"refused in {time.monotonic() - started:.2f} s")
    for name in settings:  # leave the session's server without these blocks, as other tests expect
        provider_class(name).delete(name)
