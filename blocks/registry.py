"""Find the provider block for a name used in a storyboard.

A block saved on the Prefect server under the provider's name (e.g. `previz`) wins, so teams
configure providers in the UI; otherwise the provider runs with its defaults.
"""

from __future__ import annotations

from blocks.previz import PrevizProvider
from blocks.providers import VideoProvider

PROVIDERS: dict[str, type[VideoProvider]] = {"previz": PrevizProvider}


class UnknownProvider(KeyError):
    def __str__(self) -> str:
        return f"unknown provider '{self.args[0]}'; available: {', '.join(sorted(PROVIDERS))}"


def load_provider(name: str, saved: bool = True) -> VideoProvider:
    """The configured block for `name`: the saved block document of that name, else defaults."""
    try:
        cls = PROVIDERS[name]
    except KeyError:
        raise UnknownProvider(name) from None
    if saved:
        try:
            return cls.load(name)
        except ValueError:  # no block document saved under that name
            pass
    return cls()
