"""The motion-preview renderer, judged from the decoded frames: camera directions and distances,
motion-brush regions, reference images and seeds are measured with optical flow; the brush's
matte and fill are judged on the composited plate."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from blocks.camera_vocabulary import parse_camera
from blocks.media import iter_frames, probe
from blocks.previz_matte import content_matte
from blocks.previz_plate import Plate, compose_plate, reference_plate, subject
from blocks.previz_render import MotionBrush, _region_mask, render_previz
from blocks.providers import MotionRegion
from tests.conftest import EXAMPLES

WIDTH, HEIGHT, FPS = 320, 180, 12


def render(tmp_path: Path, prompt: str, *, seed: int = 1, motion: float = 1.0, duration: float = 1.5,
           reference: Path | None = None, regions: tuple[MotionRegion, ...] = (),
           size: tuple[int, int] = (WIDTH, HEIGHT), fps: int = FPS) -> Path:
    dest = tmp_path / f"{abs(hash((prompt, seed, motion, duration, reference, regions, size, fps)))}.mp4"
    render_previz(dest, width=size[0], height=size[1], fps=fps, duration=duration, prompt=prompt,
                  seed=seed, motion_amount=motion, reference_image=reference, regions=regions)
    return dest


def frames(path: Path) -> list[np.ndarray]:
    return list(iter_frames(path))


def flow(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Dense optical flow from frame a to frame b, (h, w, 2) in pixels."""
    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    return dis.calc(cv2.cvtColor(a, cv2.COLOR_BGR2GRAY), cv2.cvtColor(b, cv2.COLOR_BGR2GRAY), None)


def flows(clip: list[np.ndarray], border: int = 12) -> list[np.ndarray]:
    """Flow between consecutive frames, without the border where new content enters."""
    return [flow(a, b)[border:-border, border:-border] for a, b in zip(clip, clip[1:])]


def mean_flow(clip: list[np.ndarray]) -> np.ndarray:
    return np.mean([f.reshape(-1, 2).mean(axis=0) for f in flows(clip)], axis=0)


def zoom_per_frame(field: np.ndarray) -> float:
    """Relative magnification between two frames, from the flow's divergence about the centre."""
    h, w = field.shape[:2]
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    rx, ry = xs - (w - 1) / 2, ys - (h - 1) / 2
    return float((field[..., 0] * rx + field[..., 1] * ry).sum() / (rx * rx + ry * ry).sum())


def textured_image(path: Path, size: tuple[int, int], seed: int, discs: int = 12) -> Path:
    """A reference of coloured grain and flat discs, so flow and correlation have grip."""
    rng = np.random.default_rng(seed)
    width, height = size
    image = cv2.GaussianBlur(rng.uniform(0, 255, (height, width, 3)).astype(np.float32), (0, 0), 4)
    image = (image - image.mean()) * 3 + 128
    for _ in range(discs):
        centre = tuple(int(c) for c in rng.integers(0, (width, height)))
        colour = tuple(float(c) for c in rng.integers(0, 256, 3))
        cv2.circle(image, centre, int(rng.integers(8, 40)), colour, -1, cv2.LINE_AA)
    cv2.imwrite(str(path), np.clip(image, 0, 255).astype(np.uint8))
    return path


@pytest.mark.parametrize(("prompt", "kind"), [
    ("Slow dolly in on her face.", "push_in"), ("Camera pushes in.", "push_in"),
    ("A fast push-in", "push_in"), ("ZOOM IN", "push_in"), ("Move in on the hero.", "push_in"),
    ("Pull out to reveal the valley.", "pull_out"), ("The camera pulls back.", "pull_out"),
    ("Dolly out.", "pull_out"), ("zoom out", "pull_out"),
    ("Pan left.", "pan_left"), ("Truck left past the shelves.", "pan_left"),
    ("Camera pans to the left.", "pan_left"), ("Tracking left.", "pan_left"),
    ("Pan right.", "pan_right"), ("Track right.", "pan_right"), ("truck right", "pan_right"),
    ("The camera tracks from left to right.", "pan_right"), ("Tracking shot, left to right.", "pan_right"),
    ("Tilt up to the spire.", "tilt_up"), ("Crane up.", "tilt_up"), ("pedestal up", "tilt_up"),
    ("Tilt down.", "tilt_down"), ("Crane down to the street.", "tilt_down"),
    ("Static shot.", "static"), ("Locked-off frame.", "static"), ("locked off", "static"),
    ("Still camera.", "static"), ("On a tripod.", "static"),
    ("Slow orbit around the statue.", "orbit"), ("Arc shot.", "orbit"),
    ("The camera circles around the car.", "orbit"),
    # Subject actions, not camera moves: the default gentle push-in applies.
    ("A fox runs from left to right.", "push_in"), ("She pulls out a gun.", "push_in"),
    ("Leaves move in the wind.", "push_in"), ("A lighthouse on a cliff.", "push_in"),
])
def test_parse_camera_vocabulary(prompt: str, kind: str) -> None:
    assert parse_camera(prompt).kind == kind


