"""Contact sheets: every take of a shot as one row of evenly spaced frames, to compare at a glance.

Layout (pixels): a label column `LABEL_COLUMN_RATIO * thumb_height` wide, then `frames_per_take`
thumbnails `thumb_height` high and as wide as the first readable take's aspect ratio makes them;
one row per take, no gaps, so the sheet is exactly
(len(takes) * thumb_height) x (label column + frames_per_take * thumbnail width).
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Callable

import cv2
import numpy as np
from prefect import task

from blocks.media import MediaError, atomic_path, sample_frames
from tasks.caching import content_key

LABEL_COLUMN_RATIO = 2  # label column width per pixel of thumbnail height: ~30 characters a line
HEADER_BGR = (40, 40, 40)
CHOSEN_BGR = (60, 190, 60)  # the chosen take's label cell and the frame around its row
UNREADABLE_BGR = (128, 128, 128)
LIGHT_TEXT_BGR = (235, 235, 235)
DARK_TEXT_BGR = (20, 20, 20)
GUTTER = 2
JPEG_QUALITY = 90
FALLBACK_ASPECT = 16 / 9  # only when no take at all can be read

# Reading a broken file can fail in ffmpeg (MediaError), OpenCV, the OS or the probe subprocess.
_UNREADABLE = (MediaError, cv2.error, OSError, subprocess.SubprocessError)
_CHOSEN_WORD = re.compile(r"\bchosen\b", re.IGNORECASE)
# Hershey fonts are ASCII only; QC messages use an en dash ("0.00–1.00 s").
_ASCII = str.maketrans({"–": "-", "—": "-", "…": "...", "×": "x", "’": "'", "‘": "'", "“": '"', "”": '"'})


def _shrink_to_height(height: int) -> Callable[[np.ndarray], np.ndarray]:
    def shrink(frame: np.ndarray) -> np.ndarray:
        width = max(1, round(frame.shape[1] * height / frame.shape[0]))
        return cv2.resize(frame, (width, height), interpolation=cv2.INTER_AREA)
    return shrink


def _thumbnails(path: Path, count: int, height: int) -> list[np.ndarray] | str:
    """The take's thumbnails, or why it could not be read."""
    try:
        thumbs = sample_frames(path, count, _shrink_to_height(height))
    except _UNREADABLE as exc:
        # MediaError messages start with the file name; the row's label already says which take.
        return "unreadable: " + (str(exc).removeprefix(f"{path.name}: ") or type(exc).__name__)
    return thumbs or "unreadable: no decodable frames"


def _fit(thumb: np.ndarray, width: int, height: int) -> np.ndarray:
    """`thumb` in a width x height cell: as is when it matches, else scaled to fit and centred."""
    if thumb.shape[:2] == (height, width):
        return thumb
    scale = min(width / thumb.shape[1], height / thumb.shape[0])
    size = (max(1, round(thumb.shape[1] * scale)), max(1, round(thumb.shape[0] * scale)))
    cell = np.full((height, width, 3), HEADER_BGR, np.uint8)
    left, top = (width - size[0]) // 2, (height - size[1]) // 2
    cell[top:top + size[1], left:left + size[0]] = cv2.resize(thumb, size, interpolation=cv2.INTER_AREA)
    return cell


def _wrap(text: str, width: int, scale: float) -> list[str]:
    """Greedy word wrap to `width` pixels; explicit newlines are kept."""
    lines: list[str] = []
    for paragraph in text.translate(_ASCII).encode("ascii", "replace").decode().splitlines():
        line = ""
        for word in paragraph.split():
            candidate = f"{line} {word}".strip()
            if line and cv2.getTextSize(candidate, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)[0][0] > width:
                lines.append(line)
                candidate = word
            line = candidate
        lines.append(line)
    return lines


