"""Plates for the motion-preview renderer: the still picture the virtual camera films.

A plate is the reference image cropped to the frame's aspect, or a scene composed from the
prompt when there is none. It is larger than the frame by the camera's overscan, so moves
never show an edge. Composed scenes are laid out in frame units around the plate centre, so
the same prompt and seed give the same scene at any size and overscan.
"""

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from blocks.media import read_image


@dataclass(frozen=True)
class Plate:
    """The picture being filmed (BGR uint8) and where brush fractions (0..1) land on it."""

    image: np.ndarray
    brush_rect: tuple[float, float, float, float]  # x, y, width, height in plate pixels

    @property
    def size(self) -> tuple[int, int]:
        return self.image.shape[1], self.image.shape[0]


def plate_size(frame_size: tuple[int, int], overscan: float) -> tuple[int, int]:
    """Width and height in pixels of a plate `overscan` frames wide and high."""
    return int(np.ceil(frame_size[0] * overscan)), int(np.ceil(frame_size[1] * overscan))


def reference_plate(path: Path, frame_size: tuple[int, int], overscan: float) -> Plate:
    """The reference image scaled to cover the plate and centre-cropped to the frame's aspect."""
    image = read_image(path)
    ref_h, ref_w = image.shape[:2]
    width, height = plate_size(frame_size, overscan)
    cover = max(width / ref_w, height / ref_h)
    crop_x = round((ref_w - width / cover) / 2)
    crop_y = round((ref_h - height / cover) / 2)
    cropped = image[crop_y:ref_h - crop_y, crop_x:ref_w - crop_x]
    shrinking = cropped.shape[1] > width
    plate = cv2.resize(cropped, (width, height),
                       interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_CUBIC)
    # Exact scales of the rounded crop, so brush polygons land where the user drew them.
    scale_x, scale_y = width / cropped.shape[1], height / cropped.shape[0]
    return Plate(plate, (-crop_x * scale_x, -crop_y * scale_y, ref_w * scale_x, ref_h * scale_y))


@dataclass(frozen=True)
class Palette:
    """Scene colours as BGR floats 0..1."""

    sky_top: tuple[float, ...]
    sky_horizon: tuple[float, ...]
    light: tuple[float, ...]       # sun, moon or neon glow
    hills: tuple[float, ...]
    ground_far: tuple[float, ...]
    ground_near: tuple[float, ...]
    scenery: tuple[float, ...]     # trees, buildings, furrows
    accent: tuple[float, ...]      # lit windows, highlights
    text: tuple[float, ...]


def _palette(*hexes: str) -> Palette:
    return Palette(*(tuple(int(h[i:i + 2], 16) / 255 for i in (5, 3, 1)) for h in hexes))


# Checked in order: the more specific mood wins ("neon-lit night" is neon, "foggy night" is night).
_MOODS: tuple[tuple[str, re.Pattern[str], Palette], ...] = tuple(
    (name, re.compile(words), palette) for name, words, palette in (
        ("noir", r"\bnoir\b|black[\s-]and[\s-]white|\bmonochrome\b|\bb&w\b",
         _palette("#3a3f45", "#c8ccd0", "#ffffff", "#6f757a", "#7c8084", "#2a2d30", "#1c1e20",
                  "#f0f0f0", "#ffffff")),
        ("neon", r"\bneon\b|\bcyberpunk\b|\bsynthwave\b",
         _palette("#12002e", "#7a1fa2", "#ff4fd8", "#2a0a4a", "#1a0630", "#07010f", "#14072a",
                  "#00f0ff", "#00f0ff")),
        ("night", r"\bnight\w*|\bmoon\w*|\bmidnight\b|\bstarry\b|\bstarlit\b",
         _palette("#050b1f", "#1b3a6b", "#dfe8ff", "#14244a", "#101c36", "#060a16", "#0a1228",
                  "#ffd98a", "#dfe8ff")),
        ("golden", r"golden[\s-]hour|\bsunset\b|\bsunrise\b|\bdusk\b|\bdawn\b|\bwarm\w*|\bamber\b"
                   r"|magic hour",
         _palette("#c0522a", "#ffc36b", "#fff1c1", "#a0583a", "#8a5a2b", "#3e2614", "#4a2a1a",
                  "#ffd27a", "#fff3dc")),
        ("overcast", r"\bovercast\b|\bfog\w*|\bmist\w*|\bcloudy\b|\brain(?:y|ing|fall|s)?\b|\bhaz[ey]\b",
         _palette("#8c9399", "#c9cdd0", "#e8eaec", "#7d8489", "#6c716f", "#3e4240", "#4a4f52",
                  "#d8d8d0", "#f2f2f2")),
    ))
