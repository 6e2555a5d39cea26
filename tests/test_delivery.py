"""Delivery: upscaling takes, assembling them with cuts and crossfades, and the poster frame.

Clips are tiny (160x90, 1-2 s) so the whole file runs in seconds; each has its own colour
under a moving texture, so a frame's mean colour says which clip it came from.
"""

from __future__ import annotations

import filecmp
import struct
import subprocess
from pathlib import Path

import cv2
import numpy as np
import pytest
from pydantic import ValidationError

from blocks.media import FFMPEG, FrameWriter, MediaError, iter_frames, probe, read_image
from tasks.assemble import assemble_edit, extract_poster
from tasks.lanczos_scale import upscale_video
from tasks.storyboard import Transition

RED, GREEN, BLUE, YELLOW = (40, 40, 210), (40, 200, 40), (210, 40, 40), (40, 200, 200)  # BGR
CUT = Transition(kind="cut")


def crossfade(seconds: float) -> Transition:
    return Transition(kind="crossfade", duration=seconds)


def make_clip(dest: Path, colour: tuple[int, int, int], fps: int, frames: int,
              width: int = 160, height: int = 90) -> Path:
    """A clip of `colour` under a diagonal texture that moves every frame (not a still)."""
    ys, xs = np.mgrid[0:height, 0:width]
    with FrameWriter(dest, width, height, fps) as writer:
        for i in range(frames):
            texture = (25 * np.sin((xs + ys + 3 * i) / 4.0)).astype(np.int16)[..., None]
            writer.write(np.clip(np.array(colour, np.int16) + texture, 0, 255).astype(np.uint8))
    return dest


def make_square_target(dest: Path) -> Path:
    """120x120: a white circle in the middle, a red band on top, a green band down the left."""
    frame = np.full((120, 120, 3), 30, np.uint8)
    cv2.circle(frame, (60, 60), 25, (255, 255, 255), thickness=-1)
    frame[:20, :] = RED
    frame[:, :10] = GREEN
    with FrameWriter(dest, 120, 120, 24) as writer:
        for _ in range(6):
            writer.write(frame)
    return dest


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("clips")
    return {
        "red": make_clip(folder / "red.mp4", RED, fps=24, frames=24),        # 1.0 s
        "green": make_clip(folder / "green.mp4", GREEN, fps=12, frames=24),  # 2.0 s
        "blue": make_clip(folder / "blue.mp4", BLUE, fps=24, frames=36),     # 1.5 s
        "square": make_square_target(folder / "square.mp4"),
    }


@pytest.fixture(scope="module")
def assembled(clips, tmp_path_factory) -> Path:
    """red | cut | green (12 fps) | 0.5 s crossfade | blue, at 24 fps: 24 + 48 + 36 - 12 frames."""
    dest = tmp_path_factory.mktemp("final") / "final.mp4"
    return assemble_video([clips["red"], clips["green"], clips["blue"]], [CUT, crossfade(0.5)],
                          dest, fps=24)


def assemble_video(clips: list[Path], transitions: list[Transition], dest: Path, fps: int) -> Path:
    """The edit at the clips' own 160x90, picture only (these clips are silent)."""
    return assemble_edit(clips, transitions, dest, 160, 90, fps).dest


def frames_of(path: Path) -> list[np.ndarray]:
    return list(iter_frames(path))


def mean_colour(frame: np.ndarray) -> np.ndarray:
    return frame.reshape(-1, 3).mean(axis=0)


def assert_colour(frame: np.ndarray, expected: tuple[int, int, int], tolerance: float = 25) -> None:
    assert np.abs(mean_colour(frame) - expected).max() < tolerance, (mean_colour(frame), expected)


