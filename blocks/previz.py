"""The local previz provider: a free, offline motion-preview renderer behind the provider interface.

It is not a generative model. It animates the reference image (or a plate composed from the
prompt) with the camera move named in the prompt (or the global motion of the shot's motion
reference video, at its timing) and the motion-brush regions, so users can
check timing, framing and motion before paying a real model.
"""

from __future__ import annotations

import time
from pathlib import Path

from pydantic import Field

from blocks.previz_render import render_previz
from blocks.providers import frame_size, GenerationRequest, GenerationResult, VideoProvider


class PrevizProvider(VideoProvider):
    """Renders motion previews locally with OpenCV and ffmpeg; needs no key and no network.

    Example:
        ```python
        from blocks.previz import PrevizProvider
        previz = PrevizProvider.load("BLOCK_NAME")
        ```
    """

    _block_type_name = "takeflow previz"
    _documentation_url = "https://docs.prefect.io/v3/concepts/blocks"
    _description = "Local motion-preview renderer: free, offline previews of a storyboard's shots."
    models = ("motion-preview",)
    provider_name = "previz"

    render_height: int = Field(
        720, ge=64, le=2160,
        description="Short side of rendered clips in pixels (720 gives 1280x720 at 16:9).")
    credits_per_second: float = Field(
        0.0, ge=0,
        description="Credits charged per rendered second; previz is free, set a price to rehearse "
                    "a budget.")
    max_concurrency: int = Field(
        2, ge=1, le=100, description="Most previews rendered at once; each keeps a CPU core busy.")
    crf: int = Field(18, ge=0, le=51, description="x264 quality of the rendered clips (lower is better).")

    def render_size(self, request: GenerationRequest) -> tuple[int, int]:
        return frame_size(request.aspect_ratio, self.render_height)

    def estimate_credits(self, request: GenerationRequest) -> float:
        return round(self.credits_per_second * request.duration, 4)

    def generate(self, request: GenerationRequest, dest: Path) -> GenerationResult:
        started = time.perf_counter()
        width, height = self.render_size(request)
        render_previz(
            dest, width=width, height=height, fps=request.fps, duration=request.duration,
            prompt=request.prompt, seed=request.seed, motion_amount=request.motion_amount,
            reference_image=request.reference_image, regions=request.motion_regions, crf=self.crf,
            motion_reference=request.motion_reference)
        return GenerationResult(
            path=dest, provider=self.get_block_type_slug(), model=request.model,
            credits=self.estimate_credits(request), seconds=time.perf_counter() - started)
