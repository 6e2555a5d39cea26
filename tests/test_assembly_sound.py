"""Single-pass delivery: picture, transitions, titles and the sound mix in one ffmpeg encode.

Takes are tiny (160x90, 1-2 s) and delivered at 320x180. Sync is checked with takes that
flash white and beep at the same instant: in the finished file the flash and the beep must
still coincide, at the record time the edit puts them.
"""

from __future__ import annotations

import re
import subprocess
import wave
from pathlib import Path

import ffmpeg
import numpy as np
import pytest

from blocks.media import FFMPEG, FrameWriter, iter_frames, probe
from tasks.assemble import assemble_edit, count_video_encodes
from tasks.edit import EditClip, EditTransition, Grade, Soundtrack, Title, write_edl
from tasks.lanczos_scale import delivery_scale, upscale_video

W, H, FPS = 320, 180, 24
RED, GREEN, BLUE = (40, 40, 200), (40, 190, 40), (200, 60, 40)  # BGR


def run(args: list[str]) -> str:
    done = subprocess.run([FFMPEG, "-hide_banner", "-nostats", "-nostdin", *args],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-500:]
    return done.stderr


def write_wav(dest: Path, seconds: float, beep_at: float | None = None, tone: float | None = None) -> Path:
    """48 kHz mono: a steady `tone`, or silence with a 0.12 s 1 kHz beep at `beep_at`."""
    t = np.arange(round(seconds * 48000)) / 48000
    signal = np.zeros_like(t)
    if tone:
        signal = 0.3 * np.sin(2 * np.pi * tone * t)
    if beep_at is not None:
        signal += 0.5 * np.sin(2 * np.pi * 1000 * t) * ((t >= beep_at) & (t < beep_at + 0.12))
    with wave.open(str(dest), "wb") as out:
        out.setnchannels(1), out.setsampwidth(2), out.setframerate(48000)
        out.writeframes((signal * 32767).astype(np.int16).tobytes())
    return dest


def make_take(dest: Path, colour, fps: int, seconds: float, event_at: float | None = None,
              audio: bool = True) -> Path:
    """A textured clip of `colour`; with `event_at`, white frames and a beep start there together."""
    frames, rng = round(fps * seconds), np.random.default_rng(len(dest.name))
    ys, xs = np.mgrid[0:90, 0:160]
    detail = rng.integers(-20, 20, (90, 160, 1))  # fine detail that scaling and encoding can lose
    silent = dest.with_suffix(".silent.mp4")
    with FrameWriter(silent, 160, 90, fps) as writer:
        for i in range(frames):
            texture = (25 * np.sin((xs + ys + 3 * i) / 4.0))[..., None] + np.roll(detail, i, axis=1)
            frame = np.clip(np.array(colour) + texture, 0, 255)
            if event_at is not None and event_at <= i / fps < event_at + 0.12:
                frame[:] = 250
            writer.write(frame.astype(np.uint8))
    if not audio:
        return silent.rename(dest)
    wav = write_wav(dest.with_suffix(".wav"), seconds, beep_at=event_at)
    run(["-i", str(silent), "-i", str(wav), "-c:v", "copy", "-c:a", "aac", "-y", str(dest)])
    return dest