_NEUTRAL = _palette("#5b86b8", "#cfe0ec", "#fff8e0", "#7f9a8c", "#8d9a6a", "#4c5a33", "#34452c",
                    "#e8d9a8", "#ffffff")
_CITY_WORDS = re.compile(
    r"\b(?:city|street|buildings?|skyline|downtown|alley|urban|rooftops?|neon|cyberpunk)\b")
_STARRY_MOODS = ("night", "neon")
_WORLD = 1.6  # frames of scenery laid out around the centre, enough for any overscan


def mood(prompt: str) -> str:
    """The palette name the prompt's mood and lighting words choose ("neutral" when none)."""
    text = prompt.lower()
    return next((name for name, words, _ in _MOODS if words.search(text)), "neutral")


def subject(prompt: str) -> str:
    """The prompt's first clause, up to the first comma or full stop: what the title card names."""
    return re.split(r"[,.]", prompt.strip(), maxsplit=1)[0].strip()


class _Canvas:
    """Plate pixels addressed in frame units (u right, v down, from the plate centre)."""

    def __init__(self, frame_size: tuple[int, int], overscan: float):
        self.width, self.height = plate_size(frame_size, overscan)
        self.unit_x, self.unit_y = self.width / overscan, self.height / overscan
        self.aspect = frame_size[1] / frame_size[0]  # exact, unlike the rounded plate's

    def px(self, u: np.ndarray | float, v: np.ndarray | float) -> tuple[np.ndarray, np.ndarray]:
        return self.width / 2 + np.asarray(u) * self.unit_x, self.height / 2 + np.asarray(v) * self.unit_y

    def rows(self) -> np.ndarray:
        return (np.arange(self.height, dtype=np.float32) + 0.5 - self.height / 2) / self.unit_y

    def columns(self) -> np.ndarray:
        return (np.arange(self.width, dtype=np.float32) + 0.5 - self.width / 2) / self.unit_x


def compose_plate(prompt: str, seed: int, frame_size: tuple[int, int], overscan: float) -> Plate:
    """Compose a plate from the prompt: a mood palette, sky, horizon, seeded scenery, texture that
    optical flow can follow everywhere, and a title card naming the subject."""
    name = mood(prompt)
    palette = next((p for n, _, p in _MOODS if n == name), _NEUTRAL)
    rng = np.random.default_rng((seed, zlib.crc32(prompt.encode())))
    canvas = _Canvas(frame_size, overscan)
    horizon = float(rng.uniform(0.04, 0.14))  # frame heights below the centre
    image = _sky_and_ground(canvas, palette, horizon)
    _add_light(image, canvas, palette, rng, horizon, starry=name in _STARRY_MOODS)
    plate = np.clip(image * 255, 0, 255).astype(np.uint8)
    _draw_hills(plate, canvas, palette, rng, horizon)
    _draw_scenery(plate, canvas, palette, rng, horizon, city=bool(_CITY_WORDS.search(prompt.lower())))
    _draw_furrows(plate, canvas, palette, rng, horizon)
    plate = _add_texture(plate, canvas, rng)
    _draw_title(plate, canvas, palette, subject(prompt))
    if name == "noir":
        plate = cv2.cvtColor(cv2.equalizeHist(cv2.cvtColor(plate, cv2.COLOR_BGR2GRAY)), cv2.COLOR_GRAY2BGR)
    left, top = canvas.px(-0.5, -0.5)
    return Plate(plate, (float(left), float(top), canvas.unit_x, canvas.unit_y))


def _sky_and_ground(canvas: _Canvas, palette: Palette, horizon: float) -> np.ndarray:
    v = canvas.rows()[:, None]
    sky = np.clip((v + 0.6) / (horizon + 0.6), 0, 1) ** 0.8
    ground = np.clip((v - horizon) / 0.45, 0, 1)
    above = v < horizon
    column = np.where(above, (1 - sky) * np.array(palette.sky_top) + sky * np.array(palette.sky_horizon),
                      (1 - ground) * np.array(palette.ground_far) + ground * np.array(palette.ground_near))
    return np.repeat(column[:, None, :].astype(np.float32), canvas.width, axis=1)


