"""The parts under the platform flows, without a Prefect server: listing an inbox in a folder and
on a real S3 server, the seen-set's once-only claims (also with two sensors at once and after a
sensor died mid-way), the prompt library and what is due, and the produce fallback line."""

from __future__ import annotations

import os
import threading
import time
import uuid
from datetime import datetime, timezone

import pytest

from blocks.platform_state import STALE_CLAIM_S, ProducedSet, SeenSet, event_id
from blocks.storage import LocalStorage, StoredObject
from flows.batch import due_briefs, parse_library
from tasks.storyboard import StoryboardError
from tests.s3server import serve_s3


def test_a_local_inbox_lists_whole_files_only(tmp_path):
    store = LocalStorage(folder=tmp_path)
    (tmp_path / "inbox" / "a").mkdir(parents=True)
    (tmp_path / "inbox" / "a" / "one.jpg").write_bytes(b"1")
    (tmp_path / "inbox" / "two.png").write_bytes(b"22")
    (tmp_path / "inbox" / ".two.1234.part.png").write_bytes(b"half")  # an atomic write in progress
    (tmp_path / "outside.jpg").write_bytes(b"x")
    listed = store.list_objects("inbox")
    assert [(o.key, o.size) for o in listed] == [("inbox/a/one.jpg", 1), ("inbox/two.png", 2)]
    assert store.list_objects("missing") == []
    before = listed[1].version
    time.sleep(0.01)
    (tmp_path / "inbox" / "two.png").write_bytes(b"222")
    assert store.list_objects("inbox")[1].version != before


def test_an_s3_inbox_lists_keys_relative_to_the_block(tmp_path):
    from blocks.storage_s3 import S3Storage

    with serve_s3(tmp_path / "s3") as server:
        store = S3Storage(bucket="media", prefix="team", endpoint_url=server.endpoint_url, region_name="us-east-1",
                          aws_access_key_id=server.access_key, aws_secret_access_key=server.secret_key)
        store.s3_client().create_bucket(Bucket="media")
        source = tmp_path / "image.jpg"
        source.write_bytes(b"jpeg bytes")
        store.put(source, "inbox/cat.jpg")
        store.put(source, "inbox/sub/dog.jpg")
        store.put(source, "inboxes-not-this/x.jpg")
        listed = store.list_objects("inbox")
        assert [o.key for o in listed] == ["inbox/cat.jpg", "inbox/sub/dog.jpg"]
        assert all(o.size == 10 and o.version and o.modified.tzinfo for o in listed)
        assert store.list_objects("nothing-here") == []


def _objects(*keys: str, version: str = "v1") -> list[StoredObject]:
    return [StoredObject(key=k, size=1, version=version, modified=datetime.now(timezone.utc)) for k in keys]


def test_each_object_version_is_claimed_once(tmp_path):
    url = f"sqlite:///{tmp_path / 'state.db'}"
    from blocks.home import state_engine

    seen = SeenSet("file:///inbox", state_engine(url))
    first = seen.claim(_objects("a.jpg", "b.jpg"))
    assert [o.key for o in first] == ["a.jpg", "b.jpg"]
    seen.confirm(first)
    assert seen.claim(_objects("a.jpg", "b.jpg")) == []
    assert [o.key for o in seen.claim(_objects("a.jpg", version="v2"))] == ["a.jpg"]  # written again
    other_inbox = SeenSet("s3://bucket/inbox", state_engine(url))
    assert len(other_inbox.claim(_objects("a.jpg"))) == 1


