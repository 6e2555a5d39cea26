"""The camera vocabulary: the words a prompt uses for a camera move, a locked-off camera or a
framing, kept in one place so prompt expansion (tasks/prompts.py), the motion-preview renderer
(blocks/previz_camera.py), provider camera controls (blocks/kling.py) and scoring
(tasks/metrics.py) read a prompt the same way.

Two readings, on purpose: `parse_camera` says WHICH move a prompt asks for (it needs a direction,
"pan left", and reads the earliest move); `names_camera` only says whether a clause of a brief is
about the camera at all (a bare "slow pan" or "close-up" is enough), to put it in the camera part.

Conventions follow the camera, not the picture: "pan left" moves the camera left, so the scene
slides right across the frame.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

CameraKind = Literal["push_in", "pull_out", "pan_left", "pan_right", "tilt_up", "tilt_down",
                     "static", "orbit"]


# Verbs in the tenses prompts use ("pan", "pans", "panning", "panned").
_DOLLY, _PUSH = r"doll(?:y|ies|ied|ying)", r"push(?:es|ed|ing)?"
_PULL, _MOVE = r"pull(?:s|ed|ing)?", r"mov(?:e|es|ed|ing)"
_ZOOM, _PAN = r"zoom(?:s|ed|ing)?", r"pan(?:s|ned|ning)?"
_TRUCK, _TRACK = r"truck(?:s|ed|ing)?", r"track(?:s|ed|ing)?"
_CRAB = r"crab(?:s|bing)?"
_CRANE, _PEDESTAL = r"cran(?:e|es|ed|ing)", r"pedestal(?:s|ed|ing|led|ling)?"
_BOOM = r"boom(?:s|ed|ing)?"
# Tilts, crane and pedestal moves all raise or lower the view: the preview treats them alike.
_RISE = rf"(?:tilt(?:s|ed|ing)?|{_CRANE}|{_PEDESTAL}|{_BOOM})"
_LATERAL = rf"\b(?:{_PAN}|{_TRUCK}|{_TRACK}|{_CRAB}|lateral(?:ly)?|sideways)\b"
# "push in the door", "pull out a gun", "leaves move in the wind" are the subject acting, not the camera.
_NO_OBJECT = r"(?!\s+(?:the|a|an|his|her|its|their|some)\b)"
_SIDE = r"[\s-]+(?:to\s+(?:the\s+)?)?"
# A camera that does not move: one list for the preview (a held frame), prompt expansion and
# scoring (stillness allowed), so "no camera movement" means the same to all three.
_STILL = (r"\bstatic\b|\blocked[\s-]?off\b|\bstill\s+camera\b|\btripod\b|\bfixed\s+camera\b"
          r"|\bcamera\s+(?:is\s+|stays\s+|remains\s+)?still\b|\bno\s+camera\s+(?:movement|motion|moves?)\b")
# Moves where the camera itself travels (truck, track, crab; crane, pedestal, boom) rather than
# turning on its head (pan, tilt): the preview draws both alike, a provider control may not.
_TRAVEL = re.compile(rf"\b(?:{_TRUCK}|{_TRACK}|{_CRAB}|lateral(?:ly)?|sideways|{_CRANE}|{_PEDESTAL}|{_BOOM})\b")


def _across(start: str, end: str) -> str:
    """'... tracks from left to right' or 'from left to right, the camera tracks' within one sentence."""
    span = rf"\b(?:from\s+)?{start}\s+to\s+{end}\b"
    return rf"{_LATERAL}[^.;!?]*?{span}|{span}[^.;!?]*?{_LATERAL}"


_PATTERNS: tuple[tuple[CameraKind, re.Pattern[str]], ...] = tuple(
    (kind, re.compile(pattern)) for kind, pattern in (
        ("pan_right", _across("left", "right")),
        ("pan_left", _across("right", "left")),
        ("push_in", rf"\b(?:(?:{_DOLLY}|{_ZOOM})[\s-]+in\b|(?:{_PUSH}|{_MOVE})[\s-]+in\b{_NO_OBJECT})"),
        ("pull_out", rf"\b(?:(?:{_DOLLY}|{_ZOOM})[\s-]+(?:out|back)\b"
                     rf"|{_PULL}[\s-]+(?:out|back)\b{_NO_OBJECT})"),
        # The lookahead leaves "pan left to right" to the across-the-frame patterns above.
        ("pan_left", rf"\b(?:{_PAN}|{_TRUCK}|{_TRACK})\b{_SIDE}left\b(?!\s+to\s+right)"),
        ("pan_right", rf"\b(?:{_PAN}|{_TRUCK}|{_TRACK})\b{_SIDE}right\b(?!\s+to\s+left)"),
        ("tilt_up", rf"\b{_RISE}[\s-]+up(?:ward)?s?\b"),
        ("tilt_down", rf"\b{_RISE}[\s-]+down(?:ward)?s?\b"),
        ("static", _STILL),
        ("orbit", rf"(?:\borbit(?:s|ed|ing)?\b|\barc(?:s|ed|ing)?\b(?!\s+of\b)"
                  rf"|\b(?:circles?|circled|circling)\s+(?:a)?round\b)(?:{_SIDE}(?P<side>left|right)\b)?"),
    ))

# Whether a clause is about the camera: any camera verb (no direction needed), a held camera, or
# a framing, lens, rig or angle. Verbs that are also common subject words get no extra tenses
# here ("a tilted sign", "a sonic boom" stay scene), and "pulls out a map" is the subject acting,
# as for parse_camera.
_CAMERA_CLAUSE = re.compile(
    rf"\b(?:camera|{_DOLLY}|{_PUSH}[\s-]+in{_NO_OBJECT}|{_PULL}[\s-]+(?:out|back){_NO_OBJECT}|{_PAN}|"
    rf"tilt(?:s|ing)?|{_ZOOM}|"
    r"truck(?:s|ing)?|track(?:s|ing)?|tracking shot|crane|pedestal|orbit(?:s|ing)?|arc shot|"
    r"handheld|hand-held|steadicam|drone|aerial|static shot|locked[- ]off|tripod|close-up|wide shot|"
    r"medium shot|pov|low angle|high angle|overhead|bird's-eye|dutch angle)\b"
    rf"|{_STILL}", re.I)


@dataclass(frozen=True)
class CameraMove:
    """The camera move a prompt names; `phrase` holds the words it was read from ("" = none named)."""

    kind: CameraKind
    phrase: str = ""
    leftward: bool = False  # orbit only: the camera circles to its left, so the scene sweeps right

    @property
    def travels(self) -> bool:
        """The camera body travels (truck, crane) rather than turning on its head (pan, tilt)."""
        return bool(_TRAVEL.search(self.phrase))


def parse_camera(prompt: str) -> CameraMove:
    """Read the camera move from a prompt (case-insensitive); the first move named wins.

    With no camera words the preview gets a gentle slow push-in, as most video models do.
    """
    text = prompt.lower()
    found = [(match.start(), -len(match.group(0)), kind, match)
             for kind, pattern in _PATTERNS for match in pattern.finditer(text)]
    if not found:
        return CameraMove("push_in")
    # Earliest first: prompts name the camera once, and a later move is usually a second beat
    # the preview cannot show. At the same start the longer phrase wins.
    _, _, kind, match = min(found, key=lambda item: item[:2])
    side = match.groupdict().get("side")
    return CameraMove(kind, phrase=" ".join(match.group(0).split()), leftward=side == "left")


def asks_for_still_camera(text: str) -> bool:
    """Whether the camera instruction holds the frame: the move it names (the first) is static."""
    return parse_camera(text).kind == "static"


def names_camera(clause: str) -> bool:
    """Whether a clause of a brief is about the camera (a move, a held frame, a framing or rig)."""
    return bool(_CAMERA_CLAUSE.search(clause))