def _add_light(image: np.ndarray, canvas: _Canvas, palette: Palette, rng: np.random.Generator,
               horizon: float, starry: bool) -> None:
    """A sun or moon with its glow above the horizon; stars on night skies."""
    sun_u, sun_v = float(rng.uniform(-0.35, 0.35)), horizon - float(rng.uniform(0.14, 0.32))
    stars = rng.uniform(-_WORLD / 2, _WORLD / 2, size=(260, 2))
    du = canvas.columns()[None, :] - sun_u
    dv = (canvas.rows()[:, None] - sun_v) * canvas.unit_y / canvas.unit_x  # round, in frame widths
    distance = np.sqrt(du * du + dv * dv)
    glow = 0.55 * np.exp(-(distance / 0.16) ** 2) + (distance < 0.035)
    above = (canvas.rows() < horizon)[:, None]
    weight = (np.minimum(glow, 1.0) * above)[..., None]
    image *= 1 - weight
    image += weight * np.array(palette.light, dtype=np.float32)
    if starry:
        radius = max(1, round(canvas.unit_x / 700))
        for u, v in stars:
            if v < horizon - 0.02:
                x, y = canvas.px(u, v)
                cv2.circle(image, (int(x), int(y)), radius, palette.light, -1, cv2.LINE_AA)


def _ridge(canvas: _Canvas, rng: np.random.Generator, base: float, height: float) -> np.ndarray:
    """Polygon (plate pixels) of a hill line: seeded sines across the world, filled to the bottom."""
    freqs, phases = rng.uniform(2, 9, size=3), rng.uniform(0, 2 * np.pi, size=3)
    u = np.linspace(-_WORLD / 2, _WORLD / 2, 200)
    v = base - height * (1.2 + np.sin(np.outer(u, freqs) + phases).sum(axis=1) / 3)
    x, y = canvas.px(u, v)
    bottom = canvas.height + 1
    points = np.column_stack([np.r_[x[0], x, x[-1]], np.r_[bottom, y, bottom]])
    return np.round(points).astype(np.int32)


def _draw_hills(plate: np.ndarray, canvas: _Canvas, palette: Palette, rng: np.random.Generator,
                horizon: float) -> None:
    far = tuple(255 * (0.6 * h + 0.4 * s) for h, s in zip(palette.hills, palette.sky_horizon))
    cv2.fillPoly(plate, [_ridge(canvas, rng, horizon, 0.05)], far, cv2.LINE_AA)
    cv2.fillPoly(plate, [_ridge(canvas, rng, horizon + 0.02, 0.02)], tuple(255 * c for c in palette.hills),
                 cv2.LINE_AA)


def _draw_scenery(plate: np.ndarray, canvas: _Canvas, palette: Palette, rng: np.random.Generator,
                  horizon: float, city: bool) -> None:
    """Buildings with lit windows for city prompts, otherwise trees, standing on the horizon."""
    dark, lit = tuple(255 * c for c in palette.scenery), tuple(255 * c for c in palette.accent)
    for u in np.sort(rng.uniform(-_WORLD / 2, _WORLD / 2, size=34)):
        tall, wide = float(rng.uniform(0.06, 0.22)), float(rng.uniform(0.02, 0.06))
        base = horizon + float(rng.uniform(0.0, 0.03))
        x0, y0 = canvas.px(u - wide / 2, base - tall)
        x1, y1 = canvas.px(u + wide / 2, base)
        if city:
            cv2.rectangle(plate, (int(x0), int(y0)), (int(x1), int(y1)), dark, -1)
            _draw_windows(plate, (x0, y0, x1, y1), lit, rng)
        else:
            trunk_x, _ = canvas.px(u, base)
            cv2.line(plate, (int(trunk_x), int(y1)), (int(trunk_x), int((y0 + y1) / 2)), dark,
                     max(1, int((x1 - x0) / 6)))
            crown = np.array([[x0, (y0 + 3 * y1) / 4], [trunk_x, y0], [x1, (y0 + 3 * y1) / 4]])
            cv2.fillPoly(plate, [np.round(crown).astype(np.int32)], dark, cv2.LINE_AA)


def _draw_windows(plate: np.ndarray, box: tuple[float, float, float, float],
                  lit: tuple[float, ...], rng: np.random.Generator) -> None:
    x0, y0, x1, y1 = box
    cell = max(3.0, (x1 - x0) / 5)
    # A fixed grid of draws keeps the scene identical at every resolution.
    on = rng.random((12, 5)) < 0.45
    for row in range(12):
        for col in range(5):
            x, y = x0 + (col + 0.3) * (x1 - x0) / 5, y0 + (row + 0.4) * cell
            if on[row, col] and y + cell / 2 < y1:
                cv2.rectangle(plate, (int(x), int(y)), (int(x + cell * 0.45), int(y + cell * 0.5)), lit, -1)


