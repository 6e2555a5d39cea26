"""Which model a shot can use: capability checks against the catalogue, and the `model: auto` router.

A shot's needs follow from what it asks for: its length and aspect ratio, a reference image
(image-to-video), motion-brush regions, sound, and a native generation resolution. A model that
cannot meet them is refused before anything is spent, with what to do instead; `auto` picks the
cheapest model that can.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from blocks.catalogue import RESOLUTIONS, Catalogue, ModelEntry, load_catalogue

if TYPE_CHECKING:
    from tasks.storyboard import Storyboard

AUTO = "auto"
LOCAL = ("previz",)  # not a generative model: `auto` never picks it


@dataclass(frozen=True)
class Needs:
    """What one shot asks of a model."""

    duration: float
    aspect_ratio: str
    image: bool
    brush: bool
    audio: bool
    resolution: str | None  # a native generation resolution, when the shot names one
    motion: bool = False  # the shot names a motion reference video


@dataclass(frozen=True)
class Choice:
    """A resolved model for a shot's takes."""

    provider: str
    model: str
    resolution: str | None


def shot_needs(storyboard: Storyboard, index: int) -> Needs:
    shot, defaults = storyboard.shots[index], storyboard.defaults
    return Needs(duration=storyboard.duration_of(index), aspect_ratio=defaults.aspect_ratio,
                 image=bool(shot.reference_image or shot.continues), brush=bool(shot.motion_brush),
                 audio=shot.audio if shot.audio is not None else defaults.audio,
                 resolution=shot.resolution or defaults.resolution, motion=bool(shot.motion_reference))


def problems(entry: ModelEntry, needs: Needs) -> list[str]:
    """Why `entry` cannot make the shot, each with what to do instead; empty when it can."""
    name, found = f"{entry.provider}/{entry.model}", []
    if needs.resolution and needs.resolution not in entry.resolutions:
        best = entry.max_resolution
        width, height = entry.size(needs.aspect_ratio, best) if needs.aspect_ratio in entry.ratios else (0, 0)
        at = f" at {width}x{height}" if width else ""
        found.append(f"{name} does not generate at {needs.resolution} (at most {best}); generate{at} and "
                     f"upscale to {needs.resolution} by setting delivery: {needs.resolution} and leaving "
                     "resolution out, or choose a model with native " + needs.resolution)
    if needs.aspect_ratio not in entry.ratios:
        found.append(f"{name} makes no {needs.aspect_ratio} clips (only {', '.join(entry.ratios)}); change "
                     "defaults.aspect_ratio or choose another model")
    resolution = needs.resolution if needs.resolution in entry.resolutions else None
    if not entry.allows_duration(needs.duration, resolution):
        allowed = entry.describe_durations(resolution)
        fix = ("split the shot into shorter shots" if needs.duration > entry.longest
               else "set the shot's duration to one of those")
        found.append(f"{name} makes {allowed} clips, not {needs.duration:g} s; {fix}")
    if needs.image and not entry.image_to_video:
        found.append(f"{name} takes no reference image; remove reference_image/continues or choose an "
                     "image-to-video model")
    if not needs.image and not entry.text_to_video:
        found.append(f"{name} needs a reference image; add reference_image or choose a text-to-video model")
    if needs.brush and not entry.motion_brush:
        found.append(f"{name} has no motion brush; remove motion_brush or choose a model with one "
                     "(e.g. kling/kling-v1-5)")
    if needs.motion and entry.motion_reference == "none":
        found.append(f"{name} follows no motion reference; remove motion_reference or choose "
                     "kling/kling-v3-motion-control (or previz for a free preview)")
    if not needs.motion and entry.motion_reference == "required":
        found.append(f"{name} needs a motion reference video; add motion_reference or choose another model")
    if needs.audio and entry.audio == "none":
        found.append(f"{name} makes no sound; set audio: false and add music, or choose a model with audio")
    return found


def route(needs: Needs, providers: list[str] | None = None, catalogue: Catalogue | None = None) -> Choice:
    """The cheapest model (among `providers`, else every hosted one) that meets the shot's needs."""
    catalogue = catalogue or load_catalogue()
    candidates = []
    for entry in catalogue.models:
        if entry.retired or entry.provider in LOCAL or (providers and entry.provider not in providers):
            continue
        if problems(entry, needs):
            continue
        resolution = needs.resolution or entry.default_resolution
        cost = catalogue.credits(entry.provider, entry.model, needs.duration, resolution, needs.audio)
        candidates.append((cost, RESOLUTIONS[resolution], entry.provider, entry.model, needs.resolution))
    if not candidates:
        wanted = [f"{needs.duration:g} s", needs.aspect_ratio] + [label for label, on in (
            ("image input", needs.image), ("motion brush", needs.brush), ("audio", needs.audio),
            (f"native {needs.resolution}", bool(needs.resolution))) if on]
        among = f" among {', '.join(providers)}" if providers else ""
        raise ValueError(f"no model{among} offers {', '.join(wanted)}; relax one of these or name a model")
    _, _, provider, model, resolution = min(candidates)
    return Choice(provider, model, resolution)


def resolve(storyboard: Storyboard, index: int, provider: str, model: str) -> Choice:
    """A shot's (provider, model) as a checked Choice; `auto` is routed. Raises ValueError."""
    needs = shot_needs(storyboard, index)
    catalogue = load_catalogue()
    if model == AUTO:
        shot_provider = storyboard.shots[index].provider
        allowed = [shot_provider] if shot_provider and shot_provider != AUTO else storyboard.defaults.providers
        return route(needs, allowed, catalogue)
    try:
        entry = catalogue.model(provider, model)
    except KeyError as exc:
        raise ValueError(exc.args[0]) from None
    found = problems(entry, needs)
    if found:
        raise ValueError(found[0])
    return Choice(provider, model, needs.resolution)
