"""The Prefect UI tells the story of a run, checked as a person would: one produce run against a
real `prefect server start` (which serves the UI), its artifacts and events read back through the
API, then its pages opened in headless Chromium (Debian's chromium and chromium-driver, which
.ci/run installs) until every kind of artifact has rendered; docs/ui-contact-sheet.png is its
screenshot of a contact sheet. Skipped, with the reason, where Chromium is not installed."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import yaml

from tests.prefect_server import prefect_server

pytestmark = pytest.mark.platform
REPO = Path(__file__).resolve().parents[1]
CHROMIUM, DRIVER = shutil.which("chromium"), shutil.which("chromedriver")
# The screenshot goes to the test's folder; set TAKEFLOW_UI_SCREENSHOT=docs/ui-contact-sheet.png to
# refresh the committed one (a test run does not rewrite tracked files).
SCREENSHOT = os.environ.get("TAKEFLOW_UI_SCREENSHOT")
BOARD = {"title": "Kite In The UI",
         "defaults": {"takes": 2, "duration": 1, "delivery": "720p", "quality_bar": 0, "extra_takes": 0},
         "shots": [{"id": "s01", "brief": "a red kite over a meadow, static shot, soft daylight"},
                   {"id": "s02", "brief": "a lighthouse at dusk, slow push in, warm light"}]}


def _python(env: dict, code: str) -> None:
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """One produce run on a server of its own; yields (server, flow run, its artifacts by type)."""
    root = tmp_path_factory.mktemp("ui-run")
    with prefect_server(root, ui=True) as server:
        env = {**server.env, "PYTHONPATH": str(REPO), "TAKEFLOW_HOME": str(root / "takeflow-home"),
               "PREFECT_RESULTS_LOCAL_STORAGE_PATH": str(root / "results")}
        # small previews keep the run quick; saved by name as a team's provider setting would be
        _python(env, "from blocks.previz import PrevizProvider; PrevizProvider(render_height=144).save('previz')")
        (root / "board.yaml").write_text(yaml.safe_dump(BOARD))
        produced = subprocess.run([sys.executable, "-m", "flows.cli", "produce", str(root / "board.yaml"),
                                   "--out", str(root / "out")], cwd=REPO, env=env, capture_output=True,
                                  text=True, timeout=600)
        assert produced.returncode == 0, produced.stderr[-3000:]
        api = httpx.Client(base_url=server.api_url, timeout=30)
        [run] = api.post("/flow_runs/filter", json={"flow_runs": {"name": {"any_": ["produce-kite-in-the-ui"]}}}).json()
        artifacts = api.post("/artifacts/filter", json={"artifacts": {"flow_run_id": {"any_": [run["id"]]}}}).json()
        by_type: dict[str, list[dict]] = {}
        for artifact in artifacts:
            by_type.setdefault(artifact["type"], []).append(artifact)
        yield server, api, run, by_type


def test_run_and_task_names_say_which_shot_and_take(finished_run):
    _, api, run, _ = finished_run
    assert run["state_type"] == "COMPLETED"
    names = {t["name"] for t in api.post("/task_runs/filter", json={
        "flow_runs": {"id": {"any_": [run["id"]]}}}).json()}
    for shot in ("s01", "s02"):
        for take in (1, 2):
            assert f"generate-{shot}-take-{take}" in names, names
            assert any(n.startswith(f"score-{shot}-take{take}-") for n in names), names
        assert f"contact-sheet-{shot}" in names, names


def test_artifacts_are_readable_through_the_api(finished_run):
    _, _, _, by_type = finished_run
    keys = {a["key"]: a for kind in by_type.values() for a in kind if a["key"]}
    assert keys["kite-in-the-ui-progress"]["data"] == 100.0 and keys["kite-in-the-ui-progress"]["type"] == "progress"
    cost = yaml.safe_load(keys["kite-in-the-ui-cost"]["data"])  # table data is stored as JSON text
    assert [row["shot"] for row in cost] == ["s01", "s02", "total"] and cost[-1]["takes"] == 4
    scores = yaml.safe_load(keys["kite-in-the-ui-s01-scores"]["data"])
    assert [row["take"] for row in scores] == [1, 2] and sum(row["chosen"] == "yes" for row in scores) == 1
    for shot in ("s01", "s02"):
        sheet = keys[f"kite-in-the-ui-{shot}-sheet"]
        assert sheet["type"] == "image" and sheet["data"].startswith("data:image/jpeg;base64,/9j/")
    link = keys["kite-in-the-ui-final"]
    assert link["type"] == "markdown"  # Prefect stores a link artifact as markdown
    assert "final.mp4](file://" in link["data"]


def test_the_flow_emits_events_for_automations(finished_run):
    _, api, run, _ = finished_run
    expected = ["takeflow.shot.selected"] * 2 + ["takeflow.take.generated"] * 4 + ["takeflow.video.published"]
    deadline = time.monotonic() + 60
    while True:  # the server's event persister writes in batches, a few seconds after they arrive
        events = api.post("/events/filter", json={"filter": {
            "related": {"resources_in_roles": [[f"prefect.flow-run.{run['id']}", "flow-run"]]},
            "event": {"prefix": ["takeflow."]}}, "limit": 50}).json()["events"]
        names = sorted(e["event"] for e in events)
        if names == expected or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert names == expected
    selected = [e for e in events if e["event"] == "takeflow.shot.selected"]
    assert {e["resource"]["prefect.resource.id"] for e in selected} == {
        "takeflow.shot.kite-in-the-ui.s01", "takeflow.shot.kite-in-the-ui.s02"}
    assert all(e["payload"]["take"] in (1, 2) for e in selected)
    published = next(e for e in events if e["event"] == "takeflow.video.published")
    assert published["payload"]["location"].startswith("file://") and published["payload"]["location"].endswith(
        "final.mp4")


@pytest.mark.skipif(not (CHROMIUM and DRIVER), reason="needs Debian's chromium and chromium-driver "
                    "(apt-get install chromium chromium-driver; .ci/run installs them)")
def test_the_artifacts_render_in_the_prefect_ui(finished_run):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    server, _, run, by_type = finished_run
    ui = server.api_url.removesuffix("/api")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,1000"):
        options.add_argument(flag)
    browser = webdriver.Chrome(service=Service(DRIVER), options=options)
    wait = WebDriverWait(browser, 60)
    try:
        def shown(css: str):
            return wait.until(lambda b: [e for e in b.find_elements(By.CSS_SELECTOR, css) if e.is_displayed()])

        sheet = next(a for a in by_type["image"] if a["key"].endswith("-s01-sheet"))
        browser.get(f"{ui}/artifacts/artifact/{sheet['id']}")
        [image] = shown(".artifact-data-image img")
        wait.until(lambda b: b.execute_script("return arguments[0].complete && arguments[0].naturalWidth", image))
        assert image.get_attribute("src").startswith("data:image/jpeg")
        assert image.size["width"] > 100
        picture = Path(SCREENSHOT) if SCREENSHOT else server.home.parent / "ui-contact-sheet.png"
        browser.save_screenshot(str(picture))  # the contact sheet as the UI shows it
        assert picture.stat().st_size > 10_000

        table = next(a for a in by_type["table"] if a["key"] == "kite-in-the-ui-cost")
        browser.get(f"{ui}/artifacts/artifact/{table['id']}")
        cells = shown(".artifact-data-table td")
        assert {"s01", "s02", "total"} <= {c.text.strip() for c in cells}

        link = next(a for kind in by_type.values() for a in kind if a["key"] == "kite-in-the-ui-final")
        browser.get(f"{ui}/artifacts/artifact/{link['id']}")
        anchors = shown(".artifact-data-markdown a")
        assert any(a.text == "final.mp4" and a.get_attribute("href").endswith("final.mp4") for a in anchors)

        browser.get(f"{ui}/runs/flow-run/{run['id']}")
        tab = wait.until(lambda b: [e for e in b.find_elements(By.XPATH, "//*[normalize-space(.)='Artifacts']")
                                    if e.is_displayed()])
        tab[-1].click()  # the innermost element with that text
        # the run's own artifacts are listed on the tab (the report task's tables under its task run)
        listed = {"kite-in-the-ui-s01-sheet", "kite-in-the-ui-s02-sheet", "kite-in-the-ui-final",
                  "kite-in-the-ui-progress", "kite-in-the-ui-estimate", "IMAGE", "TABLE", "PROGRESS"}
        wait.until(lambda b: listed <= set(b.find_element(By.TAG_NAME, "body").text.split()))
    finally:
        browser.quit()
