"""The deployed flows run directly on the session's Prefect test server: the batch produces what is
due once (and an edited brief again), produce-file reads a storyboard by location, animate makes a
clip of a stored image; bad input ends each in one line naming the field, before any spend."""

from __future__ import annotations

import shutil

import pytest
import yaml

from tests.conftest import EXAMPLES

pytestmark = pytest.mark.platform
QUICK = {"takes": 1, "duration": 1, "delivery": "720p", "quality_bar": 0, "extra_takes": 0}


def test_the_batch_produces_due_briefs_once_and_an_edited_one_again(prefect_server, own_takeflow_home, tmp_path):
    from flows.batch import batch

    shutil.copy(EXAMPLES / "references" / "kite-meadow.jpg", tmp_path / "kite.jpg")
    library = {"defaults": QUICK, "briefs": [
        {"id": "kite", "brief": "a red kite over a meadow, static shot", "reference_image": "kite.jpg",
         "due": "2026-01-01"},
        {"id": "future", "brief": "a boat at dawn, static shot", "due": "2099-01-01"}]}
    path = tmp_path / "briefs.yaml"
    path.write_text(yaml.safe_dump(library))
    out = tmp_path / "out"
    assert batch(library=str(path), out_dir=str(out)) == {"produced": ["kite"], "waiting": []}
    assert (out / "kite" / "final.mp4").is_file()
    assert batch(library=str(path), out_dir=str(out)) == {"produced": [], "waiting": []}
    library["briefs"][0]["brief"] = "a red kite over a meadow, slow pan left"
    path.write_text(yaml.safe_dump(library))
    assert batch(library=str(path), out_dir=str(out)) == {"produced": ["kite"], "waiting": []}


def test_a_bad_library_fails_in_one_line_naming_the_entry(prefect_server, tmp_path):
    from flows.batch import batch

    path = tmp_path / "briefs.csv"
    path.write_text("id,brief,duration\nkite,a kite,-3\n")
    state = batch(library=str(path), out_dir=str(tmp_path / "out"), return_state=True)
    assert state.is_failed() and state.name == "InvalidInput"
    assert state.message.startswith("briefs.csv: briefs[0].duration") and "\n" not in state.message


def test_produce_file_reads_the_storyboard_where_it_lies(prefect_server, tmp_path):
    from flows.produce_file import produce_file

    board = {"title": "By location", "defaults": QUICK, "shots": [{"brief": "a lighthouse, static shot"}]}
    (tmp_path / "board.yaml").write_text(yaml.safe_dump(board))
    report = produce_file(storyboard=str(tmp_path / "board.yaml"), budget=50, budget_policy="stop",
                          out_dir=str(tmp_path / "out"))
    assert report.final and (tmp_path / "out" / "by-location" / "final.mp4").is_file()
    bad = produce_file(storyboard=str(tmp_path / "board.yaml"), budget_policy="later", return_state=True)
    assert bad.name == "InvalidInput" and "policy" in bad.message and "\n" not in bad.message
    missing = produce_file(storyboard="s3://bucket/board.yaml", return_state=True)
    assert missing.name == "InvalidInput" and "set storage to a storage block" in missing.message


def test_animate_makes_a_clip_of_a_stored_image_and_refuses_other_files(prefect_server, own_takeflow_home, tmp_path):
    from flows.animate import animate

    (own_takeflow_home / "inbox").mkdir()
    shutil.copy(EXAMPLES / "references" / "kite-meadow.jpg", own_takeflow_home / "inbox" / "kite.jpg")
    report = animate(key="inbox/kite.jpg", takes=1, duration=1, delivery="720p", out_dir=str(tmp_path / "out"))
    assert report.final and (tmp_path / "out" / "animate-inbox-kite-jpg" / "final.mp4").is_file()
    assert report.shots[0].takes[0].file
    text = animate(key="inbox/notes.txt", out_dir=str(tmp_path / "out"), return_state=True)
    assert text.name == "InvalidInput" and text.message.startswith("key: inbox/notes.txt is not an image")
    gone = animate(key="inbox/gone.jpg", out_dir=str(tmp_path / "out"), return_state=True)
    assert gone.name == "InvalidInput" and "no such file" in gone.message


def test_an_s3_inbox_and_an_s3_library(prefect_server, own_takeflow_home, tmp_path):
    """The sensor announces each object of an S3 inbox once (again when it is written again); the
    batch reads a library and its reference image from the same bucket."""
    from blocks.storage_s3 import S3Storage
    from flows.batch import batch
    from flows.sensor import sense_inbox
    from tests.s3server import serve_s3

    with serve_s3(tmp_path / "s3") as server:
        store = S3Storage(bucket="team", prefix="media", endpoint_url=server.endpoint_url, region_name="us-east-1",
                          aws_access_key_id=server.access_key, aws_secret_access_key=server.secret_key)
        store.s3_client().create_bucket(Bucket="team")
        store.save("uploads", overwrite=True)
        image = EXAMPLES / "references" / "kite-meadow.jpg"
        store.put(image, "inbox/kite.jpg")
        store.put(image, "inbox/more/kite-2.jpg")
        assert sense_inbox(storage="takeflow-s3-storage/uploads", settle_seconds=0) == 2
        assert sense_inbox(storage="takeflow-s3-storage/uploads", settle_seconds=0) == 0
        (tmp_path / "changed.jpg").write_bytes(image.read_bytes() + b"\0")
        store.put(tmp_path / "changed.jpg", "inbox/kite.jpg")
        assert sense_inbox(storage="takeflow-s3-storage/uploads", settle_seconds=0) == 1

        library = {"defaults": QUICK, "briefs": [{"id": "s3-kite", "brief": "a red kite, static shot",
                                                  "reference_image": "refs/kite.jpg"}]}
        (tmp_path / "briefs.yaml").write_text(yaml.safe_dump(library))
        store.put(tmp_path / "briefs.yaml", "libraries/briefs.yaml")
        store.put(image, "libraries/refs/kite.jpg")
        out = tmp_path / "out"
        assert batch(library="libraries/briefs.yaml", storage="takeflow-s3-storage/uploads",
                     out_dir=str(out)) == {"produced": ["s3-kite"], "waiting": []}
        assert (out / "s3-kite" / "final.mp4").is_file()
