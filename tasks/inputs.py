"""Every file a storyboard names, read one way: the storyboard itself, reference images, music,
voice-over and captions, local (relative to the storyboard), https or s3://.

Each read is bounded before it happens: only regular files are opened (a FIFO or a device
would block or never end), sizes are capped, images are probed from their header (size and
pixel count) before anything decodes them, and remote files come through one downloader with
timeouts and a byte cap, verified as the kind of file they should be.
"""

from __future__ import annotations

import hashlib
import json
import mimetypes
import os
import stat
import struct
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlparse

import httpx
import yaml
from prefect import task

from blocks.media import MediaError, atomic_path, audio_duration, probe, read_image

Kind = Literal["image", "audio", "captions", "video"]
REMOTE = ("https://", "http://", "s3://")
MAX_STORYBOARD_BYTES = 2 * 2**20  # a 200-shot storyboard with long briefs is ~200 KB
MAX_NESTING = 24  # a storyboard is at most ~6 levels deep
MAX_NODES = 200_000  # values after YAML aliases are expanded (a "billion laughs" stops here)
MAX_BYTES: dict[str, int] = {"image": 50 * 2**20, "audio": 200 * 2**20, "captions": 2 * 2**20,
                             "video": 100 * 2**20}  # video: Kling motion control takes at most 100 MB
MOTION_SECONDS = (3.0, 30.0)  # a motion reference's length, as Kling motion control takes it
MAX_IMAGE_PIXELS = 40_000_000  # 8K UHD is 33 MP; an image over this is a mistake or a bomb
MAX_IMAGE_SIDE = 16384
FETCH_TIMEOUT = httpx.Timeout(30, connect=5)
WANTED = {"image": "a PNG, JPEG or WebP file", "audio": "an audio file (WAV, MP3, M4A, AAC or FLAC)",
          "captions": "a SubRip (.srt) file", "video": "an MP4 or MOV video of 3-30 s"}


class InputError(ValueError):
    """An input cannot be used; the message is one line saying why and what to give instead.
    `transient`: the fetch may work if tried again (a timeout, a 5xx, a dropped connection)."""

    def __init__(self, message: str, transient: bool = False):
        super().__init__(message)
        self.transient = transient


# ---- local files -------------------------------------------------------------------------------

def _mb(size: int) -> str:
    return f"{size / 2**20:.0f} MB" if size >= 2**20 else f"{size / 2**10:.0f} KB"


def regular_file(path: Path, limit: int) -> int:
    """The size of `path`, a regular file of at most `limit` bytes, or InputError; never blocks."""
    try:
        info = os.stat(path)
    except OSError as exc:
        reason = "no such file" if exc.errno == 2 else (exc.strerror or "cannot read it").lower()
        raise InputError(f"{path.name}: {reason}") from None
    if not stat.S_ISREG(info.st_mode):
        what = ("a directory" if stat.S_ISDIR(info.st_mode) else "a FIFO (named pipe)" if
                stat.S_ISFIFO(info.st_mode) else "a socket" if stat.S_ISSOCK(info.st_mode) else "a device")
        raise InputError(f"{path.name}: is {what}, not a regular file")
    if info.st_size == 0:
        raise InputError(f"{path.name}: is empty")
    if info.st_size > limit:
        raise InputError(f"{path.name}: is {_mb(info.st_size)}, over the {_mb(limit)} limit")
    return info.st_size


def read_bounded(path: Path, limit: int, head: int | None = None) -> bytes:
    """The bytes of a regular file (or its first `head` bytes), opened without blocking."""
    regular_file(path, limit)
    # O_NONBLOCK: should the path be swapped for a FIFO after the check, open still returns.
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise InputError(f"{path.name}: is not a regular file")
        with os.fdopen(fd, "rb", closefd=False) as stream:
            data = stream.read(limit + 1 if head is None else head)
    finally:
        os.close(fd)
    if head is None and len(data) > limit:
        raise InputError(f"{path.name}: is over the {_mb(limit)} limit")
    return data


