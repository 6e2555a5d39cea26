"""Bringing a clip to the delivery size: one Lanczos scale, mild sharpening.

Takes come back from providers at whatever size the model renders. Delivery needs one exact
size, so each take is scaled to *cover* that frame and centre-cropped (never stretched), and a
gentle unsharp mask restores some of the edge contrast the interpolation softens.
`delivery_scale` is the chain the single-pass assembly uses; `upscale_video` applies it to one
clip on its own (the two-encode reference the assembly is measured against, and a tool).
"""

from __future__ import annotations

from pathlib import Path

import ffmpeg

from blocks.media import H264_OUTPUT, atomic_path, place, probe, run_ffmpeg

# When the result is encoded once more (the two-encode reference): a low crf keeps it
# near-transparent, and veryfast took 2.3 s instead of medium's 5.9 s for a 4 s 1080p clip here.
UPSCALE_CRF = 14
UPSCALE_PRESET = "veryfast"
# luma 5x5 at 0.6: enough to undo Lanczos softening without halos; chroma is left alone.
UNSHARP = {"luma_msize_x": 5, "luma_msize_y": 5, "luma_amount": 0.6,
           "chroma_msize_x": 5, "chroma_msize_y": 5, "chroma_amount": 0.0}


def check_frame_size(width: int, height: int) -> None:
    """Reject sizes yuv420p cannot hold (chroma is subsampled 2x2, so both sides must be even)."""
    if width <= 0 or height <= 0 or width % 2 or height % 2:
        raise ValueError(f"frame size must be positive and even, got {width}x{height}")


def cover_crop(stream, width: int, height: int):
    """Scale `stream` (Lanczos) until it covers width x height, then crop the centre to fit.

    Scaling to cover keeps the picture's aspect ratio; the excess on one axis is cut off
    equally on both sides. setsar=1 marks the pixels square so players do not re-stretch.
    """
    return (
        stream
        .filter("scale", width, height, force_original_aspect_ratio="increase", flags="lanczos")
        .filter("crop", width, height)
        .filter("setsar", 1)
    )


def delivery_scale(stream, width: int, height: int):
    """The delivery picture chain: Lanczos cover-scale and centre crop, then mild sharpening.

    Shared by the per-take upscale and the single-pass assembly, so both look the same.
    """
    return cover_crop(stream, width, height).filter("unsharp", **UNSHARP)


def _is_delivery_ready(src: Path, width: int, height: int, fps: int | None) -> bool:
    info = probe(src)
    same_rate = fps is None or abs(info.fps - fps) < 1e-3
    return (info.width, info.height) == (width, height) and same_rate and (
        info.codec == "h264" and info.pix_fmt == "yuv420p")


def upscale_video(src: Path, dest: Path, width: int, height: int, fps: int | None = None) -> Path:
    """Write `src` scaled and cropped to exactly width x height (and `fps` if given) to `dest`.

    A source already in the delivery size, rate and format is placed byte for byte (hard link
    or copy): encoding it again would only lose quality.
    """
    src, dest = Path(src), Path(dest)
    check_frame_size(width, height)
    if fps is not None and fps <= 0:
        raise ValueError(f"fps must be positive, got {fps}")
    if _is_delivery_ready(src, width, height, fps):
        return place(src, dest)
    video = ffmpeg.input(str(src)).video
    if fps is not None:
        # Resample the rate before scaling so dropped frames are never scaled.
        video = video.filter("fps", fps)
    video = delivery_scale(video, width, height)
    rate = {"r": fps} if fps is not None else {}
    with atomic_path(dest) as tmp:
        run_ffmpeg(video.output(str(tmp), crf=UPSCALE_CRF, preset=UPSCALE_PRESET, **rate, **H264_OUTPUT),
                   f"upscale {src.name}")
    return dest
