"""takeflow as a Prefect project, against a real `prefect server start` subprocess: the README's
commands (work pool, `prefect deploy --all`, a process worker) register every deployment with its
schedule and trigger; the scheduler creates sensor runs that the worker completes; a file dropped
into the inbox becomes one sensor event and, through the trigger, one completed animate run."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from flows.server import stop_group
from tests.conftest import EXAMPLES
from tests.prefect_server import prefect_server

pytestmark = pytest.mark.platform
REPO = Path(__file__).resolve().parents[1]


def _prefect(env: dict, *args: str) -> str:
    done = subprocess.run([sys.executable, "-m", "prefect", *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, f"prefect {' '.join(args)}: {done.stdout[-2000:]}{done.stderr[-2000:]}"
    return done.stdout


@pytest.fixture(scope="module")
def platform(tmp_path_factory):
    """Server, work pool, deployments from deployments/prefect.yaml, and one process worker, all
    as the README has a user start them; the takeflow state and inbox under a home of the test's."""
    from prefect import get_client
    from prefect.client.schemas.actions import DeploymentUpdate
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from blocks.previz import PrevizProvider

    root = tmp_path_factory.mktemp("platform")
    with prefect_server(root) as server:
        env = {**server.env, "PYTHONPATH": str(REPO), "TAKEFLOW_HOME": str(root / "takeflow-home"),
               "PREFECT_RESULTS_LOCAL_STORAGE_PATH": str(root / "results"),
               "PREFECT_WORKER_QUERY_SECONDS": "1"}  # the worker polls each second, not each 10 s
        env.pop("TAKEFLOW_STATE_URL", None)
        _prefect(env, "work-pool", "create", "takeflow", "--type", "process")
        deploy_output = _prefect(env, "--no-prompt", "deploy", "--all", "--prefect-file", "deployments/prefect.yaml")
        with temporary_settings({PREFECT_API_URL: server.api_url}):
            PrevizProvider(render_height=144).save("previz", overwrite=True)  # quick takes, saved as a team would
            with get_client(sync_client=True) as client:
                animate = client.read_deployment_by_name("animate/on-upload")
                # As a user edits the deployment in the UI: a short clip for this test.
                client.update_deployment(animate.id, DeploymentUpdate(parameters={
                    "takes": 1, "duration": 1, "delivery": "720p", "out_dir": str(root / "out")}))
            log = open(root / "worker.log", "wb")
            worker = subprocess.Popen([sys.executable, "-m", "prefect", "worker", "start", "--pool", "takeflow"],
                                      cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT,
                                      start_new_session=True)
            try:
                yield {"api_url": server.api_url, "env": env, "home": Path(env["TAKEFLOW_HOME"]), "out": root / "out",
                       "deploy_output": deploy_output, "worker_log": root / "worker.log"}
            finally:
                stop_group(worker.pid)
                worker.wait(timeout=30)
                log.close()


def _client(platform):
    from prefect import get_client

    return get_client(sync_client=True)


def _runs(client, flow_name: str):
    from prefect.client.schemas.filters import FlowFilter, FlowFilterName

    return client.read_flow_runs(flow_filter=FlowFilter(name=FlowFilterName(any_=[flow_name])), limit=200)


