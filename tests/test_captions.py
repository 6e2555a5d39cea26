"""Captions from SubRip files: parsing real-world files, refusing broken ones with one line naming
the file and the cue, drawing hostile text exactly as written, and burning the cues into the
single-pass assembly at the right frames (checked by reading the frames back)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest

from blocks.media import FFMPEG, iter_frames, probe
from tasks.assemble import assemble_edit, count_video_encodes
from tasks.edit import Title
from tasks.overlays import (MAX_CAPTION_LINES, caption_font_problem, caption_layout, caption_style,
                            drawtext_filter, filter_value)
from tasks.srt import Cue, SubtitleError, fit_to_edit, parse_srt, read_srt
from tasks.storyboard import StoryboardError, parse_storyboard

W, H, FPS = 320, 180, 24
GREY = "0x707070"
NASTY = ["It's 100% \"done\": C:\\path\\n [a],b;c=d", "%{pts} %{localtime} %% \\\\ '' ; , = : [out]",
         "l'été à 5 €, {braces} & <angle> \\'"]


def srt(*cues: tuple[str, str, str], newline: str = "\n") -> bytes:
    blocks = [f"{n}{newline}{start} --> {end}{newline}{text.replace(chr(10), newline)}"
              for n, (start, end, text) in enumerate(cues, 1)]
    return (newline * 2).join(blocks).encode() + newline.encode()


# ---- parsing -------------------------------------------------------------------------------------


def test_bom_crlf_dot_millis_multiline_and_tags():
    data = b"\xef\xbb\xbf" + srt(("00:00:01,000", "00:00:02.5", "<i>Hello</i>, <font color=\"#fff\">world</font>\n"
                                                               "{\\an8}second   line"),
                                 ("00:00:03.25", "00:00:04,000", "a < b, <b>bold</b>"), newline="\r\n")
    first, second = parse_srt(data, "film.srt")
    assert (first.number, first.start, first.end) == (1, 1.0, 2.5)
    assert first.lines == ("Hello, world", "second line")
    assert (second.start, second.lines) == (3.25, ("a < b, bold",))


def test_forgiving_forms_are_read():
    data = (b"00:01,000 --> 00:02,000 X1:10 X2:90 Y1:10 Y2:90\nno number, no hours, a position\n"
            b"7\n00:00:05,000 --> 00:00:06,000\nno blank line before me\n\n\n"
            b"3\r00:00:03,000 --> 00:00:04,000\rCR line ends, out of order\r\r"
            b"4\n00:00:04,500 --> 00:00:04,900\n<i></i>\n")
    cues = parse_srt(data, "loose.srt")
    assert [(c.number, c.start, c.end) for c in cues] == [(1, 1.0, 2.0), (3, 3.0, 4.0), (7, 5.0, 6.0)]
    assert cues[1].lines == ("CR line ends, out of order",)  # the empty cue 4 is left out


def test_utf16_with_bom_is_read():
    text = srt(("00:00:00,000", "00:00:01,000", "über café")).decode()
    assert parse_srt(text.encode("utf-16"), "u16.srt")[0].lines == ("über café",)


def test_overlapping_cues_end_where_the_next_starts():
    cues = parse_srt(srt(("00:00:01,000", "00:00:03,000", "a"), ("00:00:02,000", "00:00:04,000", "b")), "o.srt")
    assert [(c.start, c.end) for c in cues] == [(1.0, 2.0), (2.0, 4.0)]


@pytest.mark.parametrize("data, words", [
    (b"1\n00:00:01,000 --> 00:00:02,000\nok\n\n2\n00:00:03,000 -> 00:00:04,000\nx\n",
     "bad.srt: cue 2 (line 6): '00:00:03,000 -> 00:00:04,000' is not a timing line; write it as HH:MM:SS,mmm"),
    (b"1\n00:00:02,000 --> 00:00:01,000\nbackwards\n", "bad.srt: cue 1 (line 2): ends at 00:00:01,000, not after"),
    (b"1\n00:00:01,000 --> 00:00:01,000\nzero\n", "cue 1 (line 2): ends at 00:00:01,000, not after"),
    (b"1\n00:00:01,000 --> 00:00:02,000\nx\n\nstray words\n",
     "bad.srt: line 5: 'stray words' is not part of any cue"),
    (b"12\nhello\n", "bad.srt: cue 12 (line 2): 'hello' is not a timing line"),
    (b"1\n00:00:75,000 --> 00:00:76,000\nx\n", "cue 1 (line 2): '00:00:75,000 --> 00:00:76,000' has minutes or "
                                                "seconds above 59"),
    (b"1\n00:00:01,000 --> 00:00:02,000\ncaf\xe9\n", "bad.srt: is not UTF-8 text (byte 0xe9 at offset 35)"),
    (b"", "bad.srt: has no cues"),
    (b"Title of the film\n\n1\n00:00:01,000 --> 00:00:02,000\nx\n\n2\n", "bad.srt: line 1: 'Title of the film' "
                                                                         "is not part of any cue"),
    (b"\x00\x01\x02binary", "bad.srt: is not a text file"),
    (srt(("00:00:01,000", "00:00:02,000", "a"), ("00:00:01,000", "00:00:03,000", "b")),
     "bad.srt: cue 2 starts at 00:00:01,000, together with cue 1; merge them"),
])
def test_broken_files_are_refused_naming_file_and_cue(data, words):
    with pytest.raises(SubtitleError) as caught:
        parse_srt(data, "bad.srt")
    assert words in str(caught.value) and "\n" not in str(caught.value)


def test_unreadable_and_oversized_files_are_named(tmp_path):
    with pytest.raises(SubtitleError, match="missing.srt: cannot read it"):
        read_srt(tmp_path / "missing.srt")
    huge = tmp_path / "huge.srt"
    huge.write_bytes(b"x" * (3 * 2**20))
    with pytest.raises(SubtitleError, match="huge.srt: is 3.0 MB"):
        read_srt(huge)


def test_cues_past_the_end_are_refused_and_overrunning_ones_clipped():
    cues = parse_srt(srt(("00:00:01,000", "00:00:02,500", "runs over"), ("00:00:02,000", "00:00:03,000", "late")),
                     "cut.srt")
    with pytest.raises(SubtitleError, match="cut.srt: cue 2 starts at 00:00:02,000, after the edit ends "
                                            r"\(00:00:02,000\); remove the cues past the end"):
        fit_to_edit(cues, 2.0, "cut.srt")
    assert [(c.start, c.end) for c in fit_to_edit(cues[:1], 1.5, "cut.srt")] == [(1.0, 1.5)]


# ---- the storyboard field ------------------------------------------------------------------------


def board(tmp_path, captions: str, duration: float = 3, **extra):
    return parse_storyboard({"title": "t", "defaults": {"duration": duration}, "captions": captions,
                             "shots": [{"brief": "a fox; static camera; dusk light"}], **extra}, tmp_path)


def test_storyboard_resolves_local_captions_and_keeps_remote_ones(tmp_path):
    (tmp_path / "subs").mkdir()
    (tmp_path / "subs" / "film.srt").write_bytes(srt(("00:00:00,500", "00:00:01,000", "hi")))
    assert board(tmp_path, "subs/film.srt").captions == str((tmp_path / "subs" / "film.srt").resolve())
    for remote in ("s3://media/film.srt", "https://example.com/film.srt"):
        assert board(tmp_path, remote).captions == remote  # read when the run starts


@pytest.mark.parametrize("content, words", [
    (b"1\n00:00:02,000 --> 00:00:01,000\nx\n", "board.yaml: captions: film.srt: cue 1 (line 2): ends at"),
    (srt(("00:00:03,500", "00:00:04,000", "x")), "captions: film.srt: cue 1 starts at 00:00:03,500, after the "
                                                 "edit ends (00:00:03,000)"),
])
def test_storyboard_refuses_bad_captions_in_one_line(tmp_path, content, words):
    from tasks.storyboard import load_storyboard

    (tmp_path / "film.srt").write_bytes(content)
    (tmp_path / "board.yaml").write_text("title: t\ndefaults: {duration: 3}\ncaptions: film.srt\n"
                                         "shots: [{brief: a fox}]\n")
    with pytest.raises(StoryboardError) as caught:
        load_storyboard(tmp_path / "board.yaml")
    assert words in str(caught.value) and "\n" not in str(caught.value)
    with pytest.raises(StoryboardError, match=r"^captions: nope.srt: no such file"):
        board(tmp_path, "nope.srt")


def test_a_machine_without_fonts_is_told_before_anything_runs(tmp_path, monkeypatch):
    config = tmp_path / "fonts.conf"
    config.write_text('<?xml version="1.0"?><!DOCTYPE fontconfig SYSTEM "fonts.dtd"><fontconfig></fontconfig>')
    (tmp_path / "film.srt").write_bytes(srt(("00:00:00,500", "00:00:01,000", "hi")))
    monkeypatch.setenv("FONTCONFIG_FILE", str(config))
    caption_font_problem.cache_clear()
    try:
        with pytest.raises(StoryboardError, match="captions: ffmpeg cannot draw caption text here .*font.*; "
                                                  "install a TrueType font"):
            board(tmp_path, "film.srt")
    finally:
        monkeypatch.delenv("FONTCONFIG_FILE")
        caption_font_problem.cache_clear()
    assert caption_font_problem() is None


# ---- drawing -------------------------------------------------------------------------------------


def draw(graph: str) -> np.ndarray:
    """The first frame of a grey 640x120 picture through `graph`, as grey levels."""
    done = subprocess.run([FFMPEG, "-v", "error", "-f", "lavfi", "-i", f"color=c={GREY}:s=640x120:d=0.1",
                           "-vf", graph, "-frames:v", "1", "-f", "rawvideo", "-pix_fmt", "gray", "-"],
                          capture_output=True)
    assert done.returncode == 0, done.stderr[-300:]
    return np.frombuffer(done.stdout, np.uint8)


@pytest.mark.parametrize("text", NASTY)
def test_hostile_text_is_drawn_exactly_as_written(tmp_path, text):
    """Escaped into the graph, the text draws the same pixels as when read raw from a file."""
    escaped = drawtext_filter(text, caption_style(640, 120), 20, "gte(t,0)*lt(t,1)")
    (tmp_path / "raw.txt").write_text(text)
    from_file = escaped.replace(f"text={filter_value(text)}:", f"textfile={filter_value(tmp_path / 'raw.txt')}:")
    assert from_file != escaped
    drawn = draw(escaped)
    assert (drawn > 200).sum() > 100  # white text is there
    assert np.array_equal(drawn, draw(from_file))
    # the escaping is the whole story: followed by another filter, the graph still parses the same
    assert np.array_equal(drawn, draw(escaped + ",null"))


def test_long_lines_wrap_and_crowded_cues_are_set_smaller():
    style = caption_style(640, 360)
    long = Cue(number=1, start=0, end=1, lines=("word " * 30,))
    lines, same = caption_layout(long, style)
    assert len(lines) == 3 and same == style and all(len(line) <= style.max_chars for line in lines)
    crowded = Cue(number=2, start=0, end=1, lines=("word " * 60,))
    lines, smaller = caption_layout(crowded, style)
    assert smaller.fontsize < style.fontsize and len(lines) <= MAX_CAPTION_LINES + 2


# ---- burnt into the single-pass assembly ---------------------------------------------------------


@pytest.fixture(scope="module")
def plain(tmp_path_factory) -> list[Path]:
    """Two still grey 2 s clips, so any change in the caption band is the caption."""
    folder = tmp_path_factory.mktemp("plain")
    clips = []
    for name in ("a", "b"):
        clip = folder / f"{name}.mp4"
        subprocess.run([FFMPEG, "-v", "error", "-f", "lavfi", "-i", f"color=c={GREY}:s=160x90:r={FPS}:d=2",
                        "-pix_fmt", "yuv420p", str(clip)], check=True)
        clips.append(clip)
    return clips


def band_change(frames: list[np.ndarray], index: int, rows: slice = slice(int(H * 0.6), H)) -> float:
    """Mean absolute change of the bottom band of frame `index` against the clean first frame."""
    return float(np.abs(frames[index][rows].astype(int) - frames[0][rows].astype(int)).mean())


@pytest.fixture(scope="module")
def captioned(plain, tmp_path_factory):
    folder = tmp_path_factory.mktemp("captioned")
    (folder / "film.srt").write_bytes(srt(("00:00:00,500", "00:00:01,250", NASTY[0]),
                                          ("00:00:02,000", "00:00:02,500", "under a title"),
                                          ("00:00:03,000", "00:00:09,000", NASTY[1])))
    cues = read_srt(folder / "film.srt")
    result = assemble_edit(plain, ["cut"], folder / "final.mp4", W, H, FPS, captions=cues,
                           titles=[Title(text="TITLE", start=1.9, duration=0.8, position="bottom")])
    return result, [frame.mean(axis=2) for frame in iter_frames(result.dest)]


def test_captions_show_exactly_inside_their_cues(captioned):
    _, frames = captioned
    # frame n shows t = n / 24: cue 1 covers frames 12..29, cue 3 runs from frame 72 to the end
    for off in (11, 30, 71):
        assert band_change(frames, off) < 1, off
    for on in (12, 29, 72, 95):
        assert band_change(frames, on) > 8, on


def test_overrunning_last_cue_is_clipped_and_the_edit_keeps_its_length(captioned):
    result, frames = captioned
    assert len(frames) == 4 * FPS and abs(result.duration - 4.0) < 1e-6


def test_captions_rise_above_a_bottom_title(captioned):
    _, frames = captioned
    def lowest_dark_row(index: int) -> int:  # the caption box darkens the grey picture
        dark = (frames[index] < frames[0] - 20).mean(axis=1) > 0.2
        return int(np.flatnonzero(dark).max())
    alone, lifted = lowest_dark_row(20), lowest_dark_row(50)
    assert alone > H - H // 12  # near the bottom edge
    assert lifted < H - H // 12 - H // 16  # clear of the title's letters


def test_captions_cost_no_extra_encode(captioned):
    result, _ = captioned
    command = list(result.command)
    assert result.lossy_video_encodes == count_video_encodes(command) == 1
    assert command.count("-filter_complex") == 1 and probe(result.dest).width == W


def test_hundreds_of_cues_go_to_ffmpeg_as_a_graph_file(plain, tmp_path):
    cues = [Cue(number=n, start=n / 1000, end=(n + 1) / 1000, lines=(f"cue {n} {NASTY[2]}",))
            for n in range(1, 500)]
    cues.append(Cue(number=500, start=1.0, end=1.5, lines=("the last one of five hundred",)))
    result = assemble_edit(plain[:1], [], tmp_path / "many.mp4", W, H, FPS, captions=cues)
    command = list(result.command)
    assert "-/filter_complex" in command and "-filter_complex" not in command
    assert result.lossy_video_encodes == 1
    frames = [frame.mean(axis=2) for frame in iter_frames(result.dest)]
    assert band_change(frames, 30) > 5 and band_change(frames, 40) < 1  # 1.25 s on, 1.67 s off
