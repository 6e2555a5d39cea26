"""The `produce-file` flow: produce the storyboard at a location (a path on the worker, or an
s3:// URI read through a storage block), with a budget and a budget policy. It is the flow the
Prefect UI's run form and `prefect deployment run` start with a few typed fields, where the
`produce` flow itself wants the whole storyboard as its parameter.
"""

from __future__ import annotations

from typing import Literal

from prefect import flow
from prefect.states import Failed

from flows.produce import RunOptions, produce
from tasks.publish import load_storyboard_at
from tasks.storyboard import StoryboardError


def _run_name() -> str:
    from prefect.runtime import flow_run

    return f"produce-file-{str(flow_run.parameters['storyboard']).rsplit('/', 1)[-1]}"


@flow(name="produce-file", flow_run_name=_run_name, validate_parameters=False)
def produce_file(storyboard: str, budget: float | None = None, budget_policy: Literal["stop", "pause", "fit"] | None = None,
                 budget_name: str | None = None, takes: int | None = None, out_dir: str = "out",
                 storage: str | None = None):
    """Produce the storyboard file at `storyboard` into `out_dir/<project>/`.

    storyboard: path on the worker (relative to its working folder), or an s3:// URI.
    budget: credits this storyboard may spend over all its runs; overrides the storyboard's.
    budget_policy: over the budget: stop, pause for a decision in the UI, or fit the plan.
    budget_name: named ledger budget to draw on (`takeflow budget create`).
    takes: takes per shot, overriding the storyboard.
    out_dir: output folder on the worker.
    storage: storage block that reads s3:// inputs and receives the deliverables.
    """
    try:
        options = RunOptions(out_dir=out_dir, takes=takes, budget=budget, budget_name=budget_name,
                             policy=budget_policy, storage=storage)
        board = load_storyboard_at(str(storyboard), storage, "set storage to a storage block that reads it")
    except (StoryboardError, ValueError) as exc:  # pydantic's ValidationError is a ValueError
        return Failed(name="InvalidInput", message=f"{' '.join(str(exc).split())} (nothing was spent)")
    state = produce(storyboard=board, options=options, return_state=True)
    # the report when it completed; else its state (BudgetExceeded, NoAcceptableTake...) becomes this run's
    return state.result() if state.is_completed() else state