@pytest.fixture(scope="module")
def takes(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("takes")
    odd, vfr = folder / "odd.mp4", folder / "vfr.mp4"
    run(["-f", "lavfi", "-i", "testsrc2=s=161x91:r=25:d=1", "-c:v", "libx264", "-pix_fmt", "yuv444p", str(odd)])
    # Variable frame rate: jittered timestamps and every fifth frame dropped.
    run(["-f", "lavfi", "-i", "testsrc2=s=160x90:r=30:d=1.5", "-vf",
         "setpts='(N/30+0.012*sin(N*1.7))/TB',select='not(eq(mod(n,5),3))'", "-fps_mode", "vfr",
         "-c:v", "libx264", "-pix_fmt", "yuv420p", str(vfr)])
    return {
        "red": make_take(folder / "red.mp4", RED, 24, 1.5, event_at=0.625),   # beep at 0.625 s
        "green": make_take(folder / "green.mp4", GREEN, 12, 2.0, audio=False),  # silent
        "blue": make_take(folder / "blue.mp4", BLUE, 25, 1.5, event_at=0.92),  # beep at 0.92 s
        "odd": odd, "vfr": vfr,
        "music": write_wav(folder / "music.wav", 1.0, tone=220),
        "voice": write_wav(folder / "voice.wav", 0.5, beep_at=0.1),
    }


def audio_of(path: Path) -> np.ndarray:
    """The file's audio as 48 kHz mono float samples."""
    raw = subprocess.run([FFMPEG, "-v", "error", "-i", str(path), "-map", "0:a", "-ac", "1",
                          "-ar", "48000", "-f", "f32le", "-"], capture_output=True, check=True).stdout
    return np.frombuffer(raw, np.float32)


def beep_onsets(samples: np.ndarray) -> list[float]:
    """Seconds where loud sound starts after at least 0.2 s of quiet."""
    envelope = np.convolve(np.abs(samples), np.ones(96) / 96, mode="same")  # 2 ms
    loud = envelope > 0.3 * envelope.max()
    starts = np.flatnonzero(loud[1:] & ~loud[:-1]) + 1
    return [s / 48000 for i, s in enumerate(starts) if i == 0 or s - starts[i - 1] > 0.2 * 48000]


def flash_frames(path: Path) -> list[int]:
    """Indices of the first frame of each run of white frames."""
    white = [frame.mean() > 200 for frame in iter_frames(path)]
    return [i for i, w in enumerate(white) if w and (i == 0 or not white[i - 1])]


def ebur128_integrated(path: Path) -> float:
    summary = run(["-i", str(path), "-map", "0:a", "-af", "ebur128", "-f", "null", "-"]).rsplit("Summary:", 1)[1]
    return float(re.search(r"I:\s+(\S+) LUFS", summary).group(1))


@pytest.fixture(scope="module")
def synced(takes, tmp_path_factory):
    """red (24 fps) | crossfade 0.5 | green (12 fps, silent) | fade_black 0.5 | blue (25 fps)."""
    dest = tmp_path_factory.mktemp("synced") / "final.mp4"
    return assemble_edit([takes["red"], takes["green"], takes["blue"]],
                         [EditTransition(kind="crossfade"), EditTransition(kind="fade_black")],
                         dest, W, H, FPS, soundtrack=Soundtrack(fade_in=0.2, fade_out=0.3),
                         titles=[Title(text="TAKEFLOW", start=1.0, duration=1.0)])


def test_flash_and_beep_land_together_where_the_edit_puts_them(synced):
    # blue starts at 1.5 + 2.0 - 0.5 - 0.5 = 2.5 s, so its event is at 2.5 + 0.92 s.
    expected = [0.625, 2.5 + 0.92]
    flashes = [i / FPS for i in flash_frames(synced.dest)]
    beeps = beep_onsets(audio_of(synced.dest))
    assert len(flashes) == 2 and len(beeps) == 2, (flashes, beeps)
    for flash, beep, at in zip(flashes, beeps, expected):
        assert abs(flash - at) <= 1 / FPS, (flash, at)
        assert abs(beep - flash) <= 1 / FPS, (beep, flash)


def test_mix_meets_the_loudness_target_and_says_what_it_holds(synced):
    assert synced.audio == "takes"
    assert abs(synced.loudness_lufs - (-14)) <= 1
    assert abs(ebur128_integrated(synced.dest) - (-14)) <= 1
    info = probe(synced.dest)
    assert (info.width, info.height, info.fps, info.has_audio) == (W, H, FPS, True)
    assert "aac" in run(["-i", str(synced.dest), "-f", "null", "-t", "0", "-"])


def test_title_is_drawn_only_while_it_is_on(synced):
    frames = list(iter_frames(synced.dest))
    band = [frame[120:170, 100:220].min(axis=2) > 235 for frame in frames]  # white text pixels
    assert band[36].sum() > 20  # 1.5 s: title on (its glyph pixels vary a little with the OpenCV release)
    assert band[60].sum() < 5 and band[12].sum() < 5  # 2.5 s and 0.5 s: off


def test_the_whole_edit_is_one_command_with_one_video_encode(synced):
    command = list(synced.command)
    assert synced.lossy_video_encodes == count_video_encodes(command) == 1
    assert command.count("-filter_complex") == 1
    assert sum(arg.endswith(".mp4") and command[i - 1] != "-i" for i, arg in enumerate(command)) == 1


@pytest.mark.parametrize("transitions", [
    ["cut", {"kind": "crossfade", "duration": 0.5}],
    [{"kind": "fade_black", "duration": 0.25}, {"kind": "dip", "duration": 0.5}],
    [{"kind": "dip", "duration": 0.75, "color": "#ff8000"}, "cut"],
])
def test_duration_is_sum_of_clips_minus_overlaps(takes, tmp_path, transitions):
    result = assemble_edit([takes["red"], takes["green"], takes["blue"]], transitions,
                           tmp_path / "final.mp4", W, H, FPS)
    overlaps = sum(t["duration"] for t in transitions if isinstance(t, dict))
    expected = (1.5 + 2.0 + 1.5 - overlaps) * FPS
    assert abs(probe(result.dest).frames - expected) <= 1 and result.frames == probe(result.dest).frames


def test_colour_dip_passes_through_the_colour(takes, tmp_path):
    dip = {"kind": "dip", "duration": 0.5, "color": "#ff8000"}
    result = assemble_edit([takes["red"], takes["green"]], [dip], tmp_path / "f.mp4", W, H, FPS)
    middle = list(iter_frames(result.dest))[30]  # 1.25 s: half way through the dip
    assert np.abs(middle.reshape(-1, 3).mean(axis=0) - (0, 128, 255)).max() < 25


def test_grade_is_applied_in_the_same_pass(takes, tmp_path):
    graded = EditClip(path=takes["green"], grade=Grade(gain=(1, 0.5, 1), offset=(0.2, 0, 0)))
    frame = list(iter_frames(assemble_edit([graded], [], tmp_path / "f.mp4", W, H, FPS).dest))[5]
    blue, green, red = frame.reshape(-1, 3).mean(axis=0)
    assert 80 < green < 115 and red > 80, (blue, green, red)  # green halved, red lifted by 0.2


def test_odd_sizes_mixed_and_variable_rates_are_normalised(takes, tmp_path):
    result = assemble_edit([takes["odd"], takes["vfr"], takes["green"]], ["crossfade", "cut"],
                           tmp_path / "final.mp4", W, H, FPS)
    info = probe(result.dest)
    assert (info.width, info.height, info.fps) == (W, H, FPS)
    assert abs(info.frames - (1.0 + 1.5 + 2.0 - 0.5) * FPS) <= 2, info.frames


@pytest.mark.parametrize("fit, heard_at_3s", [("loop", True), ("pad", False)])
def test_short_music_is_looped_or_padded_and_the_result_says_which(takes, tmp_path, fit, heard_at_3s):
    soundtrack = Soundtrack(music=takes["music"], music_fit=fit, fade_out=0.1, loudness_lufs=-20)
    result = assemble_edit([takes["green"], takes["green"]], ["cut"], tmp_path / "f.mp4", W, H, FPS,
                           soundtrack=soundtrack)
    assert result.audio == f"music {'looped' if fit == 'loop' else 'padded'}"
    level_at_3s = np.abs(audio_of(result.dest)[3 * 48000:int(3.3 * 48000)]).max()
    assert bool(level_at_3s > 0.05) == heard_at_3s, level_at_3s
    if fit == "loop":  # padded music is mostly silence, whose loudness is gated away anyway
        assert abs(ebur128_integrated(result.dest) - (-20)) <= 1


def test_voice_over_starts_at_its_time(takes, tmp_path):
    soundtrack = Soundtrack(voice_over=takes["voice"], voice_over_start=1.5, keep_take_audio=False)
    result = assemble_edit([takes["red"], takes["green"]], ["cut"], tmp_path / "f.mp4", W, H, FPS,
                           soundtrack=soundtrack)
    assert result.audio == "voice-over"
    assert abs(beep_onsets(audio_of(result.dest))[0] - 1.6) <= 1 / FPS


def test_no_sound_anywhere_gives_no_audio_stream(takes, tmp_path):
    result = assemble_edit([takes["green"], takes["odd"]], ["cut"], tmp_path / "f.mp4", W, H, FPS)
    assert (result.audio, result.loudness_lufs, probe(result.dest).has_audio) == ("none", None, False)


@pytest.mark.parametrize("soundtrack, message", [
    (Soundtrack(music=Path("/nowhere/music.wav")), r"soundtrack.music: music.wav: missing or empty file"),
    (Soundtrack(voice_over=Path("/nowhere/vo.wav")), r"soundtrack.voice_over: vo.wav: missing or empty file"),
])
def test_missing_audio_file_is_named(takes, tmp_path, soundtrack, message):
    with pytest.raises(ValueError, match=message):
        assemble_edit([takes["red"]], [], tmp_path / "f.mp4", W, H, FPS, soundtrack=soundtrack)
    assert not (tmp_path / "f.mp4").exists()


def test_audio_file_without_sound_is_refused(takes, tmp_path):
    with pytest.raises(ValueError, match="soundtrack.music: green.mp4: no audio stream"):
        assemble_edit([takes["red"]], [], tmp_path / "f.mp4", W, H, FPS,
                      soundtrack=Soundtrack(music=takes["green"]))


@pytest.mark.parametrize("transition, message", [
    ("wipe", r"transition after shot 1 \('wipe'\)"),
    ({"kind": "dip", "color": "not-a-colour"}, "transition after shot 1: unknown dip colour"),
])
def test_unusable_transition_names_the_shot(takes, tmp_path, transition, message):
    with pytest.raises(ValueError, match=message):
        assemble_edit([takes["red"], takes["green"], takes["blue"]], ["cut", transition],
                      tmp_path / "f.mp4", W, H, FPS)


@pytest.mark.parametrize("fmt, name, codec, pix_fmt, audio", [
    ("prores", "final.mov", "prores", "yuv422p10le", "pcm_s24le"),
    ("hevc10", "final.mp4", "hevc", "yuv420p10le", "aac"),
])
def test_mastering_formats_probe_right(takes, tmp_path, fmt, name, codec, pix_fmt, audio):
    result = assemble_edit([takes["red"], takes["blue"]], ["crossfade"], tmp_path / name, W, H, FPS,
                           titles=[Title(text="x", start=0, duration=1)], fmt=fmt)
    info = probe(result.dest)
    assert (info.codec, info.pix_fmt, info.width, result.lossy_video_encodes) == (codec, pix_fmt, W, 1)
    header = run(["-i", str(result.dest), "-f", "null", "-t", "0", "-"])
    assert f"Audio: {audio}" in header
    if fmt == "hevc10":
        assert "hvc1" in header


def test_edl_lists_source_and_record_frames(takes, tmp_path):
    edl = write_edl([takes["red"], takes["green"], takes["blue"]],
                    ["cut", {"kind": "crossfade", "duration": 0.5}], FPS, tmp_path / "edit.csv",
                    names=["s1", "s2", "s3"])
    rows = [line.split(",") for line in edl.read_text().splitlines()]
    assert rows[1][:7] == ["1", "s1", "red.mp4", "0", "36", "0", "36"]
    assert rows[2][5:7] == ["36", "84"] and rows[2][9:] == ["cut", "0"]
    assert rows[3][5:7] == ["72", "108"] and rows[3][7] == "00:00:03:00" and rows[3][9:] == ["crossfade", "12"]


# --- quality: one encode vs the old upscale-then-assemble pipeline ------------------------------

def lossless_reference(clips: list[Path], dest: Path) -> Path:
    """The takes scaled exactly as delivery scales them and joined with cuts, never lossy."""
    pictures = [delivery_scale(ffmpeg.input(str(c)).video.filter("fps", FPS), W, H).filter("setsar", 1)
                for c in clips]
    ffmpeg.concat(*pictures, v=1, a=0).output(str(dest), vcodec="libx264", qp=0, preset="ultrafast",
                                              pix_fmt="yuv420p", r=FPS).run(cmd=FFMPEG, quiet=True,
                                                                            overwrite_output=True)
    return dest


def psnr_ssim(video: Path, reference: Path) -> tuple[float, float]:
    log = run(["-i", str(video), "-i", str(reference), "-lavfi",
               "[0:v]split[a0][a1];[1:v]split[b0][b1];[a0][b0]psnr;[a1][b1]ssim", "-f", "null", "-"])
    return (float(re.search(r"PSNR .*average:(\S+)", log).group(1)),
            float(re.search(r"SSIM .*All:(\S+)", log).group(1)))


def test_one_pass_is_no_worse_than_upscale_then_assemble(takes, tmp_path):
    clips = [takes["red"], takes["green"], takes["blue"]]
    reference = lossless_reference(clips, tmp_path / "reference.mp4")
    one_pass = assemble_edit(clips, ["cut", "cut"], tmp_path / "one.mp4", W, H, FPS).dest
    upscaled = [upscale_video(c, tmp_path / f"up{i}.mp4", W, H, FPS) for i, c in enumerate(clips)]
    two_encodes = assemble_edit(upscaled, ["cut", "cut"], tmp_path / "two.mp4", W, H, FPS).dest
    (psnr_one, ssim_one), (psnr_two, ssim_two) = psnr_ssim(one_pass, reference), psnr_ssim(two_encodes, reference)
    print(f"one pass: PSNR {psnr_one:.2f} dB SSIM {ssim_one:.4f}; "
          f"two encodes: PSNR {psnr_two:.2f} dB SSIM {ssim_two:.4f}")
    assert psnr_one >= psnr_two - 0.05 and ssim_one >= ssim_two - 0.0005