def test_parse_camera_named_and_default_moves() -> None:
    assert parse_camera("pan left") == parse_camera("PAN LEFT")
    assert parse_camera("Truck left.").kind == parse_camera("Pan left.").kind == "pan_left"
    assert parse_camera("A lighthouse at dusk.").phrase == ""  # the unnamed, gentle default
    assert parse_camera("Orbit left around her.").leftward
    assert not parse_camera("Orbit around her.").leftward
    # The first move named wins.
    assert parse_camera("Tilt up, then pan right.").kind == "tilt_up"


@pytest.mark.parametrize(("size", "fps", "duration", "count"), [
    ((320, 180), 12, 1.5, 18), ((144, 256), 10, 2.05, 20), ((256, 256), 24, 0.5, 12)])
def test_clip_has_requested_format(tmp_path: Path, size: tuple[int, int], fps: int, duration: float,
                                   count: int) -> None:
    info = probe(render(tmp_path, "A red kite over a beach, pan right.", size=size, fps=fps,
                        duration=duration))
    assert (info.width, info.height, info.fps, info.frames) == (*size, fps, count)
    assert (info.codec, info.pix_fmt) == ("h264", "yuv420p")


@pytest.mark.parametrize(("prompt", "sign", "least", "most"), [
    # Motion 1 is a 1.35x dolly, give or take the seed's ±20% speed...
    ("Slow dolly in on the house.", 1, 1.2, 1.5), ("Pull out wide.", -1, 1.2, 1.5),
    # ... and a prompt naming no move drifts in gently.
    ("A lighthouse on a cliff.", 1, 1.08, 1.2)])
def test_dolly_magnifies_or_shrinks(tmp_path: Path, prompt: str, sign: int, least: float,
                                    most: float) -> None:
    per_frame = [zoom_per_frame(f) for f in flows(frames(render(tmp_path, prompt)))]
    assert all(sign * z > 0 for z in per_frame)
    assert least < float(np.exp(sign * np.sum(per_frame))) < most


@pytest.mark.parametrize(("prompt", "direction"), [
    ("Pan left across the hills.", (1, 0)), ("Slow pan right.", (-1, 0)),
    ("Tilt up to the sky.", (0, 1)), ("Tilt down.", (0, -1)),
    ("The camera tracks from left to right.", (-1, 0))])
