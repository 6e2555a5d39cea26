"""Model capabilities from the catalogue: impossible requests are refused with the fix, `auto`
picks the cheapest model that meets a shot's needs, and users can bring their own catalogue."""

from __future__ import annotations

import pytest
import yaml

from blocks.catalogue import DEFAULT_PATH, load_catalogue
from tasks.plan import plan_shot
from tasks.prompts import expand_prompt
from tasks.storyboard import StoryboardError, parse_storyboard
from tests.conftest import EXAMPLES

BRIEF = "a fox trots through snow; slow pan left; soft dusk light"


def board(shot: dict | None = None, **defaults):
    return parse_storyboard({"title": "t", "defaults": defaults, "shots": [{"brief": BRIEF, **(shot or {})}]},
                            EXAMPLES)


def refusal(shot: dict | None = None, **defaults) -> str:
    with pytest.raises(StoryboardError) as caught:
        board(shot, **defaults)
    assert "\n" not in str(caught.value)
    return str(caught.value)


@pytest.fixture
def own_catalogue(tmp_path, monkeypatch):
    """A user's catalogue with three made-up models of known prices and abilities."""
    data = yaml.safe_load(DEFAULT_PATH.read_text())
    data["providers"]["acme"] = {"unit": "USD", "unit_usd": 1.0, "source": "test", "checked": "2026-11-24"}
    sizes = {"16:9": "1280x720", "9:16": "720x1280"}

    def model(name, price, **extra):
        return {"provider": "acme", "model": name, "label": name, "source": "test", "checked": "2026-11-24",
                "durations": [5, 10], "fps": 24, "default_resolution": "720p",
                "resolutions": {"720p": {"sizes": sizes, "price": price}}, **extra}

    data["models"] = [m for m in data["models"] if m["provider"] == "previz"] + [
        model("cheap", 0.05, image_to_video=False),
        model("brush", 0.10, motion_brush=True),
        model("sound", 0.20, audio="always"),
        model("uhd", 0.40, resolutions={"720p": {"sizes": sizes, "price": 0.3},
                                        "4k": {"sizes": {"16:9": "3840x2160"}, "price": 0.6, "durations": [5]}}),
        model("gone", 0.01, retired="2026-09-24"),
    ]
    path = tmp_path / "catalogue.yaml"
    path.write_text(yaml.safe_dump(data))
    monkeypatch.setenv("TAKEFLOW_CATALOGUE", str(path))
    monkeypatch.setitem(__import__("blocks.registry").registry.PROVIDER_CLASSES, "acme", "blocks.previz:PrevizProvider")
    return load_catalogue()


def chosen(storyboard, index=0) -> str:
    choices, _ = storyboard.models_of(index)
    return ", ".join(c.provider + "/" + c.model + (f"@{c.resolution}" if c.resolution else "") for c in choices)


def test_auto_picks_the_cheapest_model_that_meets_each_need(own_catalogue):
    assert chosen(board(model="auto")) == "acme/cheap"  # text only: the cheapest, never the retired one
    assert chosen(board({"reference_image": "references/kite-meadow.jpg"}, model="auto")) == "acme/brush"
    brush = {"reference_image": "references/kite-meadow.jpg",
             "motion_brush": [{"polygon": [[0.1, 0.1], [0.3, 0.1], [0.3, 0.3]], "direction": "right"}]}
    assert chosen(board(brush, model="auto")) == "acme/brush"
    assert chosen(board(model="auto", audio=True)) == "acme/sound"
    assert chosen(board(model="auto", resolution="4k")) == "acme/uhd@4k"


def test_auto_says_which_need_no_model_meets(own_catalogue):
    message = refusal(model="auto", resolution="4k", duration=10)
    assert message.startswith("shots[0].model: no model offers 10 s, 16:9, native 4k")


def test_impossible_requests_are_refused_with_what_to_do_instead(own_catalogue):
    assert "split the shot" in refusal({"duration": 12}, provider="acme", model="cheap")
    assert "set the shot's duration to one of those" in refusal({"duration": 7}, provider="acme", model="cheap")
    message = refusal(provider="acme", model="brush", resolution="4k")
    assert message.startswith("shots[0].model: acme/brush does not generate at 4k")
    assert "generate at 1280x720 and upscale to 4k" in message
    assert "makes no 1:1 clips" in refusal(provider="acme", model="cheap", aspect_ratio="1:1")
    assert "has no motion brush" in refusal(
        {"motion_brush": [{"polygon": [[0.1, 0.1], [0.3, 0.1], [0.3, 0.3]], "direction": "right"}]},
        provider="acme", model="cheap")
    assert "takes no reference image" in refusal({"reference_image": "references/kite-meadow.jpg"},
                                                 provider="acme", model="cheap")
    assert "makes no sound" in refusal(provider="acme", model="cheap", audio=True)
    assert "is not a acme model in the catalogue" in refusal(provider="acme", model="nope")


def test_takes_spread_over_models_and_fallbacks_cross_providers(own_catalogue):
    storyboard = board({"models": ["acme/cheap", "acme/sound"], "fallback_model": "acme/uhd"})
    plan = plan_shot(storyboard, 0, expand_prompt.fn(storyboard.shots[0], "shot-01", "t", 4))
    assert [plan.choice_for(k).model for k in (1, 2, 3, 4)] == ["cheap", "sound", "cheap", "sound"]
    assert plan.fallback.label == "acme/uhd"
    assert "shots[0].models" in refusal({"models": ["acme/cheap", "acme/nope"]})


def test_catalogue_prices_convert_to_credits(own_catalogue):
    assert own_catalogue.credits("acme", "uhd", 5, "4k") == pytest.approx(300.0)  # 0.6 USD/s x 5 s
    assert own_catalogue.credits("acme", "uhd", 5) == pytest.approx(150.0)


def test_shipped_catalogue_entries_name_their_source_and_date():
    catalogue = load_catalogue()
    assert catalogue.version
    for entry in catalogue.models:
        assert entry.source and len(entry.checked) == 10, entry.model
        for resolution in entry.resolutions.values():
            for size in resolution.sizes.values():
                width, height = map(int, size.split("x"))
                assert width % 2 == 0 and height % 2 == 0
