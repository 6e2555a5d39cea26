"""What is written over the edit, in the assembly's single pass: titles and captions.

Titles are drawn once as transparent PNGs (OpenCV's Hershey font) and overlaid for their window.
Captions (subtitle cues) have their own house style so they never read as titles: smaller type,
white on a translucent black box behind each line, centred in the bottom band, wrapped to the
frame, and lifted above a bottom title while one is on. They are drawn with ffmpeg's drawtext,
one filter per line, each enabled only inside its cue.

Caption text reaches drawtext through three levels of interpretation: the filtergraph's
(`\\ ' [ ] , ;`), the filter options' (`\\ ' :`), and drawtext's own (`%{...}` sequences and its
backslashes). The first two are escaped here, the third is switched off (`expansion=none`), so
every character is drawn as written; tests/test_captions.py draws hostile text this way and from
a text file (no escaping at all) and compares the pixels.
"""

from __future__ import annotations

import math
import textwrap
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Sequence

import cv2
import ffmpeg
import numpy as np

from blocks.media import MediaError
from tasks.edit import Title
from tasks.srt import CAPTION_FONT, Cue, caption_font_problem  # noqa: F401  (re-exported)

CAPTION_SLOT = "takeflow_captions"  # placeholder filter name, replaced by the drawtext chain
CAPTION_BOX = "black@0.6"  # readable over snow and night alike, without hiding the picture
MAX_CAPTION_LINES = 3  # past this a cue is set smaller rather than climb into the picture
# DejaVu/Liberation Sans average about 0.55 em per character; 0.6 leaves room for wide words.
_EM_PER_CHARACTER = 0.6


