"""A production reads its reference image from S3 and publishes its deliverables there, manifest
last, against a real S3 server (rclone serve s3) and the session's Prefect server."""

from __future__ import annotations

import json
import uuid

import httpx
import pytest

from blocks.media import file_digest
from blocks.storage_s3 import S3Storage
from tasks.storyboard import parse_storyboard
from tests.conftest import EXAMPLES
from tests.s3server import serve_s3


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    with serve_s3(tmp_path_factory.mktemp("s3")) as server:
        storage = S3Storage(bucket=f"media-{uuid.uuid4().hex[:8]}", prefix="takeflow",
                            endpoint_url=server.endpoint_url, region_name="us-east-1",
                            aws_access_key_id=server.access_key, aws_secret_access_key=server.secret_key)
        storage.s3_client().create_bucket(Bucket=storage.bucket)
        yield storage


def test_s3_reference_in_and_deliverables_out(prefect_server, s3, tmp_path):
    from flows.produce import RunOptions, produce

    s3.s3_client().upload_file(str(EXAMPLES / "references" / "kite-meadow.jpg"), s3.bucket, "inbox/kite.jpg")
    s3.save("team-media", overwrite=True)
    board = parse_storyboard({"title": "Cloud Kite", "defaults": {"duration": 1, "fps": 12, "takes": 1,
                                                                  "delivery": "720p"},
                              "shots": [{"id": "kite", "brief": "a red kite; static camera; midday sun",
                                         "reference_image": f"s3://{s3.bucket}/inbox/kite.jpg"}]})
    state = produce(storyboard=board, options=RunOptions(out_dir=str(tmp_path), storage="takeflow-s3-storage/team-media"),
                    return_state=True)
    assert state.is_completed(), state.message
    folder = tmp_path / "cloud-kite"
    assert file_digest(next((folder / "references").glob("kite-*"))) == file_digest(
        EXAMPLES / "references" / "kite-meadow.jpg")
    report = json.loads((folder / "report.json").read_text())
    published = report["published"]
    assert set(published) >= {"final.mp4", "poster.jpg", "report.json", "manifest.json"}
    prefix = published["manifest.json"].removeprefix(f"s3://{s3.bucket}/").removesuffix("/manifest.json")
    assert prefix == f"takeflow/cloud-kite/{state.state_details.flow_run_id}"
    manifest = json.loads(s3.s3_client().get_object(Bucket=s3.bucket, Key=f"{prefix}/manifest.json")["Body"].read())
    entries = {e["name"]: e["sha256"] for e in manifest["files"]}
    assert entries["final.mp4"] == file_digest(folder / "final.mp4")
    link = s3.url(prefix.removeprefix("takeflow/") + "/final.mp4", 60)
    assert httpx.get(link).content == (folder / "final.mp4").read_bytes()


def test_s3_reference_without_storage_is_refused_before_spending(prefect_server, tmp_path):
    from flows.produce import RunOptions, produce

    board = parse_storyboard({"title": "No Keys", "shots": [{"brief": "a kite; static camera; sun",
                                                             "reference_image": "s3://media/kite.jpg"}]})
    state = produce(storyboard=board, options=RunOptions(out_dir=str(tmp_path)), return_state=True)
    assert state.is_failed() and state.name == "InvalidInput" and "options.storage" in state.message
    assert not (tmp_path / "no-keys").exists()


def test_storyboard_read_from_s3_with_inputs_beside_it(prefect_server, s3, tmp_path, capsys):
    from flows.cli import main

    s3.save("team-media", overwrite=True)
    client = s3.s3_client()
    client.upload_file(str(EXAMPLES / "references" / "kite-meadow.jpg"), s3.bucket, "boards/refs/kite.jpg")
    client.put_object(Bucket=s3.bucket, Key="boards/kite.yaml", Body=(
        "title: S3 Board\ndefaults: {duration: 1, fps: 12, takes: 1, delivery: 720p}\n"
        "shots:\n  - brief: a red kite; static camera; midday sun\n    reference_image: refs/kite.jpg\n").encode())
    source = f"s3://{s3.bucket}/boards/kite.yaml"
    assert main(["validate", source]) == 2
    assert "needs --storage" in capsys.readouterr().err
    assert main(["produce", source, "--storage", "takeflow-s3-storage/team-media", "--out", str(tmp_path)]) == 0
    folder = tmp_path / "s3-board"
    assert file_digest(next((folder / "references").glob("shot-01-*"))) == file_digest(
        EXAMPLES / "references" / "kite-meadow.jpg")
    assert (folder / "final.mp4").is_file()
