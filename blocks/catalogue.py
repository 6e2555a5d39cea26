"""The capability and price catalogue: what each provider's models can do and what they cost.

It is data (`blocks/catalogue.yaml`, versioned, every entry with its source and the date it was
checked), so a price change is a one-line edit and users can point `TAKEFLOW_CATALOGUE` at their
own file. Prices are kept in the provider's own billing unit with its conversion to takeflow
credits (1 credit = 0.01 USD), so they can be checked against the provider's price page.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

DEFAULT_PATH = Path(__file__).with_name("catalogue.yaml")
CREDIT_USD = 0.01
RESOLUTIONS = {"480p": 480, "540p": 540, "720p": 720, "768p": 768, "1080p": 1080, "1440p": 1440, "4k": 2160}


@dataclass(frozen=True)
class Needs:
    """What one generation asks of a model (a shot's, a draft's or a single request's)."""

    duration: float
    aspect_ratio: str
    image: bool  # a first-frame reference image
    brush: bool  # motion-brush regions
    audio: bool
    resolution: str | None  # a native generation resolution, when one is named
    motion: bool = False  # a motion reference video


Need = Literal["resolution", "aspect_ratio", "duration", "image", "no_image", "brush", "motion", "no_motion",
               "audio"]


@dataclass(frozen=True)
class Unmet:
    """One need a model cannot meet: which, and the fact in words ('runway/gen4.5 makes no sound').
    Callers add the fix in their own terms (a storyboard field, a request setting)."""

    need: Need
    fact: str


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Resolution(Strict):
    """One output resolution of a model: the pixel size per aspect ratio and its price."""

    sizes: dict[str, str] = Field(description="Aspect ratio ('16:9') to output size ('1280x720').")
    price: float = Field(ge=0, description="Price per second of output in the provider's unit.")
    price_audio: float | None = Field(None, ge=0, description="Price per second with sound, if different.")
    durations: list[float] | None = Field(None, description="Durations allowed at this resolution, "
                                                           "when narrower than the model's.")


class ModelEntry(Strict):
    """One model at one provider, with what it can do and what it costs."""

    provider: str = Field(description="Provider name as used in storyboards ('runway').")
    model: str = Field(description="Model name as the provider's API spells it.")
    label: str = Field(description="Name users know it by.")
    source: str = Field(description="Where the facts below come from.")
    checked: str = Field(description="Date the facts were checked (YYYY-MM-DD).")
    retired: str | None = Field(None, description="Date the provider shut the model down, if it did.")
    price_assumed: bool = Field(False, description="True when no published price was found and the prices "
                                                   "are takeflow's estimate (see `source`; override them in "
                                                   "your catalogue).")
    text_to_video: bool = Field(True, description="Generates from a prompt alone.")
    image_to_video: bool = Field(True, description="Takes a first-frame reference image.")
    durations: list[float] = Field((), description="Clip lengths it accepts, in seconds.")
    duration_range: tuple[float, float] | None = Field(
        None, description="Any length from the first to the second number of seconds, for models "
                          "that take arbitrary lengths (instead of `durations`).")
    fps: int = Field(description="Frame rate of its output.")
    resolutions: dict[str, Resolution] = Field(description="Output resolutions by short side ('720p').")
    default_resolution: str = Field(description="Resolution used when a shot names none.")
    audio: Literal["none", "optional", "always"] = Field("none", description="Whether it makes sound.")
    motion_brush: bool = Field(False, description="Takes motion-brush regions.")
    camera_control: bool = Field(False, description="Takes an explicit camera move.")
    motion_reference: Literal["none", "optional", "required"] = Field(
        "none", description="Whether it follows a motion reference video (a shot's motion_reference); "
                            "'required' models make clips exactly as long as the reference.")
    seed: bool = Field(False, description="Takes a seed (takes are then reproducible).")
    max_prompt: int | None = Field(None, description="Longest prompt it takes, in characters (UTF-16 "
                                   "units); None where the provider documents no limit.")

    @model_validator(mode="after")
    def _check(self) -> ModelEntry:
        if not self.durations and not self.duration_range:
            raise ValueError(f"{self.provider}/{self.model}: give durations or duration_range")
        if self.default_resolution not in self.resolutions:
            raise ValueError(f"{self.provider}/{self.model}: default_resolution not among resolutions")
        for name in self.resolutions:
            if name not in RESOLUTIONS:
                raise ValueError(f"{self.provider}/{self.model}: unknown resolution {name}")
        return self

    @property
    def max_resolution(self) -> str:
        return max(self.resolutions, key=RESOLUTIONS.__getitem__)

    @property
    def ratios(self) -> list[str]:
        return sorted({r for res in self.resolutions.values() for r in res.sizes})

    def durations_at(self, resolution: str | None) -> list[float]:
        return self.resolutions[resolution or self.default_resolution].durations or self.durations

    def allows_duration(self, seconds: float, resolution: str | None = None) -> bool:
        narrowed = self.resolutions[resolution or self.default_resolution].durations
        if self.duration_range and not narrowed:
            return self.duration_range[0] <= seconds <= self.duration_range[1]
        return any(abs(seconds - d) < 1e-6 for d in self.durations_at(resolution))

    def describe_durations(self, resolution: str | None = None) -> str:
        """'2-10 s', '6-20 s in steps of 2' or '4, 6, 8 s'."""
        narrowed = self.resolutions[resolution or self.default_resolution].durations
        if self.duration_range and not narrowed:
            return f"{self.duration_range[0]:g}-{self.duration_range[1]:g} s"
        values = self.durations_at(resolution)
        steps = {b - a for a, b in zip(values, values[1:])}
        if len(values) > 2 and len(steps) == 1:
            step = steps.pop()
            return f"{values[0]:g}-{values[-1]:g} s" + (f" in steps of {step:g}" if step != 1 else "")
        return ", ".join(f"{d:g}" for d in values) + " s"

    @property
    def longest(self) -> float:
        return self.duration_range[1] if self.duration_range else max(self.durations)

    def size(self, aspect_ratio: str, resolution: str | None = None) -> tuple[int, int]:
        res = self.resolutions[resolution or self.default_resolution]
        width, height = res.sizes[aspect_ratio].split("x")
        return int(width), int(height)

    def unmet(self, needs: Needs) -> list[Unmet]:
        """Every need this model cannot meet, in a fixed order; empty when it can make the clip.
        The one capability check: routing, storyboard validation and every adapter use it."""
        name, found = f"{self.provider}/{self.model}", []
        if needs.resolution and needs.resolution not in self.resolutions:
            found.append(Unmet("resolution", f"{name} does not generate at {needs.resolution} (at most "
                                             f"{self.max_resolution})"))
        resolution = needs.resolution if needs.resolution in self.resolutions else None
        sizes = self.resolutions[resolution or self.default_resolution].sizes
        if needs.aspect_ratio not in self.ratios:
            found.append(Unmet("aspect_ratio", f"{name} makes no {needs.aspect_ratio} clips (only "
                                               f"{', '.join(self.ratios)})"))
        elif needs.aspect_ratio not in sizes:
            found.append(Unmet("aspect_ratio", f"{name} makes no {needs.aspect_ratio} clips at "
                                               f"{resolution or self.default_resolution} (only {', '.join(sizes)})"))
        if not self.allows_duration(needs.duration, resolution):
            found.append(Unmet("duration", f"{name} makes {self.describe_durations(resolution)} clips, not "
                                           f"{needs.duration:g} s"))
        if needs.image and not self.image_to_video:
            found.append(Unmet("image", f"{name} takes no reference image"))
        if not needs.image and not self.text_to_video:
            found.append(Unmet("no_image", f"{name} needs a reference image"))
        if needs.brush and not self.motion_brush:
            found.append(Unmet("brush", f"{name} has no motion brush"))
        if needs.motion and self.motion_reference == "none":
            found.append(Unmet("motion", f"{name} follows no motion reference"))
        if not needs.motion and self.motion_reference == "required":
            found.append(Unmet("no_motion", f"{name} needs a motion reference video"))
        if needs.audio and self.audio == "none":
            found.append(Unmet("audio", f"{name} makes no sound"))
        return found

    def price_per_second(self, resolution: str | None, audio: bool) -> float:
        res = self.resolutions[resolution or self.default_resolution]
        with_sound = audio or self.audio == "always"
        return res.price_audio if with_sound and res.price_audio is not None else res.price


class UpscaleTarget(Strict):
    """One delivery resolution an upscaler can reach: how its API names it and what it costs."""

    api: str = Field(description="The API's value for it (Runway's '1k' for 1080p).")
    price: float = Field(ge=0, description="Price per second of output in the provider's unit.")


class UpscalerEntry(Strict):
    """A provider's super-resolution model: the delivery sizes it reaches, its input limits, its price."""

    provider: str = Field(description="Provider name ('runway').")
    model: str = Field(description="Model name as the provider's API spells it.")
    label: str = Field(description="Name users know it by.")
    source: str = Field(description="Where the contract facts come from.")
    price_source: str = Field(description="Where the prices come from, or why they are an assumption.")
    price_assumed: bool = Field(False, description="True when no published price was found and the prices "
                                                   "are takeflow's assumption (override them in your catalogue).")
    checked: str = Field(description="Date the facts were checked (YYYY-MM-DD).")
    resolutions: dict[str, UpscaleTarget] = Field(description="Delivery resolution ('1080p') to its target.")
    max_input_mb: float = Field(gt=0, description="Largest input the API takes inline (as a data URI), in MB.")
    max_upload_mb: float | None = Field(None, gt=0, description="Largest input the API takes through its upload "
                                                                "endpoint, in MB; None when it has none.")
    max_duration: float | None = Field(None, gt=0, description="Longest clip it takes in seconds; None when "
                                                               "no limit is documented.")

    def target(self, resolution: str) -> UpscaleTarget:
        if resolution not in self.resolutions:
            raise KeyError(f"{self.provider}/{self.model} does not upscale to {resolution}; it reaches "
                           f"{', '.join(self.resolutions)}")
        return self.resolutions[resolution]


class ProviderEntry(Strict):
    """A provider's billing unit."""

    unit: str = Field(description="What the provider bills in ('credit', 'unit', 'USD').")
    unit_usd: float = Field(gt=0, description="USD per billing unit.")
    source: str = Field(description="Where the unit price comes from.")
    checked: str = Field(description="Date checked (YYYY-MM-DD).")

    @property
    def credits_per_unit(self) -> float:
        return self.unit_usd / CREDIT_USD


class Catalogue(Strict):
    """Every provider and model takeflow can use, as loaded from a catalogue file."""

    version: str = Field(description="Date of this catalogue edition (YYYY-MM-DD).")
    providers: dict[str, ProviderEntry] = Field(description="Providers by name.")
    models: list[ModelEntry] = Field(description="Every model.")
    upscalers: list[UpscalerEntry] = Field([], description="Provider super-resolution models.")

    @model_validator(mode="after")
    def _known_providers(self) -> Catalogue:
        for entry in [*self.models, *self.upscalers]:
            if entry.provider not in self.providers:
                raise ValueError(f"model {entry.model} names unknown provider {entry.provider}")
        return self

    def upscaler(self, provider: str, model: str) -> UpscalerEntry:
        for entry in self.upscalers:
            if (entry.provider, entry.model) == (provider, model):
                return entry
        names = ", ".join(f"{u.provider}/{u.model}" for u in self.upscalers) or "none"
        raise KeyError(f"'{provider}/{model}' is not an upscaler in the catalogue; upscalers: {names}")

    def upscale_credits(self, provider: str, model: str, duration: float, resolution: str) -> float:
        """Credits upscaling a clip of `duration` seconds to `resolution` costs at catalogue prices."""
        price = self.upscaler(provider, model).target(resolution).price
        return round(price * duration * self.providers[provider].credits_per_unit, 4)

    def models_of(self, provider: str) -> list[ModelEntry]:
        return [m for m in self.models if m.provider == provider]

    def model(self, provider: str, model: str) -> ModelEntry:
        for entry in self.models:
            if entry.provider == provider and entry.model == model:
                return entry
        names = ", ".join(m.model for m in self.models_of(provider))
        raise KeyError(f"'{model}' is not a {provider} model in the catalogue; use one of: {names}")

    def credits(self, provider: str, model: str, duration: float, resolution: str | None = None,
                audio: bool = False) -> float:
        """Credits a clip costs at catalogue prices."""
        entry = self.model(provider, model)
        unit_price = entry.price_per_second(resolution, audio) * duration
        return round(unit_price * self.providers[provider].credits_per_unit, 4)


@lru_cache(maxsize=8)
def _load(path: str, mtime: float) -> Catalogue:
    return Catalogue.model_validate(yaml.safe_load(Path(path).read_text()))


def load_catalogue(path: str | Path | None = None) -> Catalogue:
    """The catalogue at `path`, else `$TAKEFLOW_CATALOGUE`, else the one shipped with takeflow."""
    chosen = Path(path or os.environ.get("TAKEFLOW_CATALOGUE") or DEFAULT_PATH)
    try:
        return _load(str(chosen), chosen.stat().st_mtime)
    except FileNotFoundError:
        raise FileNotFoundError(f"catalogue file {chosen} not found; fix TAKEFLOW_CATALOGUE") from None


def _flat(data: dict, prefix: str = "") -> dict[str, object]:
    """Nested fields as dotted names ('resolutions.720p.price'), so a change names the leaf."""
    flat: dict[str, object] = {}
    for name, value in data.items():
        if isinstance(value, dict) and value:
            flat.update(_flat(value, f"{prefix}{name}."))
        else:
            flat[f"{prefix}{name}"] = value
    return flat


def _short(value: object) -> str:
    text = str(value)
    return text if len(text) <= 60 else text[:57] + "..."


def catalogue_changes(mine: Catalogue, shipped: Catalogue) -> list[str]:
    """What `shipped` (takeflow's current catalogue) changes relative to `mine` (a user's own file,
    usually an older copy they edited): one line per model or upscaler added, dropped or changed,
    naming each changed field with its old and new value ('source' is only said to have changed)."""
    lines = []
    for kind, old_entries, new_entries in (("model", mine.models, shipped.models),
                                           ("upscaler", mine.upscalers, shipped.upscalers)):
        old = {(e.provider, e.model): e for e in old_entries}
        new = {(e.provider, e.model): e for e in new_entries}
        for key in sorted(new.keys() - old.keys()):
            entry = new[key]
            lines.append(f"+ {kind} {'/'.join(key)}: {entry.label}" + (f" (retired {entry.retired})"
                                                                        if getattr(entry, "retired", None) else ""))
        for key in sorted(old.keys() - new.keys()):
            lines.append(f"- {kind} {'/'.join(key)}: only in your catalogue (takeflow no longer lists it)")
        for key in sorted(old.keys() & new.keys()):
            before, after = (_flat(e[key].model_dump(warnings=False)) for e in (old, new))
            changed = [name for name in sorted(before.keys() | after.keys()) if before.get(name) != after.get(name)]
            if not changed:
                continue
            words = [f"{name} {_short(before.get(name, '-'))} -> {_short(after.get(name, '-'))}"
                     for name in changed if name != "source"]
            if "source" in changed:
                words.append("source updated")
            lines.append(f"~ {kind} {'/'.join(key)}: " + "; ".join(words))
    return lines
