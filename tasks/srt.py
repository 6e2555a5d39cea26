"""SubRip (.srt) subtitle files: parsed into timed cues, checked against the edit before any spend.

Real-world files are forgiving about form, so the parser is too: a UTF-8 or UTF-16 byte-order
mark, CRLF or CR line ends, a comma or a dot before the milliseconds (and 1-3 digits of them),
hours left out, cue numbers out of order or missing, position suffixes after the timing, and
styling tags (<i>, <b>, <u>, <s>, <font …>, ASS overrides such as {\\an8}) are all accepted; the
tags are stripped, because captions are drawn in one house style. What cannot be guessed is
refused, naming the file and the cue: a malformed timing line, a cue that ends before it starts,
text outside any cue, a file that is not text.

A cue that overlaps the next one ends where the next one starts, so two cues are never drawn on
top of each other.
"""

from __future__ import annotations

import re
import subprocess
from functools import lru_cache
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from blocks.media import FFMPEG

CAPTION_FONT = "Sans"  # a fontconfig family: whichever sans-serif face the system provides
MAX_BYTES = 2 * 2**20  # a two-hour film's subtitles are ~150 KB; anything far larger is not an .srt
_TIME = r"(?:(\d+):)?(\d{1,2}):(\d{1,2})(?:[,.](\d{1,3}))?"
_TIMING = re.compile(rf"^\s*{_TIME}\s*-->\s*{_TIME}(?:\s+.*)?$")
_LOOKS_LIKE_TIMING = re.compile(r"-->|^\s*\d+:\d+:\d+")
_TAGS = re.compile(r"</?(?:i|b|u|s|font)(?:\s[^>]*)?>|\{\\[^}]*\}", re.IGNORECASE)


class SubtitleError(ValueError):
    """A subtitle file cannot be used; the message is one line naming the file, the cue and the fix."""


class Cue(BaseModel):
    """One caption: lines of text shown from `start` to `end` seconds of the edit."""

    model_config = ConfigDict(frozen=True)

    number: int = Field(description="The cue's number in its file (its position when the file numbers none).")
    start: float = Field(ge=0, description="Second of the edit where it appears.")
    end: float = Field(description="Second of the edit where it goes.")
    lines: tuple[str, ...] = Field(min_length=1, description="The text, one entry per line, tags stripped.")


def timestamp(seconds: float) -> str:
    """Seconds as an SRT timestamp, for messages: 75.5 -> '00:01:15,500'."""
    millis = round(seconds * 1000)
    return f"{millis // 3_600_000:02d}:{millis // 60_000 % 60:02d}:{millis // 1000 % 60:02d},{millis % 1000:03d}"


def _decode(data: bytes, name: str) -> str:
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        encoding = "utf-16"
    else:
        encoding = "utf-8-sig"  # strips a UTF-8 byte-order mark when there is one
    try:
        text = data.decode(encoding)
    except UnicodeDecodeError as exc:
        raise SubtitleError(f"{name}: is not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start}); "
                            "save it as UTF-8") from None
    if "\x00" in text:
        raise SubtitleError(f"{name}: is not a text file; give a SubRip (.srt) subtitle file")
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _seconds(hours: str | None, minutes: str, seconds: str, fraction: str | None) -> float | None:
    if int(minutes) > 59 or int(seconds) > 59:
        return None
    millis = int((fraction or "0").ljust(3, "0"))  # ",5" is half a second, as a decimal fraction
    return int(hours or 0) * 3600 + int(minutes) * 60 + int(seconds) + millis / 1000


def _clean(lines: list[str]) -> tuple[str, ...]:
    text = (" ".join(_TAGS.sub("", line).split()) for line in lines)
    return tuple(line for line in text if line)


