"""Hostile and careless input, table-driven: storyboard files, CLI options and deployment parameters.

Every case must be refused with exit code 2 (a deployment run: a Failed state named InvalidInput),
in one line that names the field, without a traceback, before anything is created or spent (the
run's folders, takeflow's ledger and journal, and the loopback server that stands in for remote
inputs are compared before and after), in bounded time and memory. Most cases run in-process;
the ones about resources (a FIFO, a decompression bomb, a 50 MB storyboard, …) run in a fresh
process each so their peak memory is their own.
"""

from __future__ import annotations

import json
import os
import resource
import struct
import subprocess
import sys
import threading
import time
import zlib
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable

import cv2
import numpy as np
import pytest
import yaml

from flows.cli import main

ROOT = Path(__file__).resolve().parents[1]
FOX = {"brief": "a fox trots through snow; slow pan left; soft dusk light"}
SECONDS = 3.0  # the issue's bound for refusing an input; generous on a loaded 2-core machine
MEGABYTES = 300


def board(**top: Any) -> dict:
    return {"title": "t", "shots": [FOX], **top}


def shot(**fields: Any) -> dict:
    return board(shots=[{**FOX, **fields}])


def defaults(**fields: Any) -> dict:
    return board(defaults=fields)


def brush(**fields: Any) -> dict:
    return shot(motion_brush=[{"polygon": [[0.1, 0.1], [0.4, 0.1], [0.4, 0.4]], "direction": "left", **fields}])


def sound(**fields: Any) -> dict:
    return board(sound=fields)


def title_card(**fields: Any) -> dict:
    return board(titles=[{"text": "Hello", **fields}])


def transition(**fields: Any) -> dict:
    return board(shots=[{**FOX, "transition": {"kind": "crossfade", **fields}}, FOX])


# ---- hostile files ------------------------------------------------------------------------------

