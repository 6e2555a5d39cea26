"""Which model a shot can use: the catalogue's capability check said in storyboard terms, and the
`model: auto` router.

A shot's needs follow from what it asks for: its length and aspect ratio, a reference image
(image-to-video), motion-brush regions, sound, and a native generation resolution
(`tasks.storyboard.shot_needs`). A model that cannot meet them is refused before anything is
spent, with what to do instead; `auto` picks the cheapest model that can. The check itself is
`ModelEntry.unmet` (blocks/catalogue.py), the same one every adapter runs; this module only adds
the storyboard's fixes. It imports nothing from the pipeline, so the storyboard model can use it.
"""

from __future__ import annotations

from dataclasses import dataclass

from blocks.catalogue import RESOLUTIONS, Catalogue, ModelEntry, Needs, Unmet, load_catalogue

__all__ = ["AUTO", "LOCAL", "Choice", "Needs", "check_choice", "problems", "route"]

AUTO = "auto"
LOCAL = ("previz",)  # not a generative model: `auto` never picks it


@dataclass(frozen=True)
class Choice:
    """A resolved model for a shot's takes."""

    provider: str
    model: str
    resolution: str | None


def _fix(entry: ModelEntry, needs: Needs, unmet: Unmet) -> str:
    """What a storyboard author does about one unmet need."""
    if unmet.need == "resolution":
        best = entry.max_resolution
        width, height = entry.size(needs.aspect_ratio, best) if needs.aspect_ratio in \
            entry.resolutions[best].sizes else (0, 0)
        at = f" at {width}x{height}" if width else ""
        return (f"generate{at} and upscale to {needs.resolution} by setting delivery: {needs.resolution} and "
                f"leaving resolution out, or choose a model with native {needs.resolution}")
    if unmet.need == "duration":
        return ("split the shot into shorter shots" if needs.duration > entry.longest
                else "set the shot's duration to one of those")
    return {"aspect_ratio": "change defaults.aspect_ratio or choose another model",
            "image": "remove reference_image/continues or choose an image-to-video model",
            "no_image": "add reference_image or choose a text-to-video model",
            "brush": "remove motion_brush or choose a model with one (e.g. kling/kling-v1-5)",
            "motion": "remove motion_reference or choose kling/kling-v3-motion-control (or previz for a free "
                      "preview)",
            "no_motion": "add motion_reference or choose another model",
            "audio": "set audio: false and add music, or choose a model with audio"}[unmet.need]


def problems(entry: ModelEntry, needs: Needs) -> list[str]:
    """Why `entry` cannot make the shot, each with what to do instead; empty when it can."""
    return [f"{unmet.fact}; {_fix(entry, needs, unmet)}" for unmet in entry.unmet(needs)]


def route(needs: Needs, providers: list[str] | None = None, catalogue: Catalogue | None = None) -> Choice:
    """The cheapest model (among `providers`, else every hosted one) that meets the shot's needs."""
    catalogue = catalogue or load_catalogue()
    candidates = []
    for entry in catalogue.models:
        if entry.retired or entry.provider in LOCAL or (providers and entry.provider not in providers):
            continue
        if entry.unmet(needs):
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


def check_choice(provider: str, model: str, needs: Needs, catalogue: Catalogue | None = None) -> Choice:
    """A named (provider, model) as a checked Choice for `needs`. Raises ValueError with the first
    problem and its fix."""
    try:
        entry = (catalogue or load_catalogue()).model(provider, model)
    except KeyError as exc:
        raise ValueError(exc.args[0]) from None
    found = problems(entry, needs)
    if found:
        raise ValueError(found[0])
    return Choice(provider, model, needs.resolution)