def _draw_furrows(plate: np.ndarray, canvas: _Canvas, palette: Palette, rng: np.random.Generator,
                  horizon: float) -> None:
    """Ground lines running to a vanishing point: strong structure in the lower frame."""
    vanish_u = float(rng.uniform(-0.2, 0.2))
    ends = np.sort(rng.uniform(-1.6, 1.6, size=18))
    x_v, y_v = canvas.px(vanish_u, horizon + 0.03)
    colour = tuple(255 * c for c in palette.scenery)
    width = max(1, round(canvas.unit_x / 500))
    for end in ends:
        x_e, y_e = canvas.px(end, _WORLD / 2)
        cv2.line(plate, (int(x_v), int(y_v)), (int(x_e), int(y_e)), colour, width, cv2.LINE_AA)


def _noise(canvas: _Canvas, rng: np.random.Generator, cells_per_frame: int) -> np.ndarray:
    """Smooth value noise in -1..1 with square cells of 1/cells_per_frame of the frame width."""
    cells_x = int(_WORLD * cells_per_frame)
    cells_y = int(_WORLD * cells_per_frame * canvas.aspect)
    grid = rng.uniform(-1, 1, size=(cells_y, cells_x)).astype(np.float32)
    scale = cells_per_frame / canvas.unit_x
    plate_to_grid = np.array([[scale, 0, cells_x / 2 - canvas.width / 2 * scale],
                              [0, scale, cells_y / 2 - canvas.height / 2 * scale]], dtype=np.float32)
    return cv2.warpAffine(grid, plate_to_grid, (canvas.width, canvas.height),
                          flags=cv2.INTER_CUBIC | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_REFLECT)


def _add_texture(plate: np.ndarray, canvas: _Canvas, rng: np.random.Generator) -> np.ndarray:
    """Clouds, mottling and grain at three scales; the additive part keeps dark skies textured."""
    detail = 0.5 * _noise(canvas, rng, 10) + 0.3 * _noise(canvas, rng, 36) + 0.2 * _noise(canvas, rng, 110)
    image = plate.astype(np.float32)
    image += detail[..., None] * (0.22 * image + 14)
    return np.clip(image, 0, 255).astype(np.uint8)


def _wrap(text: str, font: int, scale: float, thickness: int, max_width: float) -> list[str]:
    lines: list[str] = []
    for word in text.split():
        candidate = f"{lines[-1]} {word}" if lines else word
        if lines and cv2.getTextSize(candidate, font, scale, thickness)[0][0] <= max_width:
            lines[-1] = candidate
        else:
            lines.append(word)
    return lines[:3] if len(lines) <= 3 else lines[:2] + [lines[2] + " ..."]


def _draw_title(plate: np.ndarray, canvas: _Canvas, palette: Palette, title: str) -> None:
    """The subject on a translucent card in the lower third of the start frame."""
    if not title:
        return
    font, scale = cv2.FONT_HERSHEY_DUPLEX, canvas.unit_y / 720 * 1.3
    thickness = max(1, round(canvas.unit_y / 360))
    lines = _wrap(title, font, scale, thickness, 0.7 * canvas.unit_x)
    line_h = cv2.getTextSize("Ag", font, scale, thickness)[0][1] * 1.8
    text_w = max(cv2.getTextSize(line, font, scale, thickness)[0][0] for line in lines)
    centre_x, centre_y = canvas.px(0.0, 0.3)
    pad = line_h * 0.5
    x0, y0 = int(centre_x - text_w / 2 - pad), int(centre_y - len(lines) * line_h / 2 - pad)
    x1, y1 = int(centre_x + text_w / 2 + pad), int(centre_y + len(lines) * line_h / 2 + pad)
    card = plate[max(y0, 0):y1, max(x0, 0):x1]
    card[:] = (card * 0.45).astype(np.uint8)
    colour = tuple(255 * c for c in palette.text)
    for i, line in enumerate(lines):
        width = cv2.getTextSize(line, font, scale, thickness)[0][0]
        origin = (int(centre_x - width / 2), int(y0 + pad + (i + 0.75) * line_h))
        cv2.putText(plate, line, origin, font, scale, colour, thickness, cv2.LINE_AA)