def _write(area: np.ndarray, text: str, colour: tuple[int, int, int]) -> None:
    """Write `text` into the top left of `area` (a view of the sheet), as many lines as fit."""
    height, width = area.shape[:2]
    scale = max(0.35, height / 300)
    pad = max(4, height // 20)
    line_height = round(cv2.getTextSize("Ag", cv2.FONT_HERSHEY_SIMPLEX, scale, 1)[0][1] * 1.9)
    fitting = max(1, (height - pad) // line_height)
    lines = _wrap(text, width - 2 * pad, scale)
    if len(lines) > fitting:
        lines = lines[:fitting - 1] + [lines[fitting - 1] + "..."]
    for n, line in enumerate(lines):
        cv2.putText(area, line, (pad, pad + (n + 1) * line_height - line_height // 3),
                    cv2.FONT_HERSHEY_SIMPLEX, scale, colour, 1, cv2.LINE_AA)


def _draw_row(band: np.ndarray, row: list[np.ndarray] | str, label: str, label_width: int,
              thumb_width: int) -> None:
    """Fill one take's row (`band`, a view of the sheet): label cell, then thumbnails or the reason."""
    height = band.shape[0]
    chosen = _CHOSEN_WORD.search(label) is not None
    band[:, :label_width] = CHOSEN_BGR if chosen else HEADER_BGR
    _write(band[:, :label_width], label, DARK_TEXT_BGR if chosen else LIGHT_TEXT_BGR)
    cells = band[:, label_width:]
    if isinstance(row, str):
        cells[:] = UNREADABLE_BGR
        _write(cells, row, DARK_TEXT_BGR)
    else:
        for column, thumb in enumerate(row):
            cells[:, column * thumb_width:(column + 1) * thumb_width] = _fit(thumb, thumb_width, height)
        # A thin gutter right of and below every thumbnail, so neighbouring frames read apart.
        for right in range(thumb_width, cells.shape[1] + 1, thumb_width):
            cells[:, right - GUTTER:right] = HEADER_BGR
        cells[-GUTTER:] = HEADER_BGR
    if chosen:  # a frame drawn inside the row, so it never spills onto the neighbours
        border = max(3, height // 20)
        band[:border], band[-border:], band[:, -border:] = CHOSEN_BGR, CHOSEN_BGR, CHOSEN_BGR


def make_contact_sheet(takes: list[Path], labels: list[str], dest: Path, frames_per_take: int = 6,
                       thumb_height: int = 120) -> Path:
    """Write a JPEG contact sheet of `takes` to `dest` (atomically) and return `dest`.

    Each row shows `frames_per_take` evenly spaced frames of one take, its label on the left. The
    row whose label contains the word "chosen" is highlighted in green. A take that cannot be read
    becomes a grey row saying why. Frames are decoded one at a time and only the thumbnails kept.
    """
    if len(takes) != len(labels):
        raise ValueError(f"{len(takes)} takes but {len(labels)} labels")
    if not takes or frames_per_take < 1 or thumb_height < 16:
        raise ValueError("need at least one take, one frame per take and thumbnails >= 16 px high")
    rows = [_thumbnails(Path(take), frames_per_take, thumb_height) for take in takes]
    thumb_width = next((row[0].shape[1] for row in rows if not isinstance(row, str)),
                       round(thumb_height * FALLBACK_ASPECT))
    label_width = LABEL_COLUMN_RATIO * thumb_height
    sheet = np.full((len(takes) * thumb_height, label_width + frames_per_take * thumb_width, 3),
                    HEADER_BGR, np.uint8)
    for number, (row, label) in enumerate(zip(rows, labels)):
        _draw_row(sheet[number * thumb_height:(number + 1) * thumb_height], row, label, label_width, thumb_width)
    # 4:4:4: chroma at full resolution keeps the thin green frame and small label text crisp.
    ok, jpeg = cv2.imencode(".jpg", sheet, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY,
                                            cv2.IMWRITE_JPEG_SAMPLING_FACTOR, cv2.IMWRITE_JPEG_SAMPLING_FACTOR_444])
    if not ok:
        raise MediaError(f"{Path(dest).name}: JPEG encoding failed")
    with atomic_path(dest) as tmp:
        tmp.write_bytes(jpeg.tobytes())
    return Path(dest)


def _run_name(parameters: dict) -> str:
    # dest is '<shot>-sheet-<work key>.jpg': the run's name says which shot's takes it shows
    return f"contact-sheet-{Path(parameters['dest']).stem.split('-sheet')[0]}"


@task(name="contact-sheet", task_run_name=_run_name, cache_key_fn=content_key("dest"), persist_result=True)
def make_contact_sheet_task(takes: list[Path], labels: list[str], dest: Path, frames_per_take: int = 6,
                            thumb_height: int = 120) -> Path:
    """Cached `make_contact_sheet`: the key is the takes' content and the labels, not `dest`, so a
    hit may return a sheet written for another run folder; `place()` it where it belongs."""
    return make_contact_sheet(takes, labels, dest, frames_per_take, thumb_height)
