"""The `animate` flow: a reference image that lands in the inbox becomes a short animated clip.

Started by the deployment trigger on `takeflow.asset.uploaded` (flows/sensor.py), with the
object's key and storage. The image is fetched into the output folder and produced as a one-shot
storyboard with a default brief, through the `produce` flow (so it is cached, budgeted and
reported like any storyboard: the same image twice generates nothing new).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from prefect import flow
from prefect.states import Failed

from blocks.storage import StorageError
from flows.produce import RunOptions, produce
from flows.sensor import inbox_storage, media_kind
from tasks.storyboard import StoryboardError, parse_storyboard, slug

DEFAULT_BRIEF = "the scene in the reference image comes gently alive, slow push in, soft natural light"


@flow(name="animate", flow_run_name="animate-{key}", validate_parameters=False)
def animate(key: str, storage: str = "", brief: str = DEFAULT_BRIEF, duration: float = 4.0, takes: int = 2,
            delivery: Literal["720p", "1080p", "1440p", "4k"] = "1080p", out_dir: str = "out",
            budget: float | None = None, budget_name: str | None = None,
            budget_policy: Literal["stop", "pause", "fit"] | None = None, deliver_to: str | None = None):
    """Animate the image stored under `key` into out_dir/<animate-key>/final.mp4.

    key: the image's key in the storage (as the sensor's event names it).
    storage: storage block holding it, or '' for the local inbox under $TAKEFLOW_HOME.
    brief: what should happen in the shot.
    duration: clip length in seconds.
    takes: takes generated (the best is kept).
    delivery: delivery resolution.
    budget / budget_name / budget_policy: as for produce.
    deliver_to: storage block that also receives the deliverables.
    """
    if media_kind(key) != "image":
        return Failed(name="InvalidInput", message=f"key: {key} is not an image (.jpg, .jpeg, .png or .webp) "
                                                   "(nothing was spent)")
    title = f"animate {key}"[:120]
    folder = Path(out_dir).resolve() / slug(title)
    try:
        image = inbox_storage(storage).get(key, folder / "inbox" / Path(key).name)
        board = parse_storyboard({
            "title": title,
            "defaults": {"takes": takes, "duration": duration, "delivery": delivery},
            "shots": [{"id": "upload", "brief": brief, "reference_image": str(image)}]}, folder)
        options = RunOptions(out_dir=out_dir, budget=budget, budget_name=budget_name, policy=budget_policy,
                             storage=deliver_to)
    except (StorageError, StoryboardError, ValueError) as exc:
        return Failed(name="InvalidInput", message=f"{' '.join(str(exc).split())} (nothing was spent)")
    state = produce(storyboard=board, options=options, return_state=True)
    # the report when it completed; else its state (BudgetExceeded, NoAcceptableTake...) becomes this run's
    return state.result() if state.is_completed() else state