def _wait(what: str, check, platform, timeout: float = 120.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(1)
    log = platform["worker_log"].read_text(errors="replace")[-3000:]
    raise AssertionError(f"timed out waiting for {what}; worker log:\n{log}")


@pytest.fixture
def api(platform):
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings({PREFECT_API_URL: platform["api_url"]}), _client(platform) as client:
        yield client


def test_deploying_registers_every_deployment_with_its_schedule_and_trigger(platform, api):
    by_name = {d.name: d for d in api.read_deployments()}
    assert set(by_name) == {"on-demand", "nightly", "inbox", "on-upload"}, platform["deploy_output"][-2000:]
    assert all(d.work_pool_name == "takeflow" for d in by_name.values())

    produce = by_name["on-demand"]
    assert {"storyboard", "budget", "budget_policy"} <= set(produce.parameter_openapi_schema["properties"])
    assert produce.parameter_openapi_schema["properties"]["budget_policy"]
    [nightly] = by_name["nightly"].schedules
    assert nightly.schedule.cron == "0 2 * * *" and nightly.active
    [sensor] = by_name["inbox"].schedules
    assert sensor.schedule.interval.total_seconds() == 15 and sensor.active

    animate = by_name["on-upload"]
    [automation] = api.read_resource_related_automations(f"prefect.deployment.{animate.id}")
    trigger = automation.trigger
    assert automation.enabled and trigger.expect == {"takeflow.asset.uploaded"}
    assert trigger.match.model_dump()["takeflow.media"] == "image"
    [action] = automation.actions
    assert action.type == "run-deployment" and action.deployment_id == animate.id
    assert action.parameters == {"key": "{{ event.resource['takeflow.key'] }}",
                                 "storage": "{{ event.resource['takeflow.storage'] }}"}


def test_the_scheduler_creates_sensor_runs_that_a_worker_completes(platform, api):
    def completed_scheduled():
        return [r for r in _runs(api, "sense-inbox") if r.auto_scheduled and r.state and r.state.is_completed()]

    [run, *_] = _wait("a scheduled sensor run completed by the worker", completed_scheduled, platform)
    assert run.work_pool_name == "takeflow" and run.deployment_id is not None


def _uploaded_events(api, key: str) -> list[dict]:
    reply = api.request("POST", "/events/filter", json={
        "filter": {"event": {"name": ["takeflow.asset.uploaded"]}, "occurred": {"since": "2000-01-01T00:00:00Z"}},
        "limit": 50})
    return [e for e in reply.json()["events"] if e["resource"]["takeflow.key"] == key]


def test_a_file_dropped_in_the_inbox_is_animated_once(platform, api):
    inbox = platform["home"] / "inbox"
    (inbox / "refs").mkdir(parents=True, exist_ok=True)
    (inbox / "refs" / "notes.txt").write_text("not an image: announced, but no animate run")
    landed = time.time()
    shutil.copy(EXAMPLES / "references" / "kite-meadow.jpg", inbox / "refs" / "kite.jpg")

    def animate_runs():
        return [r for r in _runs(api, "animate") if r.parameters.get("key") == "inbox/refs/kite.jpg"]

    [run] = _wait("the animate run of inbox/refs/kite.jpg to complete",
                  lambda: [r for r in animate_runs() if r.state and r.state.is_final()], platform, timeout=180)
    assert run.state.is_completed(), run.state.message
    assert run.parameters == {"key": "inbox/refs/kite.jpg", "storage": "", "takes": 1, "duration": 1,
                              "delivery": "720p", "out_dir": str(platform["out"])}
    assert (platform["out"] / "animate-inbox-refs-kite-jpg" / "final.mp4").is_file()

    # The sensor keeps running on its schedule; what it has seen it does not announce again.
    started = run.start_time.timestamp()

    def sensor_runs_after():
        return [r for r in _runs(api, "sense-inbox") if r.state and r.state.is_completed()
                and r.start_time and r.start_time.timestamp() > started + 1]

    _wait("two more sensor runs after the animate run", lambda: len(sensor_runs_after()) >= 2, platform, timeout=90)
    assert len(animate_runs()) == 1
    [event] = _uploaded_events(api, "inbox/refs/kite.jpg")
    assert event["resource"]["prefect.resource.id"] == f"takeflow.asset.{(inbox / 'refs' / 'kite.jpg').as_uri()}"
    assert event["payload"]["size"] == (inbox / "refs" / "kite.jpg").stat().st_size
    assert len(_uploaded_events(api, "inbox/refs/notes.txt")) == 1
    assert not [r for r in _runs(api, "animate") if r.parameters.get("key") == "inbox/refs/notes.txt"]
    assert run.start_time.timestamp() - landed < 60


def test_the_readme_automation_notifies_when_a_budget_is_exceeded(platform, api):
    """The README's automation, with a webhook notification on loopback in place of Slack: a
    `takeflow.budget.exceeded` event reaches the notification with the event's resource name."""
    import json
    import threading
    import uuid
    from datetime import datetime, timezone
    from http.server import BaseHTTPRequestHandler, HTTPServer

    from prefect.automations import Automation, EventTrigger, SendNotification
    from prefect.blocks.notifications import CustomWebhookNotificationBlock

    received: list[dict] = []

    class Hook(BaseHTTPRequestHandler):
        def do_POST(self):
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args):
            pass

    hook = HTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=hook.serve_forever, daemon=True).start()
    try:
        alerts = CustomWebhookNotificationBlock(
            name="takeflow-alerts", url=f"http://127.0.0.1:{hook.server_port}/hook",
            json_data={"text": "{{subject}}: {{body}}"}).save("takeflow-alerts", overwrite=True)
        Automation(
            name="takeflow budget exceeded",
            trigger=EventTrigger(expect={"takeflow.budget.exceeded"}, posture="Reactive", threshold=1),
            actions=[SendNotification(block_document_id=alerts, subject="takeflow: budget exceeded",
                                      body="{{ event.resource.name }}: {{ event.payload }}")],
        ).create()
        time.sleep(2)  # the triggers service loads new automations
        api.request("POST", "/events", json=[{
            "id": str(uuid.uuid4()), "occurred": datetime.now(timezone.utc).isoformat(),
            "event": "takeflow.budget.exceeded", "payload": {"budget": "project-kite", "spent": 41},
            "resource": {"prefect.resource.id": "takeflow.budget.project-kite",
                         "prefect.resource.name": "project-kite"}}])
        _wait("the budget notification", lambda: received, platform, timeout=60)
        assert received[0]["text"].startswith("takeflow: budget exceeded: project-kite:")
        assert "41" in received[0]["text"]
    finally:
        hook.shutdown()