def render_title(title: Title, width: int, height: int, dest: Path) -> Path:
    """Draw a title as white text with a black outline on a transparent width x height PNG."""
    font, scale = cv2.FONT_HERSHEY_DUPLEX, height / 16 / 22  # Hershey glyphs are ~22 px at scale 1
    thickness = max(1, round(scale * 1.5))
    text_width, text_height = cv2.getTextSize(title.text, font, scale, thickness)[0]
    if text_width > 0.9 * width:  # long titles shrink to fit rather than run off the frame
        scale *= 0.9 * width / text_width
        thickness = max(1, round(scale * 1.5))
        text_width, text_height = cv2.getTextSize(title.text, font, scale, thickness)[0]
    margin = height // 12
    y = {"top": margin + text_height, "center": (height + text_height) // 2,
         "bottom": height - margin}[title.position]
    origin = ((width - text_width) // 2, y)
    canvas = np.zeros((height, width, 4), np.uint8)
    outline = thickness + max(2, thickness)
    cv2.putText(canvas, title.text, origin, font, scale, (0, 0, 0, 255), outline, cv2.LINE_AA)
    cv2.putText(canvas, title.text, origin, font, scale, (255, 255, 255, 255), thickness, cv2.LINE_AA)
    if not cv2.imwrite(str(dest), canvas):
        raise MediaError(f"could not write title image {dest}")
    return dest


def titled(video, titles: Sequence[Title], images: list[Path], overlay_format: str):
    for title, image in zip(titles, images):
        # A one-frame PNG input: eof_action=repeat holds it, `enable` shows it only in its window.
        on = f"between(t,{title.start},{title.start + title.duration})"
        video = ffmpeg.filter([video, ffmpeg.input(str(image)).video], "overlay",
                              format=overlay_format, eof_action="repeat", enable=on)
    return video


@dataclass(frozen=True)
class CaptionStyle:
    """Caption geometry for one frame size, in pixels."""

    width: int
    height: int
    fontsize: int
    border: int  # box padding around each line

    @property
    def line_step(self) -> int:  # the font's line height plus both paddings: boxes just apart
        return round(self.fontsize * 1.2) + 2 * self.border

    @property
    def max_chars(self) -> int:
        return max(8, math.floor(0.9 * self.width / (_EM_PER_CHARACTER * self.fontsize)))

    def bottom(self, lifted: bool) -> int:
        """Distance from the frame's bottom edge to the last line's box."""
        if lifted:  # clear of a bottom title: its baseline sits height/12 up, its letters height/16 tall
            return self.height // 12 + round(self.height / 16 * 1.4) + self.border
        return round(self.height * 0.06)


def caption_style(width: int, height: int) -> CaptionStyle:
    """Type at 5% of the frame's short side (54 px at 1080p), never below 14 px."""
    fontsize = max(14, round(min(width, height) * 0.05))
    return CaptionStyle(width, height, fontsize, max(2, round(fontsize * 0.2)))


def caption_layout(cue: Cue, style: CaptionStyle) -> tuple[list[str], CaptionStyle]:
    """A cue's lines wrapped to the frame; a cue that would take more than MAX_CAPTION_LINES
    lines is set in smaller type instead (down to 60%)."""
    def wrap(chars: int) -> list[str]:
        return [part for line in cue.lines for part in textwrap.wrap(line, chars) or [line]]

    lines = wrap(style.max_chars)
    if len(lines) > MAX_CAPTION_LINES:
        smaller = max(0.6, MAX_CAPTION_LINES / len(lines))
        style = replace(style, fontsize=max(10, round(style.fontsize * smaller)),
                        border=max(2, round(style.border * smaller)))
        lines = wrap(style.max_chars)
    return lines, style


def filter_value(value: object) -> str:
    """An option value escaped for both levels ffmpeg parses a filtergraph at: first the graph
    (`\\ ' [ ] , ;`), then the filter's options (`\\ ' :`); so it is escaped in the reverse order."""
    def escape(text: str, special: str) -> str:
        return "".join("\\" + c if c in special else c for c in text)
    return escape(escape(str(value), "\\':"), "\\'[],;")


def drawtext_filter(line: str, style: CaptionStyle, top: int, enable: str) -> str:
    """One caption line as a drawtext filter whose box starts `top` pixels down the frame.

    `expansion=none` keeps drawtext from reading `%{...}` sequences and backslashes in the text.
    """
    options = {"text": line, "expansion": "none", "font": CAPTION_FONT, "fontsize": style.fontsize,
               "fontcolor": "white", "box": 1, "boxcolor": CAPTION_BOX, "boxborderw": style.border,
               "x": "(w-text_w)/2", "y": top + style.border, "y_align": "font", "enable": enable}
    return "drawtext=" + ":".join(f"{key}={filter_value(value)}" for key, value in options.items())


def caption_chain(cues: Sequence[Cue], width: int, height: int, titles: Sequence[Title] = ()) -> str:
    """Every cue's lines as a chain of drawtext filters, each on only inside its cue; cues shown
    while a bottom title is on sit above it."""
    base = caption_style(width, height)
    bottom_titles = [(t.start, t.start + t.duration) for t in titles if t.position == "bottom"]
    filters = []
    for cue in cues:
        lines, style = caption_layout(cue, base)
        lifted = any(start < cue.end and cue.start < end for start, end in bottom_titles)
        first_top = height - style.bottom(lifted) - len(lines) * style.line_step
        # half-open window: a cue ending at 3.0 s is off on the frame that starts at 3.0 s
        enable = f"gte(t,{cue.start:.3f})*lt(t,{cue.end:.3f})"
        filters += [drawtext_filter(line, style, first_top + row * style.line_step, enable)
                    for row, line in enumerate(lines)]
    return ",".join(filters)


def caption_slot(video, cues: Sequence[Cue]):
    """Mark where the captions go in an ffmpeg-python graph. The chain is spliced into the compiled
    graph text by `splice_captions`: as graph nodes, hundreds of cues would overflow ffmpeg-python's
    recursive compiler."""
    return video.filter(CAPTION_SLOT) if cues else video


def splice_captions(command: list[str], chain: str) -> list[str]:
    """The compiled command with the caption slot replaced by the drawtext chain."""
    at = command.index("-filter_complex")
    graph = command[at + 1]
    if CAPTION_SLOT not in graph:
        return command
    return [*command[:at + 1], graph.replace(CAPTION_SLOT, chain, 1), *command[at + 2:]]
