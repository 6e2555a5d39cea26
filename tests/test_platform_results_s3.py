"""Result storage for several hosts: task results and cache records in an S3 bucket (a real S3
server on loopback, `rclone serve s3`), through Prefect's own setting for the default result
storage and takeflow's S3Storage block, so a second host reuses what the first one produced."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from blocks.storage_s3 import S3Storage
from tests.s3server import serve_s3

ROOT = Path(__file__).resolve().parents[1]
BLOCK = "results-s3-test"


@pytest.fixture
def results_bucket(prefect_server, tmp_path):
    """A saved S3Storage block on a fresh bucket of a loopback S3 server."""
    with serve_s3(tmp_path / "s3server") as server:
        store = S3Storage(bucket="prefect-results", prefix="takeflow", endpoint_url=server.endpoint_url,
                          region_name="us-east-1", aws_access_key_id=server.access_key,
                          aws_secret_access_key=server.secret_key)
        store.s3_client().create_bucket(Bucket="prefect-results")
        store.save(BLOCK, overwrite=True)
        yield store, server


def produce_on(host: str, board: Path, tmp_path: Path, api_url: str) -> tuple[dict, Path]:
    """`takeflow produce` as on another host: its own TAKEFLOW_HOME (ledger, journal, paid outputs)
    and its own local result folder; only the Prefect server and the S3 bucket are shared."""
    local_results = tmp_path / host / "local-results"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PREFECT_API_URL": api_url,
           "TAKEFLOW_HOME": str(tmp_path / host / "home"),
           "PREFECT_RESULTS_DEFAULT_STORAGE_BLOCK": f"takeflow-s3-storage/{BLOCK}",
           "PREFECT_RESULTS_LOCAL_STORAGE_PATH": str(local_results)}
    for name in ("TAKEFLOW_DASK_ADDRESS", "TAKEFLOW_STATE_URL"):
        env.pop(name, None)
    out = tmp_path / host / "out"
    done = subprocess.run([sys.executable, "-m", "flows.cli", "produce", str(board), "--out", str(out)],
                          env=env, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads((out / "s3-results-reel" / "report.json").read_text()), local_results


def test_a_second_host_is_served_from_cache_records_in_s3(prefect_server, results_bucket, tmp_path):
    store, server = results_bucket
    board = tmp_path / "board.yaml"
    board.write_text(yaml.safe_dump({
        "title": "S3 Results Reel",
        "defaults": {"duration": 1, "fps": 12, "takes": 2, "delivery": "720p", "quality_bar": 0.0, "extra_takes": 0},
        "shots": [{"id": "fox", "brief": "a red fox trots through snow; slow pan left; soft blue dusk light"}]}))

    first, first_local = produce_on("host-a", board, tmp_path, prefect_server["api_url"])
    assert (first["generated"], first["cached"]) == (2, 0)
    records = {o.key: o.version for o in store.list_objects()}
    assert len(records) >= 2 + 2, records  # at least the two takes and their scores
    record = json.loads(store.read_path(sorted(records)[0]))
    assert {"metadata", "result"} <= record.keys()  # Prefect's own result records, as it writes them

    second, second_local = produce_on("host-b", board, tmp_path, prefect_server["api_url"])
    # nothing generated again on the other host: its ledger and journal are empty, so the takes
    # can only have come from the cache records in the bucket
    assert (second["generated"], second["cached"], second["credits_this_run"]) == (0, 2, 0)
    again = {o.key: o.version for o in store.list_objects()}
    assert {k: v for k, v in again.items() if k in records} == records  # read, not rewritten
    # the hosts' local result folders stayed empty: every record went to S3
    for local in (first_local, second_local):
        assert not local.exists() or not any(p.is_file() for p in local.rglob("*"))
    assert server.secret_key not in json.dumps(first) + json.dumps(second)


def test_missing_records_read_as_absent_so_prefect_runs_the_task(results_bucket):
    """Prefect asks result storage for a cache key before every cached task: a missing key must
    fail (Prefect counts it as no record), in one line naming the object, never the secret."""
    from prefect.results import ResultStore

    store, server = results_bucket
    assert not ResultStore(result_storage=store).exists("no-such-cache-key")
    store.write_path("some-key", b"record")
    assert store.read_path("some-key") == b"record"
    with pytest.raises(Exception, match="s3://prefect-results/takeflow/absent: no such object") as caught:
        store.read_path("absent")
    assert server.secret_key not in str(caught.value)
