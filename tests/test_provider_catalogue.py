"""`takeflow models` against a user's own catalogue file: what takeflow's shipped catalogue adds,
drops and changes relative to it, field by field."""

from __future__ import annotations

import yaml

from blocks.catalogue import DEFAULT_PATH, catalogue_changes, load_catalogue
from flows.cli import main


def older_copy(tmp_path):
    """A user's catalogue: an older copy with their own edits."""
    data = yaml.safe_load(DEFAULT_PATH.read_text())
    data["version"] = "2026-10-01"
    data["models"] = [m for m in data["models"] if m["model"] != "kling-v3-motion-control"]
    for m in data["models"]:
        if (m["provider"], m["model"]) == ("sora", "sora-2"):
            m["durations"], m["source"] = [4, 8, 12], "my notes"
        if (m["provider"], m["model"]) == ("kling", "kling-v2-6"):
            m["resolutions"]["720p"]["price"] = 0.25  # a price the user negotiated
    custom = dict(data["models"][0], provider="previz", model="my-house-preview", label="house preview")
    data["models"].append(custom)
    path = tmp_path / "my-catalogue.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True))
    return path


def test_changes_name_each_added_dropped_and_changed_field(tmp_path):
    lines = catalogue_changes(load_catalogue(older_copy(tmp_path)), load_catalogue(DEFAULT_PATH))
    assert "+ model kling/kling-v3-motion-control: Kling 3.0 Motion Control (a character image driven by a " \
           "motion reference video)" in lines
    assert "- model previz/my-house-preview: only in your catalogue (takeflow no longer lists it)" in lines
    assert "~ model sora/sora-2: durations [4.0, 8.0, 12.0] -> [4.0, 8.0, 12.0, 16.0, 20.0]; source updated" in lines
    assert "~ model kling/kling-v2-6: resolutions.720p.price 0.25 -> 0.3" in lines
    assert len(lines) == 4  # nothing else differs
    assert catalogue_changes(load_catalogue(DEFAULT_PATH), load_catalogue(DEFAULT_PATH)) == []


def test_takeflow_models_shows_the_changes_since_the_users_file(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("TAKEFLOW_CATALOGUE", str(older_copy(tmp_path)))
    assert main(["models", "--provider", "sora"]) == 0
    out = capsys.readouterr().out
    assert "against yours" in out and "2026-10-01" in out and "1 change\n" in out
    assert "~ model sora/sora-2: durations" in out and "kling" not in out.split("provider/model")[0]
    assert "sora/sora-2 " in out.split("provider/model")[1]  # the listing follows, from the user's file
    bad = tmp_path / "broken.yaml"
    bad.write_text("version: 1\nmodels: [\n")
    assert main(["models", "--changes", str(bad)]) != 0
    err = capsys.readouterr().err
    assert "broken.yaml" in err and "\n" not in err.strip()