def test_two_sensors_at_once_claim_each_object_once(tmp_path):
    from blocks.home import state_engine

    url = f"sqlite:///{tmp_path / 'state.db'}"
    objects = _objects(*(f"{n:03}.jpg" for n in range(60)))
    claimed: list[list[StoredObject]] = [[], []]

    def sensor(slot: int) -> None:
        seen = SeenSet("file:///inbox", state_engine(url))
        for start in range(0, 60, 6):
            claimed[slot] += seen.claim(objects[start:start + 12])

    threads = [threading.Thread(target=sensor, args=(slot,)) for slot in (0, 1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    keys = [o.key for o in claimed[0] + claimed[1]]
    assert sorted(keys) == [o.key for o in objects]  # every object once, none twice


def test_a_claim_left_by_a_dead_sensor_is_sent_again_with_the_same_event_id(tmp_path, monkeypatch):
    from blocks import platform_state
    from blocks.home import state_engine

    seen = SeenSet("file:///inbox", state_engine(f"sqlite:///{tmp_path / 'state.db'}"))
    [obj] = seen.claim(_objects("a.jpg"))  # claimed, then the sensor died before its event went out
    assert seen.claim(_objects("a.jpg")) == []  # a fresh claim is not taken over
    later = time.time() + STALE_CLAIM_S + 1
    monkeypatch.setattr(platform_state.time, "time", lambda: later)
    [again] = seen.claim(_objects("a.jpg"))
    assert event_id("file:///inbox", again) == event_id("file:///inbox", obj)  # Prefect drops the repeat
    seen.confirm([again])
    monkeypatch.setattr(platform_state.time, "time", lambda: later + 2 * STALE_CLAIM_S)
    assert seen.claim(_objects("a.jpg")) == []


LIBRARY = """
defaults: {takes: 1}
briefs:
  - {id: past, brief: a kite, due: 2026-01-01}
  - {id: later, brief: a boat, due: "2030-01-01T08:00:00+01:00"}
  - {id: anytime, brief: a street}
"""


def test_the_library_says_what_is_due_and_an_edited_brief_is_due_again(tmp_path):
    from blocks.home import state_engine

    defaults, briefs = parse_library(LIBRARY, "library.yaml")
    assert defaults == {"takes": 1}
    as_of = datetime(2026, 12, 2, tzinfo=timezone.utc)
    assert [b.id for b in due_briefs(briefs, set(), as_of)] == ["past", "anytime"]
    record = ProducedSet("file:///library.yaml", state_engine(f"sqlite:///{tmp_path / 'state.db'}"))
    record.add("past", briefs[0].digest(), str(uuid.uuid4()))
    assert [b.id for b in due_briefs(briefs, record.done(), as_of)] == ["anytime"]
    _, edited = parse_library(LIBRARY.replace("a kite", "a red kite"), "library.yaml")
    assert [b.id for b in due_briefs(edited, record.done(), as_of)] == ["past", "anytime"]
    assert [b.id for b in due_briefs(briefs, set(), datetime(2031, 1, 1, tzinfo=timezone.utc))] == \
        ["past", "later", "anytime"]


def test_a_csv_library_reads_like_yaml_and_bad_rows_name_the_field():
    _, briefs = parse_library("id,brief,due,duration\nkite,a kite,2026-01-01,3\nboat,a boat,,\n", "briefs.csv")
    assert [(b.id, b.duration, b.due_at()) for b in briefs] == [
        ("kite", 3.0, datetime(2026, 1, 1, tzinfo=timezone.utc)), ("boat", None, None)]
    with pytest.raises(StoryboardError) as bad:
        parse_library("id,brief,due\nkite,a kite,next tuesday\n", "briefs.csv")
    assert str(bad.value).startswith("briefs.csv: briefs[0].due") and "\n" not in str(bad.value)
    with pytest.raises(StoryboardError, match=r"briefs\[1\].id: 'kite' is used twice"):
        parse_library("id,brief\nkite,a\nkite,b\n", "briefs.csv")


def test_produce_without_a_server_says_how_to_keep_one_running(tmp_path, monkeypatch, capsys):
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from flows.server import attach_to_server, note_temporary_server
    from tests.prefect_server import free_port

    monkeypatch.setenv("TAKEFLOW_HOME", str(tmp_path))
    (tmp_path / "server").mkdir()
    (tmp_path / "server" / "api-url").write_text(f"http://127.0.0.1:{free_port()}/api")  # nobody listens
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    with temporary_settings(restore_defaults={PREFECT_API_URL}), attach_to_server() as url:
        assert url is None and "PREFECT_API_URL" not in os.environ
        note_temporary_server()
    [line] = capsys.readouterr().err.splitlines()
    assert "temporary one" in line and "`takeflow server start` keeps one running" in line
