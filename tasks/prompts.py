"""Prompt expansion: a shot's brief becomes a structured prompt, a lint report and take seeds.

The prompt follows the order that works best with video models: subject, action, environment,
camera, mood/lighting. The default expander is rule-based and deterministic; an LLM expander
can replace it by implementing `PromptExpander`.
"""

from __future__ import annotations

import hashlib
import re
from typing import Protocol

from prefect import task
from pydantic import BaseModel, Field

from blocks.camera_vocabulary import asks_for_still_camera, names_camera
from tasks.phrases import LOCATIVES, PATHS, split_clause
from tasks.storyboard import Shot

LIGHT_WORDS = re.compile(
    r"\b(light|lights|lighting|lit|backlit|backlight|sun|sunlight|sunny|sunset|sunrise|golden[- ]hour|"
    r"blue hour|dusk|dawn|twilight|night|moon|moonlight|neon|overcast|fog|foggy|mist|misty|haze|hazy|"
    r"shadow|shadows|glow|glowing|candle|candlelight|lamp|noon|daylight|studio|rim|silhouette|"
    r"moody|noir|cloudy|storm|stormy)\b", re.I)
PLACE_WORDS = re.compile(r"\s(" + "|".join(sorted(LOCATIVES | PATHS)) + r")\s", re.I)
# Words that say how something should feel without saying what the camera should see.
VAGUE_WORDS = {
    "beautiful": "name what makes it beautiful, e.g. 'soft backlight through falling snow'",
    "dramatic": "describe the light that makes it dramatic, e.g. 'hard low side light, deep shadows'",
    "epic": "give scale concretely, e.g. 'tiny figure against a 300 m cliff, wide lens'",
    "cinematic": "name the look, e.g. 'anamorphic 2.39:1 framing, shallow depth of field'",
    "stunning": "describe the visual detail, e.g. 'frost crystals catching the low sun'",
    "amazing": "say what the viewer sees that is remarkable",
    "awesome": "say what the viewer sees that is remarkable",
    "gorgeous": "name colours and light, e.g. 'teal water, white sand, midday sun'",
    "breathtaking": "give the view concretely, e.g. 'valley seen from the ridge, layers of haze'",
    "majestic": "give scale and angle, e.g. 'low-angle shot, the stag fills the frame'",
    "nice": "replace with a concrete visual description",
    "cool": "replace with a concrete visual description",
    "moody": "name the light, e.g. 'dim blue dusk light, single warm window'",
    "atmospheric": "name the atmosphere, e.g. 'light fog, sodium street lamps'",
    "vibrant": "name the colours, e.g. 'saturated reds and yellows of a market stall'",
    "intense": "describe the action or light that carries the intensity",
    "interesting": "say what should hold the viewer's eye",
}


class StructuredPrompt(BaseModel):
    """A prompt split into the five parts video models respond to, in that order."""

    subject: str = Field(description="Who or what the shot is about.")
    action: str = Field("", description="What the subject does and how it moves.")
    environment: str = Field("", description="Where it happens.")
    camera: str = Field("", description="Camera instruction.")
    lighting: str = Field("", description="Mood and lighting.")

    def asks_for_still_camera(self) -> bool:
        return asks_for_still_camera(self.camera)

    def text(self) -> str:
        """The prompt sent to providers: subject + action + environment, then camera, then light."""
        scene = " ".join(part for part in (self.subject, self.action) if part)
        if self.environment:
            joiner = " " if PLACE_WORDS.match(" " + self.environment + " ") else ", "
            scene = scene + joiner + self.environment if scene else self.environment
        sentences = [scene, self.camera, self.lighting]
        return " ".join(_sentence(s) for s in sentences if s)


class LintIssue(BaseModel):
    """Something in a prompt that tends to make generations worse, with a concrete fix."""

    part: str = Field(description="Prompt part concerned (subject, camera, lighting, …).")
    problem: str = Field(description="What is wrong.")
    suggestion: str = Field(description="What to write instead.")


class PromptExpander(Protocol):
    """Turns a shot into a structured prompt. Implement this to plug in an LLM expander."""

    name: str

    def expand(self, shot: Shot) -> StructuredPrompt: ...


