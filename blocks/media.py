"""Media I/O shared by every stage: probing, streaming frames in and out of ffmpeg, hashing.

ffmpeg comes from the imageio-ffmpeg wheel, which ships no ffprobe, so probing reads the stream
header that `ffmpeg -i` prints and counts the video packets with a stream copy (no decode). Frames
are always decoded by ffmpeg, never by OpenCV, so whatever ffmpeg plays is read: WebM/VP9 or
Matroska under any extension, GIF, variable frame rate, rotated phone clips, odd sizes.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import re
import shutil
import subprocess
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import cv2
import ffmpeg
import imageio_ffmpeg
import numpy as np

FFMPEG = imageio_ffmpeg.get_ffmpeg_exe()
# The first video stream that is not an attached picture (cover art of an audio file).
VIDEO_STREAM = "0:V:0"
PROBE_TIMEOUT_S = 120
# No frame is decoded that is larger than 8K UHD: ffmpeg's decoder refuses a bigger one (a broken
# or hostile header) before allocating it, even in a decode started before the probe has answered.
MAX_DECODE_PIXELS = 7680 * 4320


class MediaError(RuntimeError):
    """A file is not the media it should be, or ffmpeg failed on it."""


@dataclass(frozen=True)
class VideoInfo:
    """What a video file holds, as ffmpeg sees it. `width` and `height` are the displayed size
    (after the container's rotation, which ffmpeg applies when decoding); `frames` the video
    packets in the stream, one per frame; `fps` the average frame rate (frames per second of
    the stream, also for variable frame rate)."""

    width: int
    height: int
    fps: float
    frames: int
    codec: str
    pix_fmt: str
    has_audio: bool
    rotation: int = 0
    container: str = ""

    @property
    def duration(self) -> float:
        return self.frames / self.fps if self.fps else 0.0


_INPUT_RE = re.compile(r"^Input #0, ([^,\n]+(?:,[^,\n]+)*?), from ", re.M)
_STREAM_RE = re.compile(r"^\s*Stream #0:\d+\S*: (\w+): (.*)$", re.M)
_SIZE_RE = re.compile(r"(?:^|, )(\d{1,5})x(\d{1,5})(?=[ ,]|$)")
_RATE_RE = re.compile(r"(\d+(?:\.\d+)?)(k?) (fps|tbr)\b")
_ROTATION_RE = re.compile(r"rotation of (-?\d+(?:\.\d+)?) degrees")
_DURATION_RE = re.compile(r"Duration: (\d+):(\d+):(\d+(?:\.\d+)?)")
_FRAME_RE = re.compile(r"^frame=(\d+)\s*$", re.M)


def _ffmpeg_text(args: list[str], timeout: float = PROBE_TIMEOUT_S) -> tuple[str, str]:
    """stdout and stderr of one ffmpeg run (its exit status is judged from what it printed)."""
    done = subprocess.run([FFMPEG, "-hide_banner", "-nostdin", *args], capture_output=True,
                          text=True, errors="replace", timeout=timeout)
    return done.stdout, done.stderr


def _first_video(header: str) -> tuple[str, str] | None:
    """(stream line, the lines under it up to the next stream) of the first video stream that is
    not an attached picture."""
    streams = list(_STREAM_RE.finditer(header))
    for n, match in enumerate(streams):
        if match.group(1) == "Video" and "(attached pic)" not in match.group(2):
            tail_end = streams[n + 1].start() if n + 1 < len(streams) else len(header)
            return match.group(2), header[match.end():tail_end]
    return None


def _why_unreadable(stderr: str) -> str:
    """ffmpeg's own last words on a file it cannot open, without its banner noise."""
    lines = [line.strip() for line in stderr.splitlines()
             if line.strip() and not line.startswith(("Input #", "  ")) and "output file" not in line]
    return " | ".join(lines[-2:]) or "ffmpeg cannot read it"


def probe(path: str | Path) -> VideoInfo:
    """Size, frame rate, frame count, codec, rotation and audio of a video file, from ffmpeg.

    One ffmpeg run prints the header and counts the first video stream's packets by stream copy
    (no decode: tens of milliseconds). Raises MediaError, with ffmpeg's reason, when the file is
    missing, empty, not media, has no video stream, or holds no frame.
    """
    path = Path(path)
    if not path.is_file() or path.stat().st_size == 0:
        raise MediaError(f"{path.name}: missing or empty file")
    progress, header = _ffmpeg_text(["-v", "info", "-nostats", "-i", str(path), "-map", VIDEO_STREAM,
                                     "-c", "copy", "-f", "null", "-", "-progress", "pipe:1"])
    if not _INPUT_RE.search(header):
        # ffmpeg names the file by its full path; the caller knows where it lies.
        raise MediaError(f"{path.name}: not a readable video: {_why_unreadable(header).replace(str(path), path.name)}")
    video = _first_video(header)
    if video is None:
        audio = re.search(r"Stream #0:\d+\S*: Audio:", header) is not None
        raise MediaError(f"{path.name}: no video stream" + (" (audio only)" if audio else ""))
    line, side_data = video
    size = _SIZE_RE.search(line)
    if size is None or min(int(size.group(1)), int(size.group(2))) <= 0:
        raise MediaError(f"{path.name}: video stream has no frame size")
    width, height = int(size.group(1)), int(size.group(2))
    rotation = 0
    if turned := _ROTATION_RE.search(side_data):
        rotation = round(float(turned.group(1))) % 360
        if rotation in (90, 270):
            width, height = height, width
    counts = _FRAME_RE.findall(progress)
    frames = int(counts[-1]) if counts else 0
    rates = {unit: float(value) * (1000 if k else 1) for value, k, unit in _RATE_RE.findall(line)}
    duration = _DURATION_RE.search(header)
    seconds = (int(duration[1]) * 3600 + int(duration[2]) * 60 + float(duration[3])) if duration else 0.0
    fps = rates.get("fps") or rates.get("tbr") or (frames / seconds if seconds else 0.0)
    if frames <= 0 or fps <= 0:
        raise MediaError(f"{path.name}: no video frames: {_why_unreadable(header)}")
    codec = line.split(maxsplit=1)[0].rstrip(",")
    pix_fmt = re.match(r"[a-z0-9_]*", line.split(", ", 1)[-1]).group(0) or "unknown"
    container = _INPUT_RE.search(header).group(1)
    has_audio = re.search(r"Stream #0:\d+\S*: Audio:", header) is not None
    return VideoInfo(width, height, round(fps, 3), frames, codec, pix_fmt, has_audio, rotation, container)


def count_frames(path: str | Path, decode: bool = False) -> int:
    """Frames in the first video stream: packets by stream copy (fast), or, with `decode`, the
    frames ffmpeg actually decodes to the end (a full decode: the proof that a file is whole).
    0 when ffmpeg reads none."""
    args = ["-v", "error", "-nostats", "-i", str(path), "-map", VIDEO_STREAM]
    args += ["-fps_mode", "passthrough"] if decode else ["-c", "copy"]
    progress, _ = _ffmpeg_text([*args, "-f", "null", "-", "-progress", "pipe:1"], timeout=None)
    counts = _FRAME_RE.findall(progress)
    return int(counts[-1]) if counts else 0


def audio_duration(path: str | Path) -> float:
    """Seconds of the first audio stream in a file, or MediaError when it has none."""
    path = Path(path)
    if not path.is_file() or path.stat().st_size == 0:
        raise MediaError(f"{path.name}: missing or empty file")
    header = subprocess.run([FFMPEG, "-hide_banner", "-i", str(path)], capture_output=True,
                            text=True, timeout=60).stderr
    duration = re.search(r"Duration: (\d+):(\d+):(\d+(?:\.\d+)?)", header)
    if not re.search(r"Stream #\d+:\d+.*?: Audio:", header) or not duration:
        raise MediaError(f"{path.name}: no audio stream (use WAV, MP3, M4A, AAC or FLAC)")
    hours, minutes, seconds = duration.groups()
    return int(hours) * 3600 + int(minutes) * 60 + float(seconds)


def _shrunk(width: int, height: int, max_side: int | None) -> tuple[int, int]:
    """(width, height) with the longer side at most `max_side`, the aspect kept."""
    if not max_side or max(width, height) <= max_side:
        return width, height
    scale = max_side / max(width, height)
    return max(2, round(width * scale)), max(2, round(height * scale))


def iter_frames(path: str | Path, max_side: int | None = None, gray: bool = False,
                info: VideoInfo | None = None, size: tuple[int, int] | None = None) -> Iterator[np.ndarray]:
    """The frames of a video as BGR (or, with `gray`, luma) uint8 arrays, one at a time (never
    the whole clip), decoded by an ffmpeg process on another core, which starts at once so that it
    decodes while the caller gets ready.

    With `max_side`, frames are shrunk (area interpolation, inside ffmpeg) so their longer side
    is at most that. Rotation is applied as players do. `info` saves probing again; so does
    `size`, the displayed (width, height) the caller already expects: ffmpeg scales to it
    whatever the file holds, so a caller that guesses must check the guess against `probe`. Like
    a player, ffmpeg stops at the first frame it cannot decode; MediaError when it fails before
    giving any frame.
    """
    if size is None:
        info = info or probe(path)
        size = (info.width, info.height)
    frames = _ffmpeg_frames(Path(path), max_side, gray, size)
    next(frames)  # runs up to ffmpeg's start
    return frames


def _ffmpeg_frames(path: Path, max_side: int | None, gray: bool,
                   size: tuple[int, int]) -> Iterator[np.ndarray | None]:
    """None once ffmpeg has started, then the frames."""
    width, height = _shrunk(*size, max_side)
    pix_fmt = "gray" if gray else "bgr24"
    shape = (height, width) if gray else (height, width, 3)
    # One decoding and one filter thread: the caller measures on the other core meanwhile.
    # passthrough: every decoded frame once, none duplicated or dropped (variable frame rate too).
    command = [FFMPEG, "-hide_banner", "-loglevel", "error", "-nostdin", "-threads", "1", "-filter_threads",
               "1", "-max_pixels", str(MAX_DECODE_PIXELS), "-i", str(path), "-map", VIDEO_STREAM,
               "-fps_mode", "passthrough", "-vf", f"scale={width}:{height}:flags=area,format={pix_fmt}",
               "-f", "rawvideo", "pipe:"]
    given = 0
    # stderr goes to a file: a broken stream can log more than a pipe holds, blocking ffmpeg.
    with tempfile.TemporaryFile() as log:
        with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=log) as proc:
            with contextlib.suppress(OSError):  # a 1 MiB pipe lets ffmpeg decode a few frames ahead
                fcntl.fcntl(proc.stdout, fcntl.F_SETPIPE_SZ, 1 << 20)
            try:
                yield None
                # A new array per frame: callers keep earlier frames.
                while proc.stdout.readinto(frame := np.empty(shape, np.uint8)) == frame.nbytes:
                    given += 1
                    yield frame
            except BaseException:  # the caller stopped early (GeneratorExit), or reading failed
                proc.kill()
                raise
        if proc.returncode and not given:
            log.seek(0)
            tail = log.read().decode(errors="replace").strip().splitlines()[-2:]
            raise MediaError(f"{path.name}: ffmpeg failed: {' | '.join(tail)}")

