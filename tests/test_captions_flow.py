"""Captions inside the produce flow: a subtitle file read from S3 (or over http) is burnt into the
final edit at its cue times; a broken one stops the run before anything is generated. Against a
real S3 server (rclone serve s3), a loopback web server and the session's Prefect server."""

from __future__ import annotations

import functools
import json
import threading
import uuid
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest

from blocks.media import iter_frames, probe
from blocks.storage_s3 import S3Storage
from tasks.inputs import InputError
from tasks.storyboard import parse_storyboard
from tests.s3server import serve_s3

SUBTITLES = (b"1\r\n00:00:00,250 --> 00:00:00,750\r\nDawn: 100% calm, 'quiet'\r\n\r\n"
             b"2\r\n00:00:01,250 --> 00:00:09,000\r\n<i>the last line runs past the edit</i>\r\n")
BROKEN = b"1\n00:00:00,500 --> 00:00:01,000\nfine\n\n2\n00:00:01,500 --> 00:00:01,200\nbackwards\n"


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    with serve_s3(tmp_path_factory.mktemp("s3")) as server:
        storage = S3Storage(bucket=f"subs-{uuid.uuid4().hex[:8]}", prefix="takeflow",
                            endpoint_url=server.endpoint_url, region_name="us-east-1",
                            aws_access_key_id=server.access_key, aws_secret_access_key=server.secret_key)
        storage.s3_client().create_bucket(Bucket=storage.bucket)
        storage.s3_client().put_object(Bucket=storage.bucket, Key="subs/harbour.srt", Body=SUBTITLES)
        storage.s3_client().put_object(Bucket=storage.bucket, Key="subs/broken.srt", Body=BROKEN)
        storage.save("caption-media", overwrite=True)
        yield storage


def board(captions: str):
    return parse_storyboard({
        "title": "Captioned", "captions": captions,
        "defaults": {"duration": 1, "fps": 12, "takes": 1, "delivery": "720p"},
        "shots": [{"brief": "a harbour at dawn; static camera; soft pink light"},
                  {"brief": "a harbour at dawn; slow pan left; soft pink light"}]})


def run(storyboard, out, **options):
    from flows.produce import RunOptions, produce
    return produce(storyboard=storyboard, options=RunOptions(out_dir=str(out), **options), return_state=True)


def grey_frames(path) -> list[np.ndarray]:
    return [frame.mean(axis=2) for frame in iter_frames(path)]


def test_captions_from_s3_are_burnt_in_at_their_cue_times(prefect_server, s3, tmp_path):
    from tasks.assemble import assemble_edit

    state = run(board(f"s3://{s3.bucket}/subs/harbour.srt"), tmp_path, storage="takeflow-s3-storage/caption-media")
    assert state.is_completed(), state.message
    folder = tmp_path / "captioned"
    final = probe(folder / "final.mp4")
    assert abs(final.duration - 2.0) <= 1 / 12  # the overrunning last cue is clipped, not the edit
    # the same edit without captions, so the caption band's difference is the captions alone
    report = json.loads((folder / "report.json").read_text())
    takes = [folder / next(t["file"] for t in s["takes"] if t["take"] == s["chosen"]) for s in report["shots"]]
    plain = assemble_edit(takes, ["cut"], tmp_path / "plain.mp4", final.width, final.height, 12).dest
    band = slice(int(0.8 * final.height), None)
    change = [float(np.abs(a[band] - b[band]).mean())
              for a, b in zip(grey_frames(folder / "final.mp4"), grey_frames(plain), strict=True)]
    on = [*range(3, 9), *range(15, 24)]  # cue 1 is on for 0.25-0.75 s, cue 2 from 1.25 s, at 12 fps
    assert min(change[i] for i in on) > 5 and max(c for i, c in enumerate(change) if i not in on) < 2, change


def test_a_broken_subtitle_file_stops_the_run_before_any_take(prefect_server, s3, tmp_path):
    state = run(board(f"s3://{s3.bucket}/subs/broken.srt"), tmp_path, storage="takeflow-s3-storage/caption-media")
    assert state.is_failed() and state.name == "InvalidInput"
    assert state.message.startswith("storyboard.captions: ") and "broken.srt" in state.message
    assert "cue 2 (line 6): ends at 00:00:01,200, not after" in state.message
    assert "nothing was spent" in state.message and not (tmp_path / "captioned" / "takes").exists()
    unreadable = run(board(f"s3://{s3.bucket}/subs/harbour.srt"), tmp_path)
    assert unreadable.is_failed() and "options.storage" in unreadable.message


def test_captions_over_http_are_fetched_and_checked(prefect_server, tmp_path):
    from flows.deliverables import load_captions

    (tmp_path / "film.srt").write_bytes(SUBTITLES)
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(SimpleHTTPRequestHandler,
                                                                     directory=str(tmp_path)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        cues = load_captions(board(f"{url}/film.srt"), tmp_path / "out", None)
        assert [(c.start, c.end, c.lines) for c in cues] == [
            (0.25, 0.75, ("Dawn: 100% calm, 'quiet'",)), (1.25, 2.0, ("the last line runs past the edit",))]
        assert list((tmp_path / "out" / "inputs").glob("captions-*.srt"))
        with pytest.raises(InputError, match="HTTP 404"):
            load_captions(board(f"{url}/missing.srt"), tmp_path / "out", None)
    finally:
        server.shutdown()