class RuleBasedExpander:
    """Splits a free-text brief into prompt parts with keyword rules; structured fields win."""

    name = "rules-v2"  # v2: noun phrases kept whole (a small fishing boat | glides)

    def expand(self, shot: Shot) -> StructuredPrompt:
        parts = split_brief(shot.brief) if shot.brief else {}
        explicit = {k: getattr(shot, k) for k in ("subject", "action", "environment", "camera", "lighting")}
        merged = {k: (explicit[k] if explicit[k] is not None else parts.get(k, "")) for k in explicit}
        return StructuredPrompt(**{k: v.strip() for k, v in merged.items()})


def split_brief(brief: str) -> dict[str, str]:
    """Classify the clauses of a brief into subject, action, environment, camera and lighting."""
    segments = [[c.strip() for c in re.split(r",\s+", part) if c.strip()] for part in re.split(r"[.;\n]+", brief)]
    clauses = [c for segment in segments for c in segment]
    camera = [c for c in clauses if names_camera(c)]
    # A note after a camera instruction in the same sentence is about the framing
    # ("slow dolly in, the boat stays centred"), not more scene.
    camera += [c for segment in segments for before, c in zip(segment, segment[1:])
               if before in camera and c not in camera and not LIGHT_WORDS.search(c)]
    # The first non-camera clause is the scene even when it mentions light ("sun-drenched field").
    scene = next((c for c in clauses if c not in camera), None)
    lighting = [c for c in clauses if c not in camera and c != scene and LIGHT_WORDS.search(c)]
    rest = [c for c in clauses if c not in camera and c not in lighting]
    subject, action, environment = _split_scene(rest[0]) if rest else ("", "", "")
    extra = ", ".join(rest[1:])
    return {"subject": subject, "action": action,
            "environment": ", ".join(p for p in (environment, extra) if p),
            "camera": ", ".join(c for c in clauses if c in camera), "lighting": ", ".join(lighting)}


def _split_scene(clause: str) -> tuple[str, str, str]:
    """'a small fishing boat glides into the harbour' -> ('a small fishing boat', 'glides into the
    harbour', ''): noun phrases stay whole (tasks.phrases)."""
    return split_clause(clause)


def lint_prompt(prompt: StructuredPrompt) -> list[LintIssue]:
    """Flag vague words and a missing camera or lighting instruction, each with a fix."""
    issues = []
    for part in ("subject", "action", "environment", "camera", "lighting"):
        for word in re.findall(r"[A-Za-z]+", getattr(prompt, part)):
            if word.lower() in VAGUE_WORDS:
                issues.append(LintIssue(part=part, problem=f"vague word '{word}'",
                                        suggestion=VAGUE_WORDS[word.lower()]))
    if not prompt.camera and not names_camera(prompt.text()):
        issues.append(LintIssue(part="camera", problem="no camera instruction",
                                suggestion="add one in a full sentence, e.g. 'slow dolly in at eye level, "
                                           "subject stays centred'"))
    if not prompt.lighting and not LIGHT_WORDS.search(prompt.text()):
        issues.append(LintIssue(part="lighting", problem="no lighting or mood",
                                suggestion="add the light, e.g. 'soft overcast daylight' or "
                                           "'warm golden-hour backlight'"))
    return issues


def take_seeds(title: str, shot_id: str, count: int) -> list[int]:
    """Distinct, stable seeds: take k of a shot always gets the same seed, so reruns hit the cache."""
    seeds: list[int] = []
    k = 0
    while len(seeds) < count:
        digest = hashlib.sha256(f"{title}|{shot_id}|{k}".encode()).digest()
        seed = int.from_bytes(digest[:4], "big") & 0x7FFFFFFF
        if seed not in seeds:
            seeds.append(seed)
        k += 1
    return seeds


class ShotPrompts(BaseModel):
    """A shot's expanded prompt, its lint report and one seed per take."""

    prompt: StructuredPrompt
    lint: list[LintIssue]
    seeds: list[int]
    expander: str


@task(name="expand-prompt", task_run_name="expand-{shot_id}")
def expand_prompt(shot: Shot, shot_id: str, title: str, takes: int,
                  expander: PromptExpander | None = None) -> ShotPrompts:
    """Expand a shot's brief into a structured prompt, lint it and draw its take seeds."""
    expander = expander or RuleBasedExpander()
    prompt = expander.expand(shot)
    return ShotPrompts(prompt=prompt, lint=lint_prompt(prompt),
                       seeds=take_seeds(title, shot_id, takes), expander=expander.name)


def _sentence(text: str) -> str:
    text = text.strip().rstrip(".")
    return text[:1].upper() + text[1:] + "."