def image_size(header: bytes) -> tuple[str, int, int] | None:
    """(format, width, height) read from a PNG, JPEG or WebP header, without decoding."""
    if header.startswith(b"\x89PNG\r\n\x1a\n") and header[12:16] == b"IHDR":
        width, height = struct.unpack(">II", header[16:24])
        return "png", width, height
    if header.startswith(b"RIFF") and header[8:12] == b"WEBP":
        chunk = header[12:16]
        if chunk == b"VP8 " and header[23:26] == b"\x9d\x01\x2a":
            width, height = struct.unpack("<HH", header[26:30])
            return "webp", width & 0x3FFF, height & 0x3FFF
        if chunk == b"VP8L" and header[20:21] == b"\x2f":
            bits = int.from_bytes(header[21:25], "little")
            return "webp", (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
        if chunk == b"VP8X":
            return ("webp", int.from_bytes(header[24:27], "little") + 1,
                    int.from_bytes(header[27:30], "little") + 1)
        return None
    if header.startswith(b"\xff\xd8"):
        i = 2
        while i + 9 <= len(header):
            if header[i] != 0xFF:
                return None
            marker = header[i + 1]
            if marker == 0xFF:  # fill byte
                i += 1
                continue
            length = struct.unpack(">H", header[i + 2:i + 4])[0]
            if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
                height, width = struct.unpack(">HH", header[i + 5:i + 9])
                return "jpeg", width, height
            i += 2 + length
    return None


def check_image(path: Path) -> tuple[int, int]:
    """(width, height) of a usable image: probed from its header first, then decoded once."""
    # JPEG metadata (EXIF, ICC) can put the frame header far in; 1 MB covers real files.
    probed = image_size(read_bounded(path, MAX_BYTES["image"], head=2**20))
    if probed is None:
        raise InputError(f"{path.name}: is not an image (PNG, JPEG or WebP)")
    fmt, width, height = probed
    if not width or not height:
        raise InputError(f"{path.name}: its {fmt.upper()} header gives no size")
    if width * height > MAX_IMAGE_PIXELS or max(width, height) > MAX_IMAGE_SIDE:
        raise InputError(f"{path.name}: is {width}x{height} ({width * height / 1e6:.0f} MP), over the "
                         f"{MAX_IMAGE_PIXELS / 1e6:.0f} MP limit; downscale it to at most 7680x4320")
    try:
        read_image(path)
    except MediaError as exc:
        raise InputError(str(exc)) from None
    return width, height


def check_audio(path: Path) -> float:
    regular_file(path, MAX_BYTES["audio"])
    try:
        return audio_duration(path)
    except MediaError as exc:
        raise InputError(str(exc)) from None


def check_captions(path: Path) -> None:
    from tasks.srt import SubtitleError, parse_srt

    try:
        parse_srt(read_bounded(path, MAX_BYTES["captions"]), path.name)
    except SubtitleError as exc:
        raise InputError(str(exc)) from None


def check_video(path: Path) -> float:
    """The length of a usable motion reference: an MP4/MOV (ISO base media, the containers Kling
    motion control takes) of at most 100 MB holding 3 to 30 s of video; probed, never decoded."""
    header = read_bounded(path, MAX_BYTES["video"], head=12)
    if header[4:8] != b"ftyp":
        raise InputError(f"{path.name}: is not an MP4 or MOV video")
    try:
        info = probe(path)
    except MediaError as exc:
        raise InputError(str(exc)) from None
    low, high = MOTION_SECONDS
    if not low <= info.duration <= high:
        raise InputError(f"{path.name}: lasts {info.duration:.1f} s; a motion reference must last "
                         f"{low:g}-{high:g} s, so trim or extend it")
    return info.duration


CHECKS = {"image": check_image, "audio": check_audio, "captions": check_captions, "video": check_video}


def check_file(path: Path, kind: Kind) -> Any:
    """What the kind's check returns (an image's size, a clip's length) or InputError."""
    return CHECKS[kind](Path(path))


def locate(value: str, base: str) -> str:
    """A storyboard input as an absolute path, or as a URI: relative paths are relative to the
    storyboard's folder (`base`), or name objects beside it for a storyboard read from S3."""
    if value.startswith(REMOTE):
        return value
    if base.startswith("s3://"):
        return f"{base.rstrip('/')}/{value.lstrip('/')}"
    path = Path(value).expanduser()
    return str((path if path.is_absolute() else Path(base) / path).resolve())


# ---- storyboard files --------------------------------------------------------------------------

# libyaml's parser when PyYAML has it: a 2 MB storyboard parses in 0.03 s instead of 2 s.
_SafeLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _UniqueKeyLoader(_SafeLoader):
    """Safe YAML that refuses a key given twice (YAML would silently keep the last)."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if isinstance(key, (str, int, float, bool)) and key in seen:
                raise InputError(f"line {key_node.start_mark.line + 1}: key '{key}' is given twice; keep one")
            seen.add(key)
        return super().construct_mapping(node, deep)


def _yaml_depth(text: str) -> None:
    """Refuse nesting deeper than MAX_NESTING from the event stream, before anything recurses."""
    depth = 0
    for event in yaml.parse(text, Loader=_SafeLoader):
        if isinstance(event, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
            depth += 1
            if depth > MAX_NESTING:
                raise InputError(f"line {event.start_mark.line + 1}: nested more than {MAX_NESTING} "
                                 "levels deep; a storyboard needs far fewer")
        elif isinstance(event, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
            depth -= 1


def _json_depth(text: str) -> None:
    depth, in_string, escaped = 0, False, False
    for n, char in enumerate(text):
        if in_string:
            escaped, in_string = (not escaped and char == "\\"), in_string and (escaped or char != '"')
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            if depth > MAX_NESTING:
                raise InputError(f"line {text.count(chr(10), 0, n) + 1}: nested more than {MAX_NESTING} "
                                 "levels deep; a storyboard needs far fewer")
        elif char in "]}":
            depth -= 1


def _count_nodes(data: Any) -> None:
    """Refuse data that expands (through YAML aliases) to more than MAX_NODES values."""
    stack, count = [data], 0
    while stack:
        value = stack.pop()
        count += 1
        if count > MAX_NODES:
            raise InputError(f"expands to more than {MAX_NODES} values (YAML aliases?); write it out plainly")
        if isinstance(value, dict):
            stack.extend(value.values())
        elif isinstance(value, list):
            stack.extend(value)


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = {}
    for key, value in pairs:
        if key in result:
            raise InputError(f"key '{key}' is given twice; keep one")
        result[key] = value
    return result


def read_storyboard_data(path: Path) -> Any:
    """The parsed content of a YAML or JSON storyboard, bounded in size, depth and expansion."""
    data = read_bounded(path, MAX_STORYBOARD_BYTES)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(f"byte {exc.start} is not UTF-8; save the storyboard as UTF-8 text") from None
    try:
        if path.suffix.lower() == ".json":
            _json_depth(text)
            data = json.loads(text, object_pairs_hook=_no_duplicates)
        else:
            _yaml_depth(text)
            data = yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 (a SafeLoader subclass)
    except (yaml.YAMLError, json.JSONDecodeError) as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f"line {mark.line + 1}: " if mark else (f"line {exc.lineno}: " if hasattr(exc, "lineno") else "")
        problem = getattr(exc, "problem", None) or getattr(exc, "msg", None) or str(exc).splitlines()[0]
        if "nesting depth" in problem:  # libyaml's own bound, met before ours when scanning ahead
            raise InputError(f"{line}nested more than {MAX_NESTING} levels deep; a storyboard needs far "
                             "fewer") from None
        raise InputError(f"{line}not valid {'JSON' if path.suffix.lower() == '.json' else 'YAML'} "
                         f"({problem})") from None
    _count_nodes(data)
    return data


# ---- remote files and the one downloader -------------------------------------------------------

def download(url: str, folder: Path, name: str, kind: Kind) -> Path:
    """Fetch an https URL into `folder` (named by content), capped and verified as `kind`."""
    limit = MAX_BYTES[kind]
    try:
        with httpx.Client(timeout=FETCH_TIMEOUT, follow_redirects=True, max_redirects=5) as client:
            with client.stream("GET", url) as response:
                if response.status_code >= 400:
                    raise InputError(f"{url} answered HTTP {response.status_code}",
                                     transient=response.status_code in (408, 429) or response.status_code >= 500)
                declared = response.headers.get("content-length", "")
                if declared.isdigit() and int(declared) > limit:
                    raise InputError(f"{url} is {_mb(int(declared))}, over the {_mb(limit)} limit")
                data = bytearray()
                for chunk in response.iter_bytes():
                    data += chunk
                    if len(data) > limit:
                        raise InputError(f"{url} is over the {_mb(limit)} limit")
                content_type = response.headers.get("content-type", "").split(";")[0]
    except httpx.HTTPError as exc:
        reason = type(exc).__name__.replace("Error", " error").replace("Timeout", "timeout").lower()
        raise InputError(f"cannot fetch {url} ({reason}: {str(exc)[:80] or 'no detail'})",
                         transient=isinstance(exc, httpx.TransportError)) from None
    suffix = Path(urlparse(url).path).suffix or mimetypes.guess_extension(content_type) or ".bin"
    dest = Path(folder) / f"{name}-{hashlib.sha256(data).hexdigest()[:12]}{suffix[:8]}"
    dest.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(dest) as tmp:
        tmp.write_bytes(bytes(data))
        try:
            check_file(tmp, kind)
        except InputError as exc:  # a sign-in or error page served where the file should be says so
            why = f"the server sent {content_type}" if content_type.startswith("text/") else \
                str(exc).split(": ", 1)[-1]
            raise InputError(f"{url} is not {WANTED[kind]} ({why})") from None
    return dest


def fetch_from_storage(storage, uri: str, folder: Path, name: str, kind: Kind) -> Path:
    """Fetch an s3:// input through a storage block, verified as `kind` (and its size capped)."""
    dest = Path(folder) / f"{name}-{Path(urlparse(uri).path).name}"
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        storage.get(uri, dest)
        check_file(dest, kind)
    except InputError as exc:
        dest.unlink(missing_ok=True)
        raise InputError(f"{uri} is not {WANTED[kind]} ({str(exc).split(': ', 1)[-1]})") from None
    except Exception as exc:  # the storage block's own errors: missing object, denied, unreachable
        raise InputError(f"cannot fetch {uri} ({str(exc).splitlines()[0][:160]})") from None
    return dest


def _transient(task, task_run, state) -> bool:
    try:
        state.result()
    except InputError as exc:
        return exc.transient
    except Exception:
        return True
    return False


@task(name="fetch-input", task_run_name="fetch-{name}", retries=2, retry_delay_seconds=[1, 5],
      retry_condition_fn=_transient)
def fetch_input(uri: str, name: str, folder: Path, kind: Kind, storage=None) -> Path:
    """A storyboard input as a local file: https downloaded, s3:// read through the storage block."""
    if uri.startswith("s3://"):
        if storage is None:
            raise InputError(f"{uri}: an s3:// input needs a storage block (--storage) that can read it")
        return fetch_from_storage(storage, uri, folder, name, kind)
    return download(uri, folder, name, kind)


def resolve_input(uri: str | None, name: str, folder: Path, kind: Kind, storage=None) -> Path | None:
    """A storyboard input as a local path: local paths as they are, remote ones fetched."""
    if uri is None:
        return None
    if uri.startswith(REMOTE):
        return fetch_input(uri, name, Path(folder), kind, storage)
    return Path(uri)
