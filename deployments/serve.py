"""Serve the produce flow as a deployment, so runs can be started from the Prefect UI (with a
form built from the storyboard's described fields), from schedules and from events.

Run: python -m deployments.serve   (with PREFECT_API_URL pointing at `prefect server start`)
"""

from __future__ import annotations

from prefect import serve

from flows.produce import produce


def produce_deployment():
    """The `produce/storyboard` deployment: one storyboard per run, at most two runs at once."""
    return produce.to_deployment(
        name="storyboard", description="Turn a storyboard into a finished, upscaled video.",
        tags=["takeflow"], concurrency_limit=2)


if __name__ == "__main__":
    serve(produce_deployment())