def top_level_boxes(path: Path) -> list[str]:
    """Types of the MP4's top-level boxes, in file order."""
    data, boxes, pos = path.read_bytes(), [], 0
    while pos + 8 <= len(data):
        size, kind = struct.unpack(">I4s", data[pos:pos + 8])
        if size == 1:  # 64-bit size follows the type
            size = struct.unpack(">Q", data[pos + 8:pos + 16])[0]
        boxes.append(kind.decode("latin-1"))
        if size < 8:
            break
        pos += size
    return boxes


def assert_faststart(path: Path) -> None:
    boxes = top_level_boxes(path)
    assert "moov" in boxes and "mdat" in boxes, boxes
    assert boxes.index("moov") < boxes.index("mdat"), boxes


# --- upscale ---------------------------------------------------------------------------------

@pytest.mark.parametrize("clip, size, fps, expected_fps, expected_frames", [
    ("green", (320, 180), 24, 24, 48),  # 12 fps source doubled to 24
    ("red", (640, 360), None, 24, 24),  # no fps asked: the source rate is kept
])
def test_upscale_gives_exact_size_rate_and_delivery_format(
        clips, tmp_path, clip, size, fps, expected_fps, expected_frames):
    out = upscale_video(clips[clip], tmp_path / "up.mp4", *size, fps=fps)
    info = probe(out)
    assert (info.width, info.height) == size
    assert info.fps == expected_fps and info.frames == expected_frames
    assert (info.codec, info.pix_fmt, info.has_audio) == ("h264", "yuv420p", False)
    assert_faststart(out)
    assert_colour(frames_of(out)[3], {"green": GREEN, "red": RED}[clip])


def test_upscale_crops_to_cover_instead_of_stretching(clips, tmp_path):
    frame = frames_of(upscale_video(clips["square"], tmp_path / "wide.mp4", 320, 180, fps=24))[2]
    assert frame.shape == (180, 320, 3)
    # The circle stays round: scaled by 320/120, its 51 px diameter becomes ~136 px both ways.
    ys, xs = np.nonzero(frame.min(axis=2) > 200)
    width, height = xs.max() - xs.min() + 1, ys.max() - ys.min() + 1
    assert abs(width - height) <= 4 and 128 <= width <= 144, (width, height)
    assert abs(xs.mean() - 160) < 3 and abs(ys.mean() - 90) < 3
    # Cover crops top and bottom (26 source rows each), so the 20-row red band is gone,
    # while the full width is kept, so the green band on the left is still there.
    assert_colour(frame[:6, 40:], (30, 30, 30), tolerance=20)
    assert_colour(frame[20:160, 2:22], GREEN, tolerance=30)


@pytest.mark.parametrize("fps", [24, None])
def test_source_already_at_delivery_size_is_copied_byte_for_byte(clips, tmp_path, fps):
    out = upscale_video(clips["red"], tmp_path / "same.mp4", 160, 90, fps=fps)
    assert filecmp.cmp(out, clips["red"], shallow=False)


def test_upscale_rejects_odd_sizes(clips, tmp_path):
    with pytest.raises(ValueError, match="even"):
        upscale_video(clips["red"], tmp_path / "odd.mp4", 321, 180)
    assert not (tmp_path / "odd.mp4").exists()


# --- assembly --------------------------------------------------------------------------------

@pytest.mark.parametrize("transitions", [
    [CUT, CUT],
    [CUT, crossfade(0.5)],
    [crossfade(0.5), CUT],
    [crossfade(0.75), crossfade(0.25)],
])
@pytest.mark.parametrize("fps", [24, 12])
def test_duration_is_sum_of_clips_minus_crossfades(clips, tmp_path, transitions, fps):
    out = assemble_video([clips["red"], clips["green"], clips["blue"]], transitions,
                         tmp_path / "final.mp4", fps=fps)
    expected = 1.0 + 2.0 + 1.5 - sum(t.duration for t in transitions if t.kind == "crossfade")
    info = probe(out)
    assert info.fps == fps
    assert abs(info.frames - expected * fps) <= len(transitions), (info.frames, expected * fps)


