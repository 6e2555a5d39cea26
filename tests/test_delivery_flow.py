"""The produce flow delivers a graded, titled, mixed edit in one pass, with its EDL and a 9:16
reframe, at the storyboard's loudness."""

from __future__ import annotations

import csv
import json
import subprocess

from blocks.media import FFMPEG, probe
from tasks.audio import integrated_loudness
from tasks.storyboard import parse_storyboard

SHOT = {"brief": "a lighthouse on a cliff; slow pan left; warm dusk light"}


def test_sound_titles_grade_edl_and_vertical_reframe(prefect_server, tmp_path):
    from flows.produce import RunOptions, produce

    subprocess.run([FFMPEG, "-loglevel", "error", "-f", "lavfi", "-i", "sine=frequency=330:duration=1",
                    str(tmp_path / "bed.wav")], check=True)
    board = parse_storyboard({
        "title": "Delivered", "defaults": {"duration": 1.5, "fps": 12, "takes": 1, "delivery": "720p",
                                           "colour_match": "first", "vertical_reframe": True,
                                           "transition": {"kind": "fade_black", "duration": 0.5}},
        "shots": [{"id": "dusk", **SHOT},
                  {"id": "noon", "brief": "a lighthouse on a cliff; slow pan right; harsh noon sun"}],
        "sound": {"music": "bed.wav", "music_fit": "loop", "loudness": -16},
        "titles": [{"text": "Harbour", "start": 0.2, "duration": 1}]}, tmp_path)
    state = produce(storyboard=board, options=RunOptions(out_dir=str(tmp_path)), return_state=True)
    assert state.is_completed(), state.message
    folder = tmp_path / "delivered"
    report = json.loads((folder / "report.json").read_text())
    assert report["deliverables"] == ["edit.csv", "final-9x16.mp4", "final.mp4", "poster.jpg"]

    final = probe(folder / "final.mp4")
    assert (final.width, final.height, final.has_audio) == (1280, 720, True)
    assert abs(final.duration - 2.5) <= 1 / 12
    assert abs(integrated_loudness(folder / "final.mp4") - -16) <= 1
    vertical = probe(folder / "final-9x16.mp4")
    assert (vertical.width, vertical.height, vertical.frames, vertical.has_audio) == (720, 1280, final.frames, True)

    rows = list(csv.DictReader((folder / "edit.csv").open()))
    assert [row["name"] for row in rows] == ["dusk", "noon"]
    assert report["shots"][0]["grade"] is None and report["shots"][1]["grade"]["gain"] != [1, 1, 1]
