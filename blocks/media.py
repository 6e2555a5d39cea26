"""Media I/O shared by every stage: probing, streaming frames in and out of ffmpeg, hashing.

ffmpeg comes from the imageio-ffmpeg wheel, which ships no ffprobe, so probing reads the
container with OpenCV (exact frame count and size) and `ffmpeg -i` (codec, pixel format, audio).
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


class MediaError(RuntimeError):
    """A file is not the media it should be, or ffmpeg failed on it."""


@dataclass(frozen=True)
class VideoInfo:
    width: int
    height: int
    fps: float
    frames: int
    codec: str
    pix_fmt: str
    has_audio: bool

    @property
    def duration(self) -> float:
        return self.frames / self.fps if self.fps else 0.0


_STREAM_RE = re.compile(r"Stream #\d+:\d+.*?: Video: (\w+)[^,]*, (\w+)")


def probe(path: str | Path) -> VideoInfo:
    """Read size, frame rate, frame count, codec and audio presence of a video file."""
    path = Path(path)
    if not path.is_file() or path.stat().st_size == 0:
        raise MediaError(f"{path.name}: missing or empty file")
    cap = cv2.VideoCapture(str(path))
    try:
        if not cap.isOpened():
            raise MediaError(f"{path.name}: not a readable video")
        width = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH))
        height = int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
        fps = float(cap.get(cv2.CAP_PROP_FPS))
        frames = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
    finally:
        cap.release()
    if width <= 0 or height <= 0 or fps <= 0 or frames <= 0:
        raise MediaError(f"{path.name}: no video stream")
    # ffmpeg -i always exits 1 without an output; its stderr is the header dump we want.
    header = subprocess.run(
        [FFMPEG, "-hide_banner", "-i", str(path)], capture_output=True, text=True, timeout=60
    ).stderr
    match = _STREAM_RE.search(header)
    codec, pix_fmt = (match.group(1), match.group(2)) if match else ("unknown", "unknown")
    has_audio = re.search(r"Stream #\d+:\d+.*?: Audio:", header) is not None
    return VideoInfo(width, height, round(fps, 3), frames, codec, pix_fmt, has_audio)


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


def iter_frames(path: str | Path, max_side: int | None = None, gray: bool = False) -> Iterator[np.ndarray]:
    """The frames of a video as BGR uint8 arrays, one at a time (never the whole clip).

    With `max_side`, frames are shrunk (area interpolation) so their longer side is at most that.
    With `gray`, they are grey (luma) arrays, decoded, shrunk and greyed by an ffmpeg process on
    another core (far cheaper than a full-size colour decode shrunk and greyed here), which starts
    at once, so that it decodes while the caller gets ready.
    """
    if not gray:
        return _bgr_frames(path, max_side)
    frames = _gray_frames(Path(path), max_side)
    next(frames)  # runs up to ffmpeg's start
    return frames


def _capture(path: str | Path) -> cv2.VideoCapture:
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise MediaError(f"{Path(path).name}: not a readable video")
    return cap


def _bgr_frames(path: str | Path, max_side: int | None) -> Iterator[np.ndarray]:
    cap = _capture(path)
    try:
        while True:
            ok, frame = cap.read()
            if not ok:
                return
            if max_side and max(frame.shape[:2]) > max_side:
                frame = cv2.resize(frame, _shrunk(frame.shape[1], frame.shape[0], max_side),
                                   interpolation=cv2.INTER_AREA)
            yield frame
    finally:
        cap.release()


def _gray_frames(path: Path, max_side: int | None) -> Iterator[np.ndarray | None]:
    """None once ffmpeg has started, then the grey frames. Like OpenCV, ffmpeg stops at the first
    frame it cannot decode; MediaError when it fails before giving any frame."""
    cap = _capture(path)
    width, height = _shrunk(int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)),
                            max_side)
    cap.release()
    # One decoding and one filter thread: the caller measures on the other core meanwhile.
    # passthrough: every decoded frame once, none duplicated or dropped.
    command = [FFMPEG, "-hide_banner", "-loglevel", "error", "-nostdin", "-threads", "1", "-filter_threads",
               "1", "-i", str(path), "-map", "0:v:0", "-fps_mode", "passthrough",
               "-vf", f"scale={width}:{height}:flags=area,format=gray", "-f", "rawvideo", "pipe:"]
    given = 0
    # stderr goes to a file: a broken stream can log more than a pipe holds, blocking ffmpeg.
    with tempfile.TemporaryFile() as log:
        with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=log) as proc:
            with contextlib.suppress(OSError):  # a 1 MiB pipe lets ffmpeg decode a few frames ahead
                fcntl.fcntl(proc.stdout, fcntl.F_SETPIPE_SZ, 1 << 20)
            try:
                yield None
                # A new array per frame: callers keep earlier frames.
                while proc.stdout.readinto(frame := np.empty((height, width), np.uint8)) == frame.nbytes:
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
    cap = cv2.VideoCapture(str(video))
    try:
        count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
        cap.set(cv2.CAP_PROP_POS_FRAMES, max(0, count - 1))
        ok, frame = cap.read()
    finally:
        cap.release()
    if not ok:
        raise MediaError(f"{Path(video).name}: cannot read its last frame")
    with atomic_path(Path(dest).with_suffix(".png")) as tmp:
        if not cv2.imwrite(str(tmp), frame):
            raise MediaError(f"cannot write {Path(dest).name}")
    return Path(dest).with_suffix(".png")


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