def test_lateral_moves_shift_content_the_right_way(tmp_path: Path, prompt: str,
                                                   direction: tuple[int, int]) -> None:
    clip = frames(render(tmp_path, prompt))
    mean = mean_flow(clip)
    axis = 0 if direction[0] else 1
    sign = direction[axis]
    assert sign * mean[axis] > 1.0
    assert abs(mean[1 - axis]) < 0.2 * abs(mean[axis])
    # The composed plate has texture everywhere: every ninth of the frame sees the move.
    field = np.mean(flows(clip), axis=0)
    h, w = field.shape[:2]
    for row in range(3):
        for col in range(3):
            cell = field[row * h // 3:(row + 1) * h // 3, col * w // 3:(col + 1) * w // 3, axis]
            assert sign * cell.mean() > 0.5, (row, col)


def test_pan_distance_follows_motion_amount_and_seed(tmp_path: Path) -> None:
    def travel(seed: int, motion: float) -> float:
        """Share of the frame width the content moved over the clip."""
        clip = frames(render(tmp_path, "Pan left.", seed=seed, motion=motion))
        return float(mean_flow(clip)[0]) * (len(clip) - 1) / WIDTH

    full = [travel(seed, 1.0) for seed in (1, 2, 3, 4)]
    # A fifth of the frame at motion 1, ±20% by seed, and never reversed.
    assert all(0.14 < share < 0.27 for share in full)
    assert max(full) - min(full) > 0.03
    assert travel(2, 0.5) == pytest.approx(full[1] / 2, rel=0.15)


def test_orbit_moves_near_ground_faster(tmp_path: Path) -> None:
    field = np.mean(flows(frames(render(tmp_path, "Orbit around the tower."))), axis=0)[..., 0]
    top, bottom = field[: field.shape[0] // 4].mean(), field[-field.shape[0] // 4:].mean()
    assert bottom < top < 0  # the camera circles right, so the scene sweeps left
    assert bottom < 2 * top


@pytest.mark.parametrize(("prompt", "motion"), [("Static camera on the dunes.", 1.0),
                                                 ("Pan left across the dunes.", 0.0)])
def test_still_camera_holds_the_frame(tmp_path: Path, prompt: str, motion: float) -> None:
    clip = frames(render(tmp_path, prompt, motion=motion))
    for a, b in zip(clip, clip[1:]):
        assert cv2.absdiff(a, b).mean() < 1.0
    assert np.abs(mean_flow(clip)).max() < 0.05


def test_brushed_region_moves_and_the_rest_stays(tmp_path: Path) -> None:
    # A portrait reference: the 16:9 cover crop keeps only its middle 169 of 400 rows, so a
    # region drawn on the reference lands well away from where it would uncropped. Plain grain
    # (no discs) makes "filled in like its surroundings" measurable as the grain's mean colour.
    reference = textured_image(tmp_path / "ref.png", (300, 400), seed=5, discs=0)
    vector = np.array([0.25, 0.2])
    region = MotionRegion(polygon=((0.2, 0.3), (0.45, 0.3), (0.45, 0.5), (0.2, 0.5)), vector=tuple(vector))
    clip = frames(render(tmp_path, "Static shot.", reference=reference, regions=(region,), duration=2.0))
    steps = len(clip) - 1
    size = np.array([WIDTH, HEIGHT])
    visible_rows = 300 * HEIGHT / WIDTH
    crop_top = (400 - visible_rows) / 2
    start = np.array([0.325 * WIDTH, (0.4 * 400 - crop_top) / visible_rows * HEIGHT])  # region centre
    step = vector * size / steps
    first_flow = flow(clip[0], clip[1])
    moving = np.argwhere(np.linalg.norm(first_flow, axis=2) > 0.5 * np.linalg.norm(step))[:, ::-1]
    # The region is where it was drawn, give or take the seed's framing (up to ~9 px here).
    assert np.abs(moving.mean(axis=0) - start).max() < 12
    for k in range(3, steps - 3, 4):
        x, y = (start + step * (k + 0.5)).astype(int)
        inside = flow(clip[k], clip[k + 1])[y - 10:y + 10, x - 12:x + 12].reshape(-1, 2).mean(axis=0)
        angle = np.degrees(np.arccos(inside @ step / np.linalg.norm(inside) / np.linalg.norm(step)))
        assert angle < 25, k
        assert 0.7 < np.linalg.norm(inside) / np.linalg.norm(step) < 1.4, k
    # Left of the region and below its path nothing moves.
    still = flow(clip[0], clip[-1])
    for area in (np.s_[:, :45], np.s_[150:, :]):
        assert np.abs(still[area]).mean() < 0.15
        assert cv2.absdiff(clip[0][area], clip[-1][area]).mean() < 1.5
    # Where the region started, the ground it uncovered is filled in like its surroundings,
    # not left as a copy of the region.
    x, y = start.astype(int)
    hole = np.s_[y - 12:y + 12, x - 20:x + 20]
    assert cv2.absdiff(clip[0][hole], clip[-1][hole]).mean() > 6  # a left-behind copy scores ~1
    grain = clip[0].mean(axis=(0, 1))
    assert np.abs(clip[-1][hole].mean(axis=(0, 1)) - grain).max() < 20


def test_brushed_region_without_reference_uses_frame_fractions(tmp_path: Path) -> None:
    region = MotionRegion(polygon=((0.55, 0.2), (0.8, 0.2), (0.8, 0.5), (0.55, 0.5)), vector=(-0.2, 0.0))
    clip = frames(render(tmp_path, "A kite over a field. Locked off.", regions=(region,)))
    field = np.mean([flow(a, b) for a, b in zip(clip, clip[1:])], axis=0)
    inside = field[int(0.3 * HEIGHT):int(0.4 * HEIGHT), int(0.6 * WIDTH):int(0.7 * WIDTH)]
    assert inside[..., 0].mean() < -0.6 * 0.2 * WIDTH / (len(clip) - 1)
    assert np.abs(field[int(0.75 * HEIGHT):, :]).mean() < 0.1


def test_reference_image_is_what_the_camera_films(tmp_path: Path) -> None:
    reference = textured_image(tmp_path / "ref.png", (400, 300), seed=7)
    other = textured_image(tmp_path / "other.png", (400, 300), seed=8)
    # Cover the 16:9 frame: full width, the middle 225 of 300 rows.
    expected = cv2.resize(cv2.imread(str(reference))[38:263], (WIDTH, HEIGHT), interpolation=cv2.INTER_AREA)

    def match(path: Path) -> float:
        first = next(iter_frames(render(tmp_path, "Static shot.", reference=path)))
        centre = first[18:-18, 32:-32]  # room for the seed's small framing offset...
        # ... and its up to 4% closer start framing.
        return max(float(cv2.matchTemplate(cv2.resize(expected, None, fx=scale, fy=scale), centre,
                                           cv2.TM_CCOEFF_NORMED).max())
                   for scale in np.linspace(1.0, 1.05, 6))

    assert match(reference) > 0.9
    assert match(other) < 0.5


def test_seed_makes_takes_repeatable_and_distinct(tmp_path: Path) -> None:
    prompt = "A lighthouse on a cliff at sunset. Slow push in."
    first = frames(render(tmp_path, prompt, seed=11, duration=1.0))
    again = frames(render(tmp_path / "again", prompt, seed=11, duration=1.0))
    other = frames(render(tmp_path, prompt, seed=12, duration=1.0))
    assert len(first) == len(again) == 12
    assert all(np.array_equal(a, b) for a, b in zip(first, again))
    assert np.mean([cv2.absdiff(a, b).mean() for a, b in zip(first, other)]) > 10


def test_composed_plate_follows_prompt_and_seed() -> None:
    def plate(prompt: str, seed: int = 3) -> np.ndarray:
        return compose_plate(prompt, seed, (WIDTH, HEIGHT), 1.1).image.astype(np.float32)

    prompt = "A fox trots through snow, wide shot."
    assert subject(prompt) == "A fox trots through snow"
    assert np.array_equal(plate(prompt), plate(prompt))
    assert np.abs(plate(prompt) - plate(prompt, seed=4)).mean() > 15
    blue, green, red = plate("Harbour at sunset.").mean(axis=(0, 1))
    assert red > blue + 40
    blue, green, red = plate("Harbour at night, moonlight.").mean(axis=(0, 1))
    assert blue > red + 15 and max(blue, green, red) < 110
    noir = plate("Harbour, film noir.")
    assert np.array_equal(noir[..., 0], noir[..., 2])
    # Texture everywhere, so the camera's motion can be seen in every part of the frame.
    grey = cv2.cvtColor(plate(prompt).astype(np.uint8), cv2.COLOR_BGR2GRAY).astype(np.float32)
    detail = np.abs(cv2.Laplacian(grey, cv2.CV_32F))
    blocks = detail[: HEIGHT // 20 * 20, : WIDTH // 20 * 20].reshape(HEIGHT // 20, 20, WIDTH // 20, 20)
    assert blocks.mean(axis=(1, 3)).min() > 1.0


def grain_with_disc(disc: bool = True) -> np.ndarray:
    """640x360 coloured grain, with a red disc of radius 40 at (200, 180) to brush around."""
    rng = np.random.default_rng(3)
    image = cv2.GaussianBlur(rng.uniform(0, 255, (360, 640, 3)).astype(np.float32), (0, 0), 2)
    image = np.clip((image - image.mean()) * 3 + 128, 0, 255).astype(np.uint8)
    if disc:
        cv2.circle(image, (200, 180), 40, (30, 60, 230), -1, cv2.LINE_AA)
    return image


BOX = (128, 108, 275, 259)  # the brushed rectangle around the disc, in pixels


def brushed(image: np.ndarray, box=BOX, vector=(0.25, 0.0)) -> MotionBrush:
    height, width = image.shape[:2]
    x0, y0, x1, y1 = box[0] / width, box[1] / height, box[2] / width, box[3] / height
    region = MotionRegion(polygon=((x0, y0), (x1, y0), (x1, y1), (x0, y1)), vector=vector)
    return MotionBrush(Plate(image, (0, 0, width, height)), [region], unit=(width, height))


def test_brush_moves_the_thing_in_the_region_not_its_rectangle() -> None:
    image = grain_with_disc()
    middle = brushed(image).composite(0.5).astype(np.float32)
    # Only the disc moved: what changed is the disc where it was and where it is (2 x 5027 px
    # and their feathered rims); moving the rectangle changes its whole area (~36000 px).
    changed = (np.abs(middle - image).max(axis=2) > 12).sum()
    assert changed < 3 * np.pi * 40 ** 2, changed
    # No seam where the rectangle's edges would now be: the step across those columns is like
    # the grain's own from one column to the next (a moved rectangle makes it ~2.8x).
    step = np.abs(np.diff(middle, axis=1)).mean(axis=2)
    rows, shift = slice(BOX[1] + 5, BOX[3] - 5), round(0.25 * 640 * 0.5)
    seam = max(step[rows, edge + shift + d].mean() for edge in (BOX[0], BOX[2]) for d in (-2, -1, 0, 1))
    typical = np.median(step[rows, 400:600].mean(axis=0))
    assert seam < 1.5 * typical, (seam, typical)


def test_ground_a_brushed_thing_uncovers_has_the_grain_of_its_surroundings() -> None:
    image = grain_with_disc()
    end = brushed(image).composite(1.0)
    uncovered, elsewhere = end[150:210, 170:230], end[20:80, 400:600]

    def texture(area: np.ndarray) -> float:
        return float(np.abs(cv2.Laplacian(cv2.cvtColor(area, cv2.COLOR_BGR2GRAY), cv2.CV_32F)).mean())

    # Inpainting alone leaves a smooth smear there (a quarter of the grain's texture).
    assert texture(uncovered) > 0.6 * texture(elsewhere)
    assert np.abs(uncovered.mean(axis=(0, 1)) - image[20:340, 350:630].mean(axis=(0, 1))).max() < 20


def test_brushed_patch_of_one_texture_moves_whole() -> None:
    """Grain with nothing in it: the brushed area itself is what moves (a patch of water, grass)."""
    image = grain_with_disc(disc=False)
    polygon = np.zeros(image.shape[:2], np.uint8)
    polygon[BOX[1]:BOX[3], BOX[0]:BOX[2]] = 255
    matte = content_matte(image, polygon)
    assert (matte[BOX[1]:BOX[3], BOX[0]:BOX[2]] > 127).mean() > 0.9


def test_matte_follows_the_kite_in_the_example_reference() -> None:
    plate = reference_plate(EXAMPLES / "references" / "kite-meadow.jpg", (640, 360), 1.1)
    region = MotionRegion(polygon=((0.40, 0.20), (0.54, 0.20), (0.54, 0.44), (0.40, 0.44)), vector=(0.1, -0.1))
    polygon = _region_mask(plate, region) > 127
    matte = content_matte(plate.image, _region_mask(plate, region)) > 127
    blue, green, red = (plate.image[..., c].astype(int) for c in range(3))
    kite = polygon & (red > 150) & (green < 100)  # the red diamond
    sky = polygon & (blue > red + 40)
    assert kite.sum() > 2000 and sky.sum() > 2000
    assert matte[kite].mean() > 0.9 and matte[sky].mean() < 0.1