def parse_srt(data: bytes, name: str) -> list[Cue]:
    """The cues of an .srt file's bytes, in time order; raise SubtitleError naming `name` and the cue."""
    lines = _decode(data, name).split("\n")
    cues: list[Cue] = []
    index = 0
    while index < len(lines):
        line = lines[index].strip()
        if not line:
            index += 1
            continue
        number, numbered = len(cues) + 1, line.isdigit()
        if numbered:  # the cue number; the timing line must follow it
            number, index = int(line), index + 1
            line = lines[index].strip() if index < len(lines) else ""
        where = f"{name}: cue {number} (line {index + 1})"
        match = _TIMING.match(line)
        if match is None:
            if numbered or _LOOKS_LIKE_TIMING.search(line):
                raise SubtitleError(f"{where}: '{line[:60]}' is not a timing line; write it as "
                                    "HH:MM:SS,mmm --> HH:MM:SS,mmm")
            raise SubtitleError(f"{name}: line {index + 1}: '{line[:60]}' is not part of any cue; remove the "
                                "blank line above it or the stray text")
        start, end = _seconds(*match.groups()[:4]), _seconds(*match.groups()[4:])
        if start is None or end is None:
            raise SubtitleError(f"{where}: '{line[:60]}' has minutes or seconds above 59; fix the timing")
        if end <= start:
            raise SubtitleError(f"{where}: ends at {timestamp(end)}, not after it starts ({timestamp(start)}); "
                                "fix its timing")
        index += 1
        text: list[str] = []
        while index < len(lines) and lines[index].strip():
            # a missing blank line before the next cue: its number and timing end this cue
            if (lines[index].strip().isdigit() and index + 1 < len(lines)
                    and _TIMING.match(lines[index + 1])):
                break
            text.append(lines[index])
            index += 1
        cleaned = _clean(text)
        if cleaned:  # a cue with no words (or only tags) shows nothing: it is left out
            cues.append(Cue(number=number, start=start, end=end, lines=cleaned))
    if not cues:
        raise SubtitleError(f"{name}: has no cues; give a SubRip file with numbered, timed cues")
    return _without_overlaps(sorted(cues, key=lambda cue: cue.start), name)


def _without_overlaps(cues: list[Cue], name: str) -> list[Cue]:
    """Cues that overlap the next one end where it starts (players differ; stacking them would
    cover the picture), unless they start together, which is a mistake in the file."""
    for i, (cue, following) in enumerate(zip(cues, cues[1:])):
        if following.start <= cue.start:
            raise SubtitleError(f"{name}: cue {following.number} starts at {timestamp(following.start)}, "
                                f"together with cue {cue.number}; merge them into one cue")
        if following.start < cue.end:
            cues[i] = cue.model_copy(update={"end": following.start})
    return cues


def read_srt(path: str | Path, name: str | None = None) -> list[Cue]:
    """The cues of an .srt file; raise SubtitleError with a one-line message naming the file (as
    `name`, e.g. the remote file a local copy was fetched from)."""
    path = Path(path)
    name = name or path.name
    try:
        if path.stat().st_size > MAX_BYTES:
            raise SubtitleError(f"{name}: is {path.stat().st_size / 2**20:.1f} MB, far more than any "
                                "subtitle file; give a SubRip (.srt) file")
        data = path.read_bytes()
    except OSError as exc:
        raise SubtitleError(f"{name}: cannot read it ({exc.strerror}); give an .srt file path, https URL "
                            "or s3:// URI") from None
    return parse_srt(data, name)


def fit_to_edit(cues: list[Cue], duration: float, name: str) -> list[Cue]:
    """The cues within an edit of `duration` seconds.

    A cue that starts after the edit ends is refused: it could never be seen, so the file most
    likely belongs to another cut. A cue that starts inside the edit but runs past its end is
    clipped to the end, as a last line often overruns the picture by a moment.
    """
    for cue in cues:
        if cue.start >= duration - 1e-6:
            raise SubtitleError(f"{name}: cue {cue.number} starts at {timestamp(cue.start)}, after the edit "
                                f"ends ({timestamp(duration)}); remove the cues past the end or lengthen "
                                "the shots")
    return [cue if cue.end <= duration else cue.model_copy(update={"end": duration}) for cue in cues]


@lru_cache(maxsize=1)
def caption_font_problem() -> str | None:
    """Why captions cannot be drawn on this machine (no font ffmpeg can load), or None."""
    done = subprocess.run(
        [FFMPEG, "-hide_banner", "-loglevel", "error", "-nostdin", "-f", "lavfi", "-i", "color=s=64x32:d=0.04",
         "-vf", f"drawtext=font={CAPTION_FONT}:text=Ag:fontsize=12:y_align=font", "-f", "null", "-"],
        capture_output=True, text=True)
    if done.returncode == 0:
        return None
    first = (done.stderr.strip().splitlines() or ["no detail"])[0]
    detail = re.sub(r"^\[[^\]]*\]\s*", "", first)[:160]  # without the "[Parsed_drawtext_0 @ 0x…]" prefix
    return (f"ffmpeg cannot draw caption text here ({detail}); install a TrueType font such as the "
            "fonts-dejavu-core package, or leave captions out")