@contextlib.contextmanager
def atomic_path(dest: str | Path) -> Iterator[Path]:
    """Give a temporary sibling path that is renamed to `dest` only if the block succeeds.

    A crash therefore never leaves a half-written file under the final name.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.stem}.{uuid.uuid4().hex[:8]}.part{dest.suffix}")
    try:
        yield tmp
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)


def run_ffmpeg(stream, what: str) -> None:
    """Run an ffmpeg-python graph with our ffmpeg binary; raise MediaError with ffmpeg's reason."""
    try:
        stream.global_args("-hide_banner", "-loglevel", "error", "-nostdin").run(
            cmd=FFMPEG, capture_stdout=True, capture_stderr=True, overwrite_output=True
        )
    except ffmpeg.Error as exc:
        tail = (exc.stderr or b"").decode(errors="replace").strip().splitlines()[-3:]
        raise MediaError(f"{what}: ffmpeg failed: {' | '.join(tail)}") from None


H264_OUTPUT = {"vcodec": "libx264", "pix_fmt": "yuv420p", "movflags": "+faststart"}


class FrameWriter:
    """Stream BGR frames into an H.264 MP4 through an ffmpeg pipe; the file appears on close."""

    def __init__(self, dest: str | Path, width: int, height: int, fps: float,
                 crf: int = 18, preset: str = "veryfast"):
        self.dest, self.width, self.height = Path(dest), width, height
        self._atomic = atomic_path(self.dest)
        tmp = self._atomic.__enter__()
        self._proc = (
            ffmpeg.input("pipe:", format="rawvideo", pix_fmt="bgr24", s=f"{width}x{height}",
                         framerate=fps)
            .output(str(tmp), r=fps, crf=crf, preset=preset, **H264_OUTPUT)
            .global_args("-hide_banner", "-loglevel", "error")
            .overwrite_output()
            .run_async(cmd=FFMPEG, pipe_stdin=True, pipe_stderr=True)
        )

    def write(self, frame: np.ndarray) -> None:
        if frame.shape != (self.height, self.width, 3) or frame.dtype != np.uint8:
            raise ValueError(f"frame {frame.shape} {frame.dtype} != ({self.height}, {self.width}, 3) uint8")
        try:
            self._proc.stdin.write(np.ascontiguousarray(frame).tobytes())
        except BrokenPipeError:
            self._fail()

    def _fail(self) -> None:
        err = self._proc.stderr.read().decode(errors="replace").strip()
        self._proc.kill()
        self._atomic.__exit__(MediaError, None, None)
        raise MediaError(f"{self.dest.name}: ffmpeg encode failed: {err[-300:]}")

    def close(self) -> Path:
        self._proc.stdin.close()
        if self._proc.wait() != 0:
            self._fail()
        self._proc.stderr.close()
        self._atomic.__exit__(None, None, None)
        return self.dest

    def abort(self) -> None:
        with contextlib.suppress(Exception):
            self._proc.stdin.close()
        self._proc.kill()
        self._proc.wait()
        self._atomic.__exit__(RuntimeError, None, None)

    def __enter__(self) -> "FrameWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def evenly_spaced(total: int, count: int) -> list[int]:
    """`count` frame indices from the first to the last of `total` frames (repeats when
    `total < count`); a single index is the middle frame."""
    if total <= 0 or count <= 0:
        return []
    if count == 1:
        return [(total - 1) // 2]
    return [round(k * (total - 1) / (count - 1)) for k in range(count)]


def sample_frames(path: Path, count: int,
                  transform: Callable[[np.ndarray], np.ndarray] | None = None) -> list[np.ndarray]:
    """Decode `path` once, keeping only `count` evenly spaced BGR frames (after `transform`, e.g.
    a shrink), so memory holds those frames and never the clip. A file that ends earlier than its
    container says gives fewer. Raises MediaError (or cv2/OS errors) when it cannot be read."""
    wanted = evenly_spaced(probe(path).frames, count)
    if not wanted:
        return []
    kept: dict[int, np.ndarray] = {}
    with contextlib.closing(iter_frames(path)) as frames:
        for index, frame in enumerate(frames):
            if index > wanted[-1]:
                break
            if index in wanted:
                kept[index] = transform(frame) if transform else frame
    return [kept[i] for i in wanted if i in kept]


def cover_box(width: float, height: float, aspect: float) -> tuple[float, float, float, float]:
    """The centred (x0, y0, w, h) part of a width x height image with the given aspect
    (w/h): what a frame shows of an image scaled to cover it."""
    crop_w, crop_h = min(width, height * aspect), min(height, width / aspect)
    return (width - crop_w) / 2, (height - crop_h) / 2, crop_w, crop_h


def save_last_frame(video: str | Path, dest: str | Path) -> Path:
    """Write the video's last frame as a lossless PNG (the start of a continuing shot)."""
    dest = Path(dest).with_suffix(".png")
    last = None
    # Seek to about a second before the end (ffmpeg decodes from the keyframe before it, exactly),
    # then keep the last frame given; the whole clip when it is shorter.
    with contextlib.closing(_ffmpeg_frames_from_end(Path(video))) as frames:
        for last in frames:
            pass
    if last is None:
        raise MediaError(f"{Path(video).name}: cannot read its last frame")
    with atomic_path(dest) as tmp:
        if not cv2.imwrite(str(tmp), last):
            raise MediaError(f"cannot write {dest.name}")
    return dest


def _ffmpeg_frames_from_end(path: Path) -> Iterator[np.ndarray]:
    info = probe(path)
    shape = (info.height, info.width, 3)
    command = [FFMPEG, "-hide_banner", "-loglevel", "error", "-nostdin", "-sseof", "-1", "-i", str(path),
               "-map", VIDEO_STREAM, "-fps_mode", "passthrough", "-pix_fmt", "bgr24", "-f", "rawvideo", "pipe:"]
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL) as proc:
        try:
            while proc.stdout.readinto(frame := np.empty(shape, np.uint8)) == frame.nbytes:
                yield frame
        finally:
            proc.kill()


def file_digest(path: str | Path) -> str:
    """sha256 of a file's bytes: the identity of media in cache keys, never its path."""
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def read_image(path: str | Path) -> np.ndarray:
    """Decode an image file to BGR uint8, or raise MediaError saying why it is unusable."""
    path = Path(path)
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except OSError as exc:
        raise MediaError(f"cannot read {path}: {exc.strerror}") from None
    image = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if image is None:
        raise MediaError(f"{path.name} is not an image OpenCV can decode (use PNG, JPEG or WebP)")
    return image


def place(src: str | Path, dest: str | Path) -> Path:
    """Make `dest` hold the bytes of `src` (hard link when possible, else copy), atomically."""
    src, dest = Path(src), Path(dest)
    if src.resolve() == dest.resolve():
        return dest
    with atomic_path(dest) as tmp:
        try:
            os.link(src, tmp)
        except OSError:  # another filesystem, or links not allowed
            shutil.copyfile(src, tmp)
    return dest