def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_bomb(side: int = 20000) -> bytes:
    """A valid 1-bit PNG of side x side black pixels: ~60 KB on disk, 400 MP (GBs) decoded."""
    row = b"\x00" * (1 + side // 8)
    squeeze = zlib.compressobj(9)
    body = b"".join(squeeze.compress(row) for _ in range(side)) + squeeze.flush()
    header = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", body) + _chunk(b"IEND", b"")


def small_png(width: int = 64, height: int = 36) -> bytes:
    return cv2.imencode(".png", np.full((height, width, 3), 128, np.uint8))[1].tobytes()


def jpeg_claiming(width: int, height: int) -> bytes:
    """A real JPEG whose frame header claims another size (a decoder would allocate for it)."""
    data = bytearray(cv2.imencode(".jpg", np.full((16, 16, 3), 90, np.uint8))[1].tobytes())
    sof = data.index(b"\xff\xc0")
    data[sof + 5:sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def webp_claiming(width: int, height: int) -> bytes:
    """An extended (VP8X) WebP header claiming a canvas of width x height."""
    chunk = b"VP8X" + struct.pack("<I", 10) + b"\x00" * 4 + (width - 1).to_bytes(3, "little") + \
        (height - 1).to_bytes(3, "little")
    return b"RIFF" + struct.pack("<I", 4 + len(chunk)) + b"WEBP" + chunk


def fifo(path: Path) -> None:
    os.mkfifo(path)


# ---- a loopback stand-in for remote inputs, counting what is asked of it ------------------------

class _Remote(BaseHTTPRequestHandler):
    requests: list[str] = []

    def do_GET(self):  # noqa: N802 (http.server's name)
        _Remote.requests.append(self.path)
        if self.path.startswith("/missing"):
            self.send_response(404)
            self.end_headers()
        elif self.path.startswith("/huge"):
            self.send_response(200)
            self.send_header("Content-Length", str(20 * 2**30))
            self.end_headers()
        else:  # a web page where an image or audio file should be
            body = b"<html><body>Sign in to download</body></html>"
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def remote():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Remote)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def closed_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


# ---- the table -----------------------------------------------------------------------------------

@dataclass
class Case:
    """A storyboard (data, raw text or bytes) plus files beside it and options, and what the one
    line must say. `{remote}` and `{closed}` in the storyboard text become loopback URLs."""

    board: dict | str | bytes | None
    says: str
    args: tuple[str, ...] = ()
    files: dict[str, bytes | Callable[[Path], None]] = field(default_factory=dict)
    name: str = "board.yaml"
    command: str = "validate"
    fetches: int = 0  # requests the case may make of the remote stand-in (fetching the bad input)


NAN, INF = float("nan"), float("inf")
CASES: dict[str, Case] = {
    # the storyboard file itself
    "empty file": Case(b"", "error: board.yaml: is empty"),
    "not utf-8": Case(b"title: \xff\xfe\n", "not UTF-8"),
    "top level a list": Case("- a\n- b\n", "top level must be a mapping"),
    "top level a word": Case("hello\n", "top level must be a mapping"),
    "broken yaml": Case("title: [unclosed\nshots: {\n", "not valid YAML"),
    "broken json": Case('{"title": "t", "shots": [', "not valid JSON", name="board.json"),
    "duplicate key yaml": Case("title: t\ndefaults:\n  budget: 5\n  budget: 1000000000\nshots:\n- brief: a fox\n",
                               "'budget' is given twice"),
    "duplicate key json": Case('{"title": "t", "defaults": {"budget": 5, "budget": 1e9}, "shots": [{"brief": "a"}]}',
                               "'budget' is given twice", name="board.json"),
    "deep yaml": Case("title: t\nshots: " + "[" * 5000 + "]" * 5000 + "\n", "nested more than"),
    "deep json": Case('{"title": "t", "shots": ' + "[" * 50000 + "]" * 50000 + "}", "nested more than",
                      name="board.json"),
    "yaml aliases bomb": Case("a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, "
        f"*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}]\n"
        for i in range(8)), "expands to more than"),
    "python tag": Case("title: !!python/object/apply:os.system ['echo hi']\nshots: [{brief: a}]\n",
                       "line 1: not valid YAML (could not determine a constructor"),
    "missing file": Case(None, "error: nowhere.yaml: no such file", name="nowhere.yaml"),
    "storyboard a directory": Case(None, "is a directory", files={"board.yaml": lambda p: p.mkdir()}),
    "title missing": Case({"shots": [FOX]}, "title: is required"),
    "title only spaces": Case({"title": "   ", "shots": [FOX]}, "title: is empty"),
    "title control characters": Case({"title": "t\x1b]0;pwned\x07", "shots": [FOX]}, "title: has a control"),
    "field in the wrong section": Case(board(music="song.mp3"),
                                       "music: unknown field here; 'music' belongs under sound"),
    "misspelt field": Case(shot(duraton=3), "did you mean 'duration'"),
    "no shots": Case(board(shots=[]), "shots: the storyboard has no shots"),
    "shots a mapping": Case(board(shots={"brief": "x"}), "shots:"),
    "shots a word": Case(board(shots="one"), "shots:"),
    "201 shots": Case(board(shots=[FOX] * 201), "shots: has 201 items; give at most 200"),
    # briefs and the other words of a shot
    "brief only spaces": Case(shot(brief=" \t  "), "shots[0].brief: is empty"),
    "brief only line breaks": Case(shot(brief="\n\n"), "shots[0].brief: is empty"),
    "brief with terminal escapes": Case(shot(brief="a fox \x1b[2J\x1b[31mred"), "shots[0].brief: has a control"),
    "brief with bidi override": Case(shot(brief="a fox \u202eevil"), "shots[0].brief: has a control"),
    "brief with a NUL": Case(shot(brief="a fox\x00"), "shots[0].brief: has a control"),
    "brief over the length cap": Case(shot(brief="a fox " * 2000), "shots[0].brief: is 12000 characters"),
    "brief over the model's limit": Case(shot(brief="a fox trots " * 100, provider="runway", model="gen4.5"),
                                         "shots[0].brief: the prompt is"),
    "subject a number": Case(board(shots=[{"subject": 5}]), "shots[0].subject"),
    "brief a list": Case(board(shots=[{"brief": ["a", "b"]}]), "shots[0].brief"),
    "no brief nor subject": Case(board(shots=[{"camera": "static"}]), "needs a brief"),
    "shot id with spaces": Case(shot(id="my shot!"), "shots[0].id: 'my shot!' is not allowed; use 1-40 letters"),
    "duplicate shot ids": Case(board(shots=[{**FOX, "id": "a"}, {**FOX, "id": "a"}]), "shots[1].id: 'a' is used twice"),
    "first shot continues": Case(shot(continues=True), "shots[0].continues"),
    "continues with a reference": Case(board(shots=[FOX, {**FOX, "continues": True, "reference_image": "r.png"}]),
                                       "shots[1]", files={"r.png": small_png()}),
    "unknown provider": Case(shot(provider="acme"), "shots[0].provider: unknown provider 'acme'"),
    "unknown model": Case(shot(model="gen9"), "shots[0].model"),
    "unknown fallback": Case(shot(fallback_model="nosuch/x"), "shots[0].fallback_model"),
    "models empty": Case(shot(models=[]), "shots[0].models"),
    # numbers: non-finite, booleans, words, out of range, in every numeric field
    "defaults.duration nan": Case("title: t\ndefaults: {duration: .nan}\nshots: [{brief: a fox}]\n",
                                  "defaults.duration: is nan, not a finite number"),
    "defaults.duration inf": Case("title: t\ndefaults: {duration: .inf}\nshots: [{brief: a fox}]\n",
                                  "defaults.duration: is inf, not a finite number"),
    "defaults.duration 1e999 json": Case('{"title": "t", "defaults": {"duration": 1e999}, "shots": [{"brief": "a"}]}',
                                         "defaults.duration: is inf", name="board.json"),
    "defaults.duration NaN json": Case('{"title": "t", "defaults": {"duration": NaN}, "shots": [{"brief": "a"}]}',
                                       "defaults.duration", name="board.json"),
    "defaults.duration true": Case(defaults(duration=True), "defaults.duration: should be a number, not true"),
    "defaults.duration a word": Case(defaults(duration="five"), "defaults.duration"),
    "defaults.duration 100": Case(defaults(duration=100), "defaults.duration"),
    "defaults.fps nan": Case(defaults(fps=NAN), "defaults.fps"),
    "defaults.fps zero": Case(defaults(fps=0), "defaults.fps"),
    "defaults.fps fractional": Case(defaults(fps=23.976), "defaults.fps"),
    "defaults.fps 1000": Case(defaults(fps=1000), "defaults.fps"),
    "fps too low for the shot": Case(defaults(fps=1), "too few to judge its motion"),
    "shot too short for its fps": Case(shot(duration=0.25), "shots[0].duration: 0.25 s at 24 fps"),
    "defaults.takes nan": Case(defaults(takes=NAN), "defaults.takes"),
    "defaults.takes 10000": Case(defaults(takes=10000), "defaults.takes"),
    "defaults.takes true": Case(defaults(takes=True), "defaults.takes: should be a number, not true"),
    "defaults.budget nan": Case(defaults(budget=NAN), "defaults.budget: is nan, not a finite number"),
    "defaults.budget inf": Case(defaults(budget=INF), "defaults.budget: is inf, not a finite number"),
    "defaults.budget negative": Case(defaults(budget=-5), "defaults.budget"),
    "defaults.budget true": Case(defaults(budget=True), "defaults.budget: should be a number, not true"),
    "defaults.budget_name pattern": Case(defaults(budget_name="Team Budget!"), "defaults.budget_name"),
    "defaults.motion_amount nan": Case(defaults(motion_amount=NAN), "defaults.motion_amount"),
    "defaults.motion_amount 2": Case(defaults(motion_amount=2), "defaults.motion_amount"),
    "defaults.quality_bar inf": Case(defaults(quality_bar=INF), "defaults.quality_bar"),
    "defaults.extra_takes nan": Case(defaults(extra_takes=NAN), "defaults.extra_takes"),
    "shots.duration nan": Case(shot(duration=NAN), "shots[0].duration: is nan"),
    "shots.duration -inf": Case(shot(duration=-INF), "shots[0].duration"),
    "shots.takes inf": Case(shot(takes=INF), "shots[0].takes"),
    "shots.motion_amount nan": Case(shot(motion_amount=NAN), "shots[0].motion_amount"),
    "draft.duration nan": Case(shot(draft={"duration": NAN}), "shots[0].draft.duration"),
    "draft.duration true": Case(shot(draft={"duration": True}), "shots[0].draft.duration"),
    "draft longer than the shot": Case(shot(draft={"duration": 30}), "shots[0].draft.duration"),
    "transition.duration nan": Case(transition(duration=NAN), "shots[0].transition.duration"),
    "transition.duration inf": Case(transition(duration=INF), "shots[0].transition.duration"),
    "transition longer than shot": Case(transition(duration=5), "shots[0].transition"),
    "brush direction inf": Case(brush(direction=INF), "shots[0].motion_brush[0].direction: is inf"),
    "brush direction nan": Case(brush(direction=NAN), "shots[0].motion_brush[0].direction: is nan"),
    "brush direction a word": Case(brush(direction="sideways"), "shots[0].motion_brush[0].direction"),
    "brush speed nan": Case(brush(speed=NAN), "shots[0].motion_brush[0].speed"),
    "brush speed zero": Case(brush(speed=0), "shots[0].motion_brush[0].speed"),
    "brush speed 5": Case(brush(speed=5), "shots[0].motion_brush[0].speed"),
    "brush vertex nan": Case(brush(polygon=[[0.1, NAN], [0.4, 0.1], [0.4, 0.4]]), "shots[0].motion_brush[0].polygon"),
    "brush vertex outside": Case(brush(polygon=[[0.1, 0.1], [1.4, 0.1], [0.4, 0.4]]),
                                 "shots[0].motion_brush[0].polygon"),
    "brush two vertices": Case(brush(polygon=[[0.1, 0.1], [0.4, 0.1]]), "shots[0].motion_brush[0].polygon"),
    "brush in a line": Case(brush(polygon=[[0.1, 0.1], [0.2, 0.2], [0.3, 0.3]]), "has no area"),
    "brush regions touching": Case(shot(motion_brush=[
        {"polygon": [[0, 0], [0.5, 0], [0.5, 1]], "direction": "up"},
        {"polygon": [[0.5, 0], [1, 0], [1, 1]], "direction": "down"}]), "shots[0].motion_brush: regions 0 and 1"),
    "sound.music_gain_db nan": Case(sound(music_gain_db=NAN), "sound.music_gain_db"),
    "sound.loudness inf": Case(sound(loudness=INF), "sound.loudness"),
    "sound.voice_over_start nan": Case(sound(voice_over_start=NAN), "sound.voice_over_start"),
    "sound.fade_in inf": Case(sound(fade_in=INF), "sound.fade_in"),
    "sound.fade_out true": Case(sound(fade_out=True), "sound.fade_out"),
    "titles.start nan": Case(title_card(start=NAN), "titles[0].start"),
    "titles.duration inf": Case(title_card(duration=INF), "titles[0].duration"),
    "title after the edit": Case(title_card(start=60), "titles[0]: ends at"),
    "title text control characters": Case(title_card(text="hi\x1b[5m"), "titles[0].text: has a control"),
    # words that must be one of a few
    "unquoted 16:9": Case("title: t\ndefaults:\n  aspect_ratio: 16:9\nshots:\n- brief: a fox\n",
                          'quote it: aspect_ratio: "16:9"'),
    "unquoted 9:16": Case("title: t\ndefaults:\n  aspect_ratio: 9:16\nshots:\n- brief: a fox\n",
                          'quote it: aspect_ratio: "9:16"'),
    "aspect 21:9": Case(defaults(aspect_ratio="21:9"), "defaults.aspect_ratio"),
    "delivery 8k": Case(defaults(delivery="8k"), "defaults.delivery"),
    "resolution 2k": Case(shot(resolution="2k"), "shots[0].resolution"),
    "transition a word": Case(shot(transition="wipe"), "shots[0].transition.kind"),
    "dip colour unknown name": Case(board(defaults={"transition": {"kind": "dip", "color": "blurple"}},
                                          shots=[FOX, FOX]),
                                    "defaults.transition.color: ffmpeg knows no colour 'blurple'"),
    "dip colour bad hex": Case(board(defaults={"transition": {"kind": "dip", "color": "#ggg"}}, shots=[FOX, FOX]),
                               "defaults.transition.color: '#ggg' is not allowed; give a colour name"),
    "dip colour unquoted hex": Case("title: t\ndefaults:\n  transition:\n    kind: dip\n    color: #ff8800\n"
                                    "shots: [{brief: a fox}, {brief: a cat}]\n",
                                    "defaults.transition.color: is empty; YAML reads an unquoted #rrggbb as a comment"),
    "budget_policy bogus": Case(defaults(budget_policy="maybe"), "defaults.budget_policy"),
    "vertical reframe of 9:16": Case(defaults(aspect_ratio="9:16", vertical_reframe=True), "defaults.vertical_reframe"),
    "upscaler unknown": Case(defaults(upscaler="nosuch/model"), "defaults.upscaler"),
    # reference images, music, voice-over and captions
    "reference missing": Case(shot(reference_image="missing.png"),
                              "shots[0].reference_image: missing.png: no such file"),
    "reference a directory": Case(shot(reference_image="refs"), "shots[0].reference_image: refs: is a directory",
                                  files={"refs": lambda p: p.mkdir()}),
    "reference empty": Case(shot(reference_image="r.png"), "shots[0].reference_image: r.png: is empty",
                            files={"r.png": b""}),
    "reference is text": Case(shot(reference_image="r.png"), "shots[0].reference_image: r.png: is not an image",
                              files={"r.png": b"hello, not an image\n"}),
    "reference truncated png": Case(shot(reference_image="r.png"), "shots[0].reference_image",
                                    files={"r.png": small_png()[:60]}),
    "reference huge jpeg header": Case(shot(reference_image="r.jpg"), "shots[0].reference_image: r.jpg: is 60000x60000",
                                       files={"r.jpg": jpeg_claiming(60000, 60000)}),
    "reference huge png": Case(shot(reference_image="r.png"), "shots[0].reference_image: r.png: is 20000x20000",
                               files={"r.png": lambda p: p.write_bytes(png_bomb())}),
    "reference huge webp header": Case(shot(reference_image="r.webp"),
                                       "shots[0].reference_image: r.webp: is 30000x9000",
                                       files={"r.webp": webp_claiming(30000, 9000)}),
    "reference path control characters": Case(shot(reference_image="r\x1b[2J.png"), "shots[0].reference_image"),
    "reference s3 without storage": Case(shot(reference_image="s3://bucket/ref.png"),
                                         "shots[0].reference_image: s3://bucket/ref.png is on S3; pass --storage"),
    "reference unreachable url": Case(shot(reference_image="http://127.0.0.1:{closed}/ref.png"),
                                      "shots[0].reference_image: cannot fetch"),
    "reference url 404": Case(shot(reference_image="{remote}/missing.png"),
                              "shots[0].reference_image: {remote}/missing.png answered HTTP 404", fetches=1),
    "reference url a web page": Case(shot(reference_image="{remote}/page.png"),
                                     "shots[0].reference_image: {remote}/page.png is not a PNG, JPEG or WebP file "
                                     "(the server "
                                     "sent text/html)", fetches=1),
    "reference url 20 GB": Case(shot(reference_image="{remote}/huge.png"),
                                "shots[0].reference_image: {remote}/huge.png is 20480 MB, over", fetches=1),
    "reference ftp url": Case(shot(reference_image="ftp://example.com/r.png"),
                              "shots[0].reference_image: ftp:// is not supported"),
    "motion reference missing": Case(shot(motion_reference="moves.mp4"),
                                     "shots[0].motion_reference: moves.mp4: no such file"),
    "motion reference a FIFO": Case(shot(motion_reference="moves.mp4"),
                                    "shots[0].motion_reference: moves.mp4: is a FIFO",
                                    files={"moves.mp4": fifo}),
    "motion reference is text": Case(shot(motion_reference="moves.mp4"), "shots[0].motion_reference",
                                     files={"moves.mp4": b"not a video at all\n"}),
    "motion reference s3 without storage": Case(shot(motion_reference="s3://bucket/moves.mp4"),
                                                "shots[0].motion_reference: s3://bucket/moves.mp4 is on S3"),
    "motion reference a web page": Case(shot(motion_reference="{remote}/moves.mp4"),
                                        "shots[0].motion_reference: {remote}/moves.mp4 is not an MP4", fetches=1),
    "music missing": Case(sound(music="song.mp3"), "sound.music: song.mp3: no such file"),
    "music not audio": Case(sound(music="song.mp3"), "sound.music", files={"song.mp3": small_png()}),
    "music s3 without storage": Case(sound(music="s3://bucket/song.mp3"), "sound.music: s3://bucket/song.mp3 is on S3"),
    "music unreachable url": Case(sound(music="http://127.0.0.1:{closed}/song.mp3"), "sound.music: cannot fetch"),
    "voice-over a web page": Case(sound(voice_over="{remote}/vo.wav"),
                                  "sound.voice_over: {remote}/vo.wav is not an audio file (WAV, MP3, M4A, AAC or FLAC) "
                                  "(the server sent text/html)",
                                  fetches=1),
    "captions missing": Case(board(captions="subs.srt"), "captions: subs.srt: no such file"),
    "captions not subtitles": Case(board(captions="subs.srt"), "captions", files={"subs.srt": b"just words\n"}),
    "captions s3 without storage": Case(board(captions="s3://bucket/subs.srt"),
                                        "captions: s3://bucket/subs.srt is on S3"),
    # options on the command line
    "--takes nan": Case(board(), "--takes: 'nan' is not allowed", args=("--takes", "nan")),
    "--takes inf": Case(board(), "--takes: 'inf' is not allowed", args=("--takes", "inf")),
    "--takes 10000": Case(board(), "--takes: '10000' is not allowed; give a whole number from 1 to 16",
                          args=("--takes", "10000")),
    "--takes 0": Case(board(), "--takes: '0' is not allowed", args=("--takes", "0")),
    "--takes 2.5": Case(board(), "--takes: '2.5' is not allowed", args=("--takes", "2.5")),
    "--takes a word": Case(board(), "--takes: 'three' is not allowed", args=("--takes", "three")),
    "--budget nan (produce)": Case(board(), "--budget: 'nan' is not allowed", args=("--budget", "nan"),
                                   command="produce"),
    "--budget inf (estimate)": Case(board(), "--budget: 'inf' is not allowed", args=("--budget", "inf"),
                                    command="estimate"),
    "--budget 1e999 (produce)": Case(board(), "--budget:", args=("--budget", "1e999"), command="produce"),
    "--budget negative (produce)": Case(board(), "--budget: '-3' is not allowed", args=("--budget=-3",),
                                        command="produce"),
    "--takes 10000 (produce)": Case(board(), "--takes: '10000' is not allowed", args=("--takes", "10000"),
                                    command="produce"),
    "--policy bogus (produce)": Case(board(), "--policy", args=("--policy", "maybe"), command="produce"),
    "unknown option": Case(board(), "--frobnicate", args=("--frobnicate",)),
    "produce a 16:9 storyboard": Case("title: t\ndefaults:\n  aspect_ratio: 16:9\nshots:\n- brief: a fox\n",
                                      "aspect_ratio", command="produce"),
    "produce an s3 reference": Case(shot(reference_image="s3://bucket/ref.png"), "shots[0].reference_image",
                                    command="produce"),
    "produce with a bad dip colour": Case(board(defaults={"transition": {"kind": "dip", "color": "blurple"}},
                                                shots=[FOX, FOX]), "defaults.transition.color", command="produce"),
}
COMMANDS = {  # options that are not about a storyboard
    "models --provider nosuch": (["models", "--provider", "nosuch"], "--provider: unknown provider 'nosuch'"),
    "simulate --latency nan": (["simulate", "--latency", "nan"], "--latency"),
    "simulate --fault-rate 2": (["simulate", "--fault-rate", "2"], "--fault-rate"),
    "simulate --port 80": (["simulate", "--port", "80"], "--port"),
    "no command": ([], "command"),
    "unknown command": (["render"], "render"),
}


