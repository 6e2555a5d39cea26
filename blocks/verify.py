"""Is a downloaded video whole? Decode it to the end and count its frames against its header.

Reading the header alone accepts a file cut off mid-transfer whose `moov` atom sits at the front
(`+faststart`, as providers serve): the index still lists every frame. Decoding every frame of the
first video stream (to a null muxer: nothing is written) finds where the data stops.
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

from blocks.media import FFMPEG, MediaError, probe

# ffmpeg's words for data that ends before the index says it should
_TRUNCATED = re.compile(r"partial file|Invalid NAL unit size|moov atom not found|End of file|"
                        r"Error splitting the input", re.IGNORECASE)


@dataclass(frozen=True)
class DecodeCheck:
    expected: int  # frames the stream's header declares
    decoded: int   # frames ffmpeg decoded to the end of the file
    problem: str | None  # why the file is not whole, None when it is


def decode_check(path: str | Path, timeout: float = 600.0) -> DecodeCheck:
    """Decode the first video stream of `path` to the end; say whether every declared frame came."""
    path = Path(path)
    try:
        expected = probe(path).frames
    except MediaError as exc:
        return DecodeCheck(0, 0, f"not a playable video ({exc})")
    run = subprocess.run(
        [FFMPEG, "-hide_banner", "-nostdin", "-v", "error", "-i", str(path), "-map", "0:v:0",
         "-f", "null", "-progress", "pipe:1", "-"], capture_output=True, text=True, timeout=timeout)
    counts = re.findall(r"^frame=(\d+)", run.stdout, re.MULTILINE)
    decoded = int(counts[-1]) if counts else 0
    damage = _TRUNCATED.search(run.stderr)
    if run.returncode != 0:
        problem = f"ffmpeg could not decode it ({run.stderr.strip().splitlines()[-1][:160] if run.stderr.strip() else 'no reason'})"
    elif damage:
        problem = f"the data ends early ({damage.group(0)}; {decoded} of {expected} frames decode)"
    elif decoded < expected - 1:  # one frame of slack: edit lists may hide a leading frame
        problem = f"only {decoded} of the {expected} frames its header lists decode"
    elif decoded < 2:
        problem = "it has fewer than two frames"
    else:
        problem = None
    return DecodeCheck(expected, decoded, problem)
