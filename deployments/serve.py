"""Serve the produce flow as a deployment, so runs can be started from the Prefect UI (with a
form built from the storyboard's described fields), from schedules and from events.

Run: python -m deployments.serve   (with PREFECT_API_URL pointing at `prefect server start`)

A storyboard's relative input paths mean nothing to a worker in another folder, so runs are
best started with `run_parameters`, which reads the storyboard where it lies and hands the run
absolute paths (or the https / s3:// URIs it names). Relative paths that still reach a run are
read from `options.inputs_dir`, else from the folder the deployment is served from.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import serve

from flows.produce import RunOptions, produce
from tasks.storyboard import load_storyboard


def produce_deployment():
    """The `produce/storyboard` deployment: one storyboard per run, at most two runs at once."""
    return produce.to_deployment(
        name="storyboard", description="Turn a storyboard into a finished, upscaled video.",
        tags=["takeflow"], concurrency_limit=2)


def run_parameters(storyboard_file: str | Path, **options: Any) -> dict[str, Any]:
    """Parameters for a `produce/storyboard` run of a storyboard file: validated here (raises
    StoryboardError), with every input resolved to an absolute path or a URI.

    Example:
        from prefect.deployments import run_deployment
        run_deployment("produce/storyboard", parameters=run_parameters("board.yaml", out_dir="/srv/out"))
    """
    storyboard = load_storyboard(storyboard_file)
    return {"storyboard": storyboard.model_dump(mode="json"),
            "options": RunOptions(**options).model_dump(mode="json")}


if __name__ == "__main__":
    serve(produce_deployment())