def test_assembly_is_high_profile_h264_yuv420p_faststart_without_audio(assembled):
    info = probe(assembled)
    assert (info.width, info.height, info.fps) == (160, 90, 24)
    assert (info.codec, info.pix_fmt, info.has_audio) == ("h264", "yuv420p", False)
    header = subprocess.run([FFMPEG, "-hide_banner", "-i", str(assembled)],
                            capture_output=True, text=True).stderr
    assert "h264 (High)" in header
    assert_faststart(assembled)


def test_frames_come_from_the_right_clip_and_crossfade_blends(assembled):
    frames = frames_of(assembled)
    assert len(frames) == 24 + 48 + 36 - 12
    assert_colour(frames[23], RED)     # last frame before the cut
    assert_colour(frames[24], GREEN)   # first frame after it
    assert_colour(frames[59], GREEN)   # the crossfade starts at 2.5 s = frame 60
    assert_colour(frames[72], BLUE)    # and is over 12 frames later
    middle = mean_colour(frames[66])
    # Half way through the fade, green and blue are both about half strength.
    assert 85 < middle[0] < 165 and 80 < middle[1] < 160, middle


def test_clips_of_another_size_are_scaled_to_the_delivery_size(clips, tmp_path):
    big = make_clip(tmp_path / "big.mp4", YELLOW, fps=24, frames=12, width=320, height=180)
    out = assemble_video([clips["red"], big], [crossfade(0.25)], tmp_path / "final.mp4", fps=24)
    frames = frames_of(out)
    assert frames[0].shape == (90, 160, 3) and len(frames) == 24 + 12 - 6
    assert_colour(frames[-1], YELLOW)


@pytest.mark.parametrize("names, transitions, message", [
    ([], [], "no clips"),
    (["red", "green"], [], "2 clips need 1 transitions, got 0"),
    (["red", "green", "blue"], [CUT], "3 clips need 2 transitions, got 1"),
    (["red", "green"], [crossfade(1.5)], "clip 0: crossfade of 1.500s is longer"),
    (["green", "red"], [crossfade(1.5)], "clip 1: crossfade of 1.500s is longer"),
    (["green", "red", "blue"], [crossfade(0.6), crossfade(0.6)],
     r"clip 1: transitions in .* overlap"),
])
def test_impossible_transitions_raise_naming_the_clip(clips, tmp_path, names, transitions, message):
    with pytest.raises(ValueError, match=message):
        assemble_video([clips[n] for n in names], transitions, tmp_path / "final.mp4", fps=24)
    assert not (tmp_path / "final.mp4").exists()


def test_missing_clip_is_named_by_index(clips, tmp_path):
    with pytest.raises(MediaError, match="clip 1: nowhere.mp4"):
        assemble_video([clips["red"], tmp_path / "nowhere.mp4"], [CUT], tmp_path / "f.mp4", fps=24)


def test_transition_is_frozen_and_a_crossfade_needs_a_length():
    with pytest.raises(ValidationError, match="greater than 0"):
        Transition(kind="crossfade", duration=0)
    with pytest.raises(ValidationError):
        Transition(kind="wipe", duration=1.0)
    with pytest.raises(ValidationError):
        CUT.duration = 1.0


# --- poster ----------------------------------------------------------------------------------

def test_poster_is_a_jpeg_of_the_frame_at_the_time_asked(assembled, tmp_path):
    early = extract_poster(assembled, tmp_path / "early.jpg", at=0.5)
    late = extract_poster(assembled, tmp_path / "late.jpg", at=3.8)
    assert early.read_bytes()[:2] == b"\xff\xd8"
    assert read_image(early).shape == (90, 160, 3)
    assert_colour(read_image(early), RED)
    assert_colour(read_image(late), BLUE)


def test_poster_time_outside_the_video_is_refused(assembled, tmp_path):
    with pytest.raises(ValueError, match="outside final.mp4"):
        extract_poster(assembled, tmp_path / "p.jpg", at=4.5)
    assert not (tmp_path / "p.jpg").exists()