def _tree(*folders: Path) -> set[tuple[str, int]]:
    return {(str(p), p.stat().st_size if p.is_file() else -1) for folder in folders if folder.exists()
            for p in folder.rglob("*")}


def _write_case(case: Case, folder: Path, remote: str) -> Path:
    for name, content in case.files.items():
        (content(folder / name) if callable(content) else (folder / name).write_bytes(content))
    path = folder / case.name
    if case.board is not None and not path.exists():
        text = case.board if isinstance(case.board, (str, bytes)) else (
            json.dumps(case.board) if case.name.endswith(".json") else yaml.safe_dump(case.board))
        if isinstance(text, str):
            text = text.replace("{remote}", remote).replace("{closed}", str(closed_port()))
        path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return path


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def refuse(argv: list[str], capsys, watched: list[Path]) -> tuple[int, str]:
    """Run the command in-process; the exit code and stderr, checked for the common rules."""
    before, peak, clock = _tree(*watched), _peak_mb(), time.perf_counter()
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse's own refusals
        code = exc.code
    elapsed, grown = time.perf_counter() - clock, _peak_mb() - peak
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.count("\n") == 1 and err.startswith("error: "), err
    assert "Traceback" not in err and "\x1b" not in err, err
    assert _tree(*watched) == before, "the refused command created or changed files"
    assert elapsed < SECONDS and grown < MEGABYTES, (elapsed, grown)
    return code, err


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_storyboard_or_option_is_refused_in_one_line(name, remote, tmp_path, capsys):
    case = CASES[name]
    path = _write_case(case, tmp_path, remote)
    _Remote.requests.clear()
    out = tmp_path / "out"
    argv = [case.command, str(path), *case.args, *(["--out", str(out)] if case.command == "produce" else [])]
    _, err = refuse(argv, capsys, [tmp_path, Path(os.environ["TAKEFLOW_HOME"])])
    assert case.says.replace("{remote}", remote) in err, err
    assert len(_Remote.requests) <= case.fetches, _Remote.requests
    assert not out.exists()


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_bad_command_line_is_refused_in_one_line(name, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    argv, says = COMMANDS[name]
    _, err = refuse(argv, capsys, [tmp_path, Path(os.environ["TAKEFLOW_HOME"])])
    assert says in err, err


# ---- resources: each in a process of its own, its peak memory and refusal time measured ---------

def _bigger_than_allowed(path: Path) -> None:
    """A 50 MB storyboard: one shot whose brief is 50 MB of words."""
    with path.open("w") as out:
        out.write("title: t\nshots:\n- brief: \"")
        out.write("a fox trots through the snow " * (50 * 2**20 // 29))
        out.write("\"\n")


def _near_the_limit(path: Path) -> None:
    """Just under the 2 MB storyboard limit, all of it parsed and validated: 200 shots of long
    words, the last with a field that does not exist."""
    words = {part: ("a fox trots " * 160)[:1900] for part in ("subject", "action", "environment", "camera", "lighting")}
    shots = [dict(words) for _ in range(199)] + [{**words, "colour": "red"}]  # no YAML aliases
    path.write_text(yaml.safe_dump(board(shots=shots), width=10**6))
    assert 1.8 * 2**20 < path.stat().st_size < 2 * 2**20


RESOURCE_CASES = {
    "storyboard is a FIFO": ("board.yaml", {"board.yaml": fifo}, "is a FIFO"),
    "50 MB storyboard": ("board.yaml", {"board.yaml": _bigger_than_allowed}, "over the 2 MB limit"),
    "storyboard near the limit": ("board.yaml", {"board.yaml": _near_the_limit}, "shots[199].colour"),
    "reference is a FIFO": ("board.yaml", {"r.png": fifo, "board.yaml": lambda p: p.write_text(yaml.safe_dump(
        shot(reference_image="r.png")))}, "shots[0].reference_image: r.png: is a FIFO"),
    "music is a FIFO": ("board.yaml", {"m.wav": fifo, "board.yaml": lambda p: p.write_text(yaml.safe_dump(
        sound(music="m.wav")))}, "sound.music: m.wav: is a FIFO"),
    "decompression bomb reference": ("board.yaml", {"r.png": lambda p: p.write_bytes(png_bomb()),
                                                    "board.yaml": lambda p: p.write_text(yaml.safe_dump(
                                                        shot(reference_image="r.png")))},
                                     "shots[0].reference_image: r.png: is 20000x20000 (400 MP)"),
}
# The child's own peak: VmHWM is reset by exec, where ru_maxrss would carry over pytest's
# size from the fork.
_CHILD = """
import json, re, sys, time
import flows.cli
clock = time.perf_counter()
code = flows.cli.main(sys.argv[1:])
seconds = time.perf_counter() - clock
peak = re.search(r"VmHWM:\\s+(\\d+) kB", open("/proc/self/status").read())
print(json.dumps({"code": code, "seconds": seconds, "mb": int(peak.group(1)) / 1024}))
"""


@pytest.mark.parametrize("name", sorted(RESOURCE_CASES))
def test_resource_hostile_input_is_refused_fast_and_small(name, tmp_path):
    storyboard, files, says = RESOURCE_CASES[name]
    for file, make in files.items():
        make(tmp_path / file)
    before = _tree(tmp_path)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", _CHILD, "validate", str(tmp_path / storyboard)], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120, env=env)
    measured = json.loads(done.stdout.strip().splitlines()[-1])
    assert measured["code"] == 2 and done.returncode == 0, done.stderr
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr and says in done.stderr, done.stderr
    assert _tree(tmp_path) == before
    # Peak memory of the whole process, Python and Prefect's imports (~125 MB) included.
    assert measured["seconds"] < SECONDS and measured["mb"] < MEGABYTES, measured
    print(f"{name}: refused in {measured['seconds']:.2f} s, peak {measured['mb']:.0f} MB")


# ---- deployment parameters: a run of the produce flow, as a deployment's worker starts it -------

DEPLOYMENT_CASES = {
    "storyboard a word": ("harbour", {}, "storyboard: the top level must be a mapping"),
    "storyboard nan duration": (defaults(duration=NAN), {}, "storyboard.defaults.duration: is nan"),
    "storyboard inf budget": (defaults(budget=INF), {}, "storyboard.defaults.budget: is inf"),
    "storyboard brush direction inf": (brush(direction=INF), {},
                                       "storyboard.shots[0].motion_brush[0].direction: is inf"),
    "storyboard whitespace brief": (shot(brief="   "), {}, "storyboard.shots[0].brief: is empty"),
    "options.takes 10000": (board(), {"takes": 10000}, "options.takes"),
    "options.takes nan": (board(), {"takes": NAN}, "options.takes"),
    "options.budget inf": (board(), {"budget": INF}, "options.budget"),
    "options.budget true": (board(), {"budget": True}, "options.budget"),
    "options.budget_name bad": (board(), {"budget_name": "Team!"}, "options.budget_name"),
    "options.policy bogus": (board(), {"policy": "maybe"}, "options.policy"),
    "options misspelt": (board(), {"out_dri": "elsewhere"}, "options.out_dri: unknown field"),
    "relative reference, no inputs_dir": (shot(reference_image="refs/harbour.png"), {},
                                          "storyboard.shots[0].reference_image: harbour.png: no such file"),
    "reference missing from inputs_dir": (shot(reference_image="harbour.png"), {"inputs_dir": "/nonexistent/inputs"},
                                          "storyboard.shots[0].reference_image: harbour.png: no such file"),
    "s3 reference without options.storage": (shot(reference_image="s3://bucket/ref.png"), {},
                                             "storyboard.shots[0].reference_image: s3://bucket/ref.png is on S3; "
                                             "pass options.storage"),
    "unreachable reference url": (shot(reference_image="http://127.0.0.1:{closed}/ref.png"), {},
                                  "storyboard.shots[0].reference_image: cannot fetch"),
}


@pytest.mark.parametrize("name", sorted(DEPLOYMENT_CASES))
def test_bad_deployment_parameters_fail_the_run_in_one_line(name, prefect_server, tmp_path, monkeypatch):
    from flows.produce import produce

    data, options, says = DEPLOYMENT_CASES[name]
    data = json.loads(json.dumps(data).replace("{closed}", str(closed_port())))  # as the API hands it over
    monkeypatch.chdir(tmp_path)  # the worker's folder
    home = Path(os.environ["TAKEFLOW_HOME"])
    before, clock = _tree(tmp_path, home), time.perf_counter()
    state = produce(storyboard=data, options={"out_dir": str(tmp_path / "out"), **options}, return_state=True)
    assert time.perf_counter() - clock < 30  # a flow run on the test server, not only the checks
    assert state.is_failed() and state.name == "InvalidInput", state
    assert state.message.count("\n") == 0 and says in state.message and "nothing was spent" in state.message, \
        state.message
    assert _tree(tmp_path, home) == before and not (tmp_path / "out").exists()
