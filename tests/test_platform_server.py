"""`takeflow server start|status|stop` for real: a background `prefect server start` that a later
`takeflow produce` (with no PREFECT_API_URL) runs against, so the run stays on the server; stop
ends the server's whole process group."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import yaml

from tests.prefect_server import free_port

pytestmark = pytest.mark.platform
REPO = Path(__file__).resolve().parents[1]


def _takeflow(env: dict, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "flows.cli", *args], cwd=env["TAKEFLOW_HOME"], env=env,
                          capture_output=True, text=True, timeout=timeout)


def _group_members(pgid: int) -> list[int]:
    """Live processes of a process group (zombies waiting for init to reap them are not alive)."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            members.append(int(stat.parent.name))
    return members


def test_produce_runs_on_the_server_takeflow_keeps_running(tmp_path):
    home = tmp_path / "takeflow-home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "TAKEFLOW_"))}
    env.update(TAKEFLOW_HOME=str(home), PREFECT_HOME=str(tmp_path / "prefect-home"), PYTHONPATH=str(REPO),
               PREFECT_RESULTS_LOCAL_STORAGE_PATH=str(tmp_path / "results"))
    port = free_port()
    started = _takeflow(env, "server", "start", "--port", str(port))
    assert started.returncode == 0, started.stderr + started.stdout
    assert f"UI http://127.0.0.1:{port}" in started.stdout
    pid = int((home / "server" / "prefect.pid").read_text())
    assert _group_members(pid)
    try:
        status = _takeflow(env, "server", "status")
        assert status.returncode == 0 and f"running (pid {pid}), answering" in status.stdout
        again = _takeflow(env, "server", "start", "--port", str(port))
        assert again.returncode == 0 and "already running" in again.stdout

        board = {"title": "On the server", "defaults": {"takes": 1, "duration": 1, "delivery": "720p",
                                                        "quality_bar": 0, "extra_takes": 0},
                 "shots": [{"brief": "a red kite over a meadow, static shot, soft daylight"}]}
        (home / "board.yaml").write_text(yaml.safe_dump(board))
        produced = _takeflow(env, "produce", "board.yaml", "--out", str(tmp_path / "out"))
        assert produced.returncode == 0, produced.stderr
        assert "note:" not in produced.stderr  # no temporary server this time
        runs = httpx.post(f"http://127.0.0.1:{port}/api/flow_runs/filter", json={}, timeout=10).json()
        assert [(r["name"], r["state_type"]) for r in runs] == [("produce-on-the-server", "COMPLETED")]
    finally:
        stopped = _takeflow(env, "server", "stop")
    assert stopped.returncode == 0 and f"pid {pid}" in stopped.stdout
    assert _group_members(pid) == []
    status = _takeflow(env, "server", "status")
    assert status.returncode == 1 and status.stdout.startswith("not running")
