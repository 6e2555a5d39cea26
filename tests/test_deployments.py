"""The produce deployment registers on a Prefect server with a described parameter form."""

from __future__ import annotations

from deployments.serve import produce_deployment


def test_produce_deployment_registers_with_a_described_form(prefect_server):
    from prefect import get_client

    deployment_id = produce_deployment().apply()
    with get_client(sync_client=True) as client:
        deployment = client.read_deployment(deployment_id)
    schema = deployment.parameter_openapi_schema
    assert schema["required"] == ["storyboard"]
    storyboard = schema["definitions"]["Storyboard"]["properties"]
    assert {"title", "defaults", "shots"} <= set(storyboard)
    shot = schema["definitions"]["Shot"]["properties"]
    assert all(field.get("description") for field in shot.values())


def _serve_elsewhere(folder, api_url):
    """`python -m deployments.serve` as a team would run it, from a folder of its own."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    folder.mkdir()
    env = {**os.environ, "PREFECT_API_URL": api_url, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    return subprocess.Popen([sys.executable, "-m", "deployments.serve"], cwd=folder, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _wait_for_deployment():
    import time

    from prefect import get_client

    with get_client(sync_client=True) as client:
        for _ in range(240):  # served deployments register as the serve process starts
            try:
                deployment = client.read_deployment_by_name("produce/storyboard")
                if deployment.parameter_openapi_schema["properties"]["options"]:
                    return
            except Exception:
                pass
            time.sleep(0.5)


def test_a_served_deployment_runs_a_storyboard_with_relative_inputs(prefect_server, tmp_path):
    """The storyboard lies in one folder with a relative reference image; the deployment is
    served from another. Submitted with run_parameters, the run reads its inputs where they lie;
    a raw relative path that reaches the worker fails at once, in one line saying why."""
    import shutil

    import yaml
    from prefect.deployments import run_deployment

    from deployments.serve import run_parameters
    from tests.conftest import EXAMPLES

    board_dir = tmp_path / "boards"
    (board_dir / "refs").mkdir(parents=True)
    shutil.copy(EXAMPLES / "references" / "kite-meadow.jpg", board_dir / "refs" / "kite.jpg")
    board = {"title": "Served elsewhere", "defaults": {"takes": 1, "duration": 1, "delivery": "720p",
                                                       "quality_bar": 0, "extra_takes": 0},
             "shots": [{"brief": "a red kite over a meadow, static shot, soft daylight",
                        "reference_image": "refs/kite.jpg"}]}
    (board_dir / "board.yaml").write_text(yaml.safe_dump(board))
    server = _serve_elsewhere(tmp_path / "worker", prefect_server["api_url"])
    try:
        _wait_for_deployment()
        out = tmp_path / "out"
        run = run_deployment("produce/storyboard", timeout=600,
                             parameters=run_parameters(board_dir / "board.yaml", out_dir=str(out)))
        assert run.state.is_completed(), run.state.message
        assert (out / "served-elsewhere" / "final.mp4").is_file()

        raw = run_deployment("produce/storyboard", timeout=300,
                             parameters={"storyboard": board, "options": {"out_dir": str(out)}})
        message = raw.state.message or ""
        assert raw.state.is_failed() and raw.state.name == "InvalidInput", message
        assert "storyboard.shots[0].reference_image: kite.jpg: no such file" in message
        assert "options.inputs_dir" in message and "\n" not in message
    finally:
        server.terminate()
        server.wait(timeout=60)
