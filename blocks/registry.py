"""Find the provider block for a name used in a storyboard.

A block saved on the Prefect server under the provider's name (e.g. `runway`) wins, so teams
configure providers (keys, base URLs, concurrency) in the UI; otherwise the provider runs with
its defaults (previz needs nothing; hosted APIs then fail fast asking for a key).
"""

from __future__ import annotations

import importlib

from blocks.providers import VideoProvider

# name -> "module:Class"; imported on first use so one provider's import cost is not everyone's
PROVIDER_CLASSES: dict[str, str] = {
    "previz": "blocks.previz:PrevizProvider",
    "runway": "blocks.runway:RunwayProvider",
    "kling": "blocks.kling:KlingProvider",
    "veo": "blocks.veo:VeoProvider",
    "sora": "blocks.sora:SoraProvider",
    "seedance": "blocks.seedance:SeedanceProvider",
    "ltx": "blocks.ltx:LtxProvider",
    "fal": "blocks.fal:FalProvider",
}
PROVIDERS = PROVIDER_CLASSES  # the names storyboards may use


class UnknownProvider(KeyError):
    def __str__(self) -> str:
        return f"unknown provider '{self.args[0]}'; available: {', '.join(sorted(PROVIDER_CLASSES))}"


def provider_class(name: str) -> type[VideoProvider]:
    try:
        module, cls = PROVIDER_CLASSES[name].split(":")
    except KeyError:
        raise UnknownProvider(name) from None
    return getattr(importlib.import_module(module), cls)


def load_provider(name: str, saved: bool = True) -> VideoProvider:
    """The configured block for `name`: the saved block document of that name, else defaults."""
    cls = provider_class(name)
    if saved:
        try:
            return cls.load(name)
        except ValueError:  # no block document saved under that name
            pass
    return cls()
