"""Shared fixtures: a real Prefect test server for flow tests, isolated result storage."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


@pytest.fixture(scope="session", autouse=True)
def takeflow_home(tmp_path_factory):
    """Shared takeflow state (ledger, journal, paid outputs) in a folder of this test session,
    never the user's ~/.takeflow. Tests that need a state of their own set TAKEFLOW_HOME again."""
    home = tmp_path_factory.mktemp("takeflow-home")
    os.environ["TAKEFLOW_HOME"] = str(home)
    os.environ.pop("TAKEFLOW_STATE_URL", None)
    yield home


@pytest.fixture
def own_takeflow_home(tmp_path_factory, monkeypatch):
    """A journal and output store of this test's own: for tests that send the same request to a
    provider twice and expect two creates (with shared state the second reuses the paid output)."""
    home = tmp_path_factory.mktemp("takeflow-home")
    monkeypatch.setenv("TAKEFLOW_HOME", str(home))
    return home


@pytest.fixture(scope="session")
def prefect_server(tmp_path_factory):
    """A Prefect API server for this test session, with a small saved previz block.

    The block makes every previz take 256x144 so flow tests stay quick; it is loaded by name
    exactly as a team's saved provider configuration would be.
    """
    from prefect.settings import (PREFECT_API_URL, PREFECT_FLOWS_HEARTBEAT_FREQUENCY,
                                  PREFECT_RESULTS_LOCAL_STORAGE_PATH, temporary_settings)
    from prefect.testing.utilities import prefect_test_harness

    from blocks.previz import PrevizProvider

    results = tmp_path_factory.mktemp("prefect-results")
    with prefect_test_harness(server_startup_timeout=120), temporary_settings({
            PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None, PREFECT_RESULTS_LOCAL_STORAGE_PATH: str(results)}):
        PrevizProvider(render_height=144).save("previz", overwrite=True)
        yield {"api_url": PREFECT_API_URL.value(), "results": results}
