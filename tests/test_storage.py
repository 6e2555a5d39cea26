"""Storage blocks against a real S3 server (`rclone serve s3` on loopback) and a local folder:
round trips checked by content hash, presigned links, multipart uploads, encryption requests,
publishing with the manifest last, and error messages that never carry the secret."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
import uuid
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr

from blocks.media import file_digest
from blocks.storage import LocalStorage, MANIFEST, publish, run_prefix, StorageError
from blocks.storage_s3 import S3Storage
from tests.s3server import S3Server, serve_s3

MIB = 1024 * 1024


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> S3Server:
    with serve_s3(tmp_path_factory.mktemp("s3server")) as running:
        yield running


def s3_storage(server: S3Server, bucket: str, **settings) -> S3Storage:
    return S3Storage(bucket=bucket, endpoint_url=server.endpoint_url, region_name="us-east-1",
                     aws_access_key_id=server.access_key, aws_secret_access_key=server.secret_key,
                     **settings)


@pytest.fixture
def bucket(server) -> str:
    name = f"test-{uuid.uuid4().hex[:12]}"
    s3_storage(server, name).s3_client().create_bucket(Bucket=name)
    return name


@pytest.fixture
def s3(server, bucket) -> S3Storage:
    return s3_storage(server, bucket, prefix="deliveries")


def write_random(path: Path, size: int) -> str:
    """Write `size` random bytes in 1 MiB chunks; return their sha256."""
    digest = hashlib.sha256()
    with open(path, "wb") as fh:
        for offset in range(0, size, MIB):
            chunk = os.urandom(min(MIB, size - offset))
            digest.update(chunk)
            fh.write(chunk)
    return digest.hexdigest()


def record_calls(storage: S3Storage, event: str) -> list[dict]:
    """Collect the API parameters of every call matching a botocore event, e.g. 'UploadPart'."""
    calls: list[dict] = []
    storage.s3_client().meta.events.register(
        f"before-parameter-build.s3.{event}", lambda params, **_: calls.append(dict(params)))
    return calls


def test_run_prefix_makes_project_and_run_key_safe():
    assert run_prefix("My Film: the cut", "2026-11-24 run#3") == "My-Film-the-cut/2026-11-24-run-3"
    with pytest.raises(ValueError):
        run_prefix("..", "run")


def test_s3_round_trip_keeps_the_bytes(s3, tmp_path):
    sha = write_random(tmp_path / "final.mp4", 300_000)
    uri = s3.put(tmp_path / "final.mp4", "film/run-1/final.mp4")
    assert uri == f"s3://{s3.bucket}/deliveries/film/run-1/final.mp4"
    assert s3.exists("film/run-1/final.mp4") and not s3.exists("film/run-1/other.mp4")
    back = s3.get("film/run-1/final.mp4", tmp_path / "back" / "final.mp4")
    assert file_digest(back) == sha
    assert [p.name for p in back.parent.iterdir()] == ["final.mp4"]  # no temp file left behind


def test_s3_reads_inputs_from_s3_uris_in_other_buckets(s3, tmp_path):
    other = f"inputs-{uuid.uuid4().hex[:8]}"
    client = s3.s3_client()
    client.create_bucket(Bucket=other)
    client.put_object(Bucket=other, Key="refs/plate.png", Body=b"reference image")
    path = s3.get(f"s3://{other}/refs/plate.png", tmp_path / "plate.png")
    assert path.read_bytes() == b"reference image"


def test_presigned_link_works_and_is_refused_when_tampered_or_expired(s3, tmp_path):
    (tmp_path / "clip.mp4").write_bytes(b"clip bytes")
    s3.put(tmp_path / "clip.mp4", "clip.mp4")
    link = s3.url("clip.mp4", expires_s=60)
    assert link.startswith(s3.endpoint_url) and "X-Amz-Signature=" in link
    assert httpx.get(link).content == b"clip bytes"
    tampered = link.replace("X-Amz-Signature=", "X-Amz-Signature=0")
    assert httpx.get(tampered).status_code == 403
    short = s3.url("clip.mp4", expires_s=1)
    time.sleep(2.1)
    expired = httpx.get(short)
    assert expired.status_code in (400, 403) and "AccessDenied" in expired.text
    assert httpx.get(link).status_code == 200  # refused for its expiry, not for its age alone


def test_big_file_goes_up_in_parts_and_shows_only_when_complete(s3, tmp_path):
    sha = write_random(tmp_path / "master.mov", 105 * MIB)
    parts = record_calls(s3, "UploadPart")
    visible_mid_upload: list[bool] = []
    s3.s3_client().meta.events.register(
        "before-parameter-build.s3.CompleteMultipartUpload",
        lambda **_: visible_mid_upload.append(s3.exists("master.mov")))
    s3.put(tmp_path / "master.mov", "master.mov")
    assert sorted(p["PartNumber"] for p in parts) == list(range(1, 8))  # 105 MiB in 16 MiB parts
    assert visible_mid_upload == [False]
    assert file_digest(s3.get("master.mov", tmp_path / "back.mov")) == sha


def test_failed_multipart_upload_is_aborted_and_leaves_nothing(server, bucket, tmp_path):
    storage = s3_storage(server, bucket, multipart_threshold_mb=5, multipart_chunk_mb=5)
    write_random(tmp_path / "take.mp4", 12 * MIB)
    aborted = record_calls(storage, "AbortMultipartUpload")

    def drop_second_part(params, **_):
        if params["PartNumber"] == 2:
            raise ConnectionError("network dropped")
    storage.s3_client().meta.events.register("before-parameter-build.s3.UploadPart", drop_second_part)
    with pytest.raises(ConnectionError):
        storage.put(tmp_path / "take.mp4", "take.mp4")
    assert len(aborted) == 1 and not storage.exists("take.mp4")
    assert [p for p in (server.root / bucket).rglob("*") if p.is_file()] == []  # no temp parts kept


@pytest.mark.parametrize("encryption", [
    {"server_side_encryption": "AES256"},
    {"server_side_encryption": "aws:kms", "sse_kms_key_id": "alias/films"}])
def test_encryption_settings_reach_every_upload_request(server, bucket, tmp_path, encryption):
    storage = s3_storage(server, bucket, multipart_threshold_mb=5, multipart_chunk_mb=5, **encryption)
    headers: list[dict] = []
    for operation in ("PutObject", "CreateMultipartUpload"):
        storage.s3_client().meta.events.register(
            f"before-call.s3.{operation}", lambda params, **_: headers.append(params["headers"]))
    (tmp_path / "small.json").write_text("{}")
    write_random(tmp_path / "big.mp4", 6 * MIB)
    storage.put(tmp_path / "small.json", "small.json")
    storage.put(tmp_path / "big.mp4", "big.mp4")
    assert len(headers) == 2
    for sent in headers:
        assert sent["x-amz-server-side-encryption"] == encryption["server_side_encryption"]
        kms_key = sent.get("x-amz-server-side-encryption-aws-kms-key-id")
        assert kms_key == encryption.get("sse_kms_key_id")


def deliverables(folder: Path) -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "final.mp4").write_bytes(b"final cut")
    (folder / "contact.jpg").write_bytes(b"contact sheet")
    return {"final.mp4": folder / "final.mp4", "shots/contact.jpg": folder / "contact.jpg"}


def test_publish_to_s3_writes_the_manifest_last(s3, tmp_path):
    files = deliverables(tmp_path / "run")
    order = record_calls(s3, "PutObject")
    uris = publish(s3, files, "film/run-1")
    assert [call["Key"] for call in order][-1] == f"deliveries/film/run-1/{MANIFEST}"
    assert uris["shots/contact.jpg"] == f"s3://{s3.bucket}/deliveries/film/run-1/shots/contact.jpg"
    manifest = json.loads(s3.get(f"film/run-1/{MANIFEST}", tmp_path / "manifest.json").read_text())
    sha256 = {name: hashlib.sha256(path.read_bytes()).hexdigest() for name, path in files.items()}
    assert manifest["files"] == [
        {"name": "final.mp4", "size": 9, "sha256": sha256["final.mp4"]},
        {"name": "shots/contact.jpg", "size": 13, "sha256": sha256["shots/contact.jpg"]}]
    assert publish(s3, files, "film/run-1") == uris and len(order) == 3  # a retry uploads nothing
    files["final.mp4"].write_bytes(b"another cut")
    with pytest.raises(StorageError, match="already committed"):
        publish(s3, files, "film/run-1")


def test_publish_that_fails_midway_leaves_no_manifest(s3, tmp_path):
    def fail_second_file(params, **_):
        if params["Key"].endswith("contact.jpg"):
            raise ConnectionError("connection reset")
    s3.s3_client().meta.events.register("before-parameter-build.s3.PutObject", fail_second_file)
    with pytest.raises(ConnectionError):
        publish(s3, deliverables(tmp_path / "run"), "film/run-2")
    assert s3.exists("film/run-2/final.mp4") and not s3.exists(f"film/run-2/{MANIFEST}")
    assert s3.read_manifest("film/run-2") is None


def test_local_storage_round_trip_links_and_publish(tmp_path):
    storage = LocalStorage(folder=tmp_path / "out")
    sha = write_random(tmp_path / "take.mp4", 200_000)
    uri = storage.put(tmp_path / "take.mp4", "film/run-1/take.mp4")
    assert uri == (tmp_path / "out/film/run-1/take.mp4").resolve().as_uri()
    assert storage.url("film/run-1/take.mp4") == uri
    assert storage.exists("film/run-1/take.mp4") and not storage.exists("film/run-1/nope.mp4")
    assert file_digest(storage.get("film/run-1/take.mp4", tmp_path / "a.mp4")) == sha
    assert file_digest(storage.get(uri, tmp_path / "b.mp4")) == sha
    uris = publish(storage, deliverables(tmp_path / "run"), "film/run-1")
    assert Path(uris[MANIFEST].removeprefix("file://")).is_file()
    committed = storage.read_manifest("film/run-1")
    assert [entry.name for entry in committed] == ["final.mp4", "shots/contact.jpg"]


def test_local_publish_that_fails_midway_leaves_no_manifest(tmp_path):
    storage = LocalStorage(folder=tmp_path / "out")
    (tmp_path / "out/film/run-1/shots/contact.jpg").mkdir(parents=True)  # the 2nd file cannot land
    with pytest.raises(OSError):
        publish(storage, deliverables(tmp_path / "run"), "film/run-1")
    assert storage.exists("film/run-1/final.mp4") and not storage.exists(f"film/run-1/{MANIFEST}")
    assert not [p for p in (tmp_path / "out").rglob("*.part*")]  # no half-written file either


def test_local_storage_refuses_keys_that_escape_its_folder(tmp_path):
    storage = LocalStorage(folder=tmp_path / "out")
    for key in ("../escape.mp4", "/abs.mp4", "a//b.mp4", "a/./b.mp4", ""):
        with pytest.raises(ValueError):
            storage.put(tmp_path / "x", key)
    with pytest.raises(StorageError, match="no such file"):
        storage.get("missing.mp4", tmp_path / "m.mp4")


def test_s3_errors_are_one_line_name_the_object_and_never_the_secret(server, s3, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)  # botocore logs every request at DEBUG
    (tmp_path / "f.txt").write_text("x")
    wrong_secret = s3.model_copy(update={"aws_secret_access_key": SecretStr("WRONG-SECRET-456")})
    failures = [
        (f"s3://{s3.bucket}/deliveries/film/missing.mp4: no such object (NoSuchKey)",
         lambda: s3.get("film/missing.mp4", tmp_path / "m.mp4")),
        ("s3://no-such-bucket/a.mp4: the bucket does not exist (NoSuchBucket)",
         lambda: s3.get("s3://no-such-bucket/a.mp4", tmp_path / "m.mp4")),
        ("s3://no-such-bucket/f.txt: the bucket does not exist (NoSuchBucket)",
         lambda: s3_storage(server, "no-such-bucket").put(tmp_path / "f.txt", "f.txt")),
        ("s3://no-such-bucket/f.txt: the bucket does not exist (NoSuchBucket)",
         lambda: s3_storage(server, "no-such-bucket").exists("f.txt")),
        (f"s3://{s3.bucket}/deliveries/f.txt: access denied (AccessDenied)",
         lambda: wrong_secret.get("f.txt", tmp_path / "m.mp4")),
        (f"s3://{s3.bucket}/deliveries/f.txt: the secret access key does not match",
         lambda: wrong_secret.put(tmp_path / "f.txt", "f.txt")),
    ]
    for expected, fail in failures:
        with pytest.raises(StorageError) as caught:
            fail()
        message = str(caught.value)
        assert message.startswith(expected) and "\n" not in message
        for secret in (server.secret_key, "WRONG-SECRET-456"):
            assert secret not in message + repr(caught.value)
    assert server.secret_key not in caplog.text and "WRONG-SECRET-456" not in caplog.text
    assert not (tmp_path / "m.mp4").exists()


def test_secret_is_hidden_from_repr_and_dumps(s3):
    assert s3.aws_secret_access_key.get_secret_value() == "SECRET-MARKER-123"
    for shown in (repr(s3), str(s3), str(s3.model_dump()), str(s3.model_dump(mode="json")),
                  s3.model_dump_json()):
        assert "SECRET-MARKER-123" not in shown


def test_blocks_save_and_load_by_name(prefect_server, server, s3, tmp_path):
    LocalStorage(folder=tmp_path / "out").save("storage-test-local", overwrite=True)
    s3.save("storage-test-s3", overwrite=True)
    assert LocalStorage.load("storage-test-local").folder == tmp_path / "out"
    loaded = S3Storage.load("storage-test-s3")
    assert loaded.aws_secret_access_key.get_secret_value() == server.secret_key
    (tmp_path / "f.txt").write_text("saved block works")
    loaded.put(tmp_path / "f.txt", "f.txt")
    assert s3.get("f.txt", tmp_path / "g.txt").read_text() == "saved block works"
