"""Storyboard validation: every kind of bad input is refused with one line naming the field."""

from __future__ import annotations

import pytest

from tasks.storyboard import StoryboardError, load_storyboard, parse_storyboard
from tests.conftest import EXAMPLES

SHOT = {"brief": "a fox trots through snow; slow pan left; soft dusk light"}


def refuse(data, tmp_path=None) -> str:
    with pytest.raises(StoryboardError) as caught:
        parse_storyboard(data, tmp_path or ".")
    message = str(caught.value)
    assert "\n" not in message
    return message


@pytest.mark.parametrize("data, field, hint", [
    ({"title": "t", "shots": [SHOT], "colour": "red"}, "colour", "unknown field"),
    ({"title": "t", "shots": [{**SHOT, "duraton": 3}]}, "shots[0].duraton", "did you mean 'duration'"),
    ({"title": "t", "shots": []}, "shots", "add at least one shot"),
    ({"title": "t", "shots": [{**SHOT, "duration": 0}]}, "shots[0].duration", "greater than 0"),
    ({"title": "t", "shots": [{**SHOT, "duration": -2}]}, "shots[0].duration", "greater than 0"),
    ({"title": "t", "defaults": {"duration": 0}, "shots": [SHOT]}, "defaults.duration", "greater than 0"),
    ({"title": "t", "defaults": {"aspect_ratio": "4:3"}, "shots": [SHOT]}, "defaults.aspect_ratio", "'16:9'"),
    ({"title": "t", "defaults": {"takes": 0}, "shots": [SHOT]}, "defaults.takes", "greater than or equal to 1"),
    ({"title": "t", "shots": [{**SHOT, "takes": 0}]}, "shots[0].takes", "greater than or equal to 1"),
    ({"title": "t", "shots": [{"camera": "static"}]}, "shots[0]", "needs a brief"),
    ({"shots": [SHOT]}, "title", "required"),
    ({"title": "t", "shots": [{**SHOT, "provider": "acme"}]}, "shots[0].provider", "available: fal, kling, ltx, previz, runway, seedance, sora, veo"),
    ({"title": "t", "shots": [{**SHOT, "model": "gen9"}]}, "shots[0].model", "motion-preview"),
    ({"title": "t", "shots": [{**SHOT, "transition": "wipe"}]}, "shots[0].transition.kind", "'crossfade'"),
    ({"title": "t", "shots": [{**SHOT, "transition": {"kind": "crossfade", "duration": 4}}, SHOT],
      "defaults": {"duration": 3}}, "shots[0].transition", "shorten the transition"),
    ({"title": "t", "shots": [{**SHOT, "id": "a"}, {**SHOT, "id": "a"}]}, "shots[1].id", "used twice"),
])
def test_bad_storyboards_name_the_field(data, field, hint):
    message = refuse(data)
    assert message.startswith(f"{field}:"), message
    assert hint in message


def test_reference_image_must_exist_and_be_an_image(tmp_path):
    missing = refuse({"title": "t", "shots": [{**SHOT, "reference_image": "nope.png"}]}, tmp_path)
    assert missing.startswith("shots[0].reference_image:") and "nope.png" in missing
    (tmp_path / "notes.png").write_text("not an image")
    fake = refuse({"title": "t", "shots": [{**SHOT, "reference_image": "notes.png"}]}, tmp_path)
    assert fake.startswith("shots[0].reference_image:") and "not an image" in fake


def brush(*polygons):
    return {"title": "t", "shots": [{**SHOT, "motion_brush": [
        {"polygon": p, "direction": "left"} for p in polygons]}]}


def test_overlapping_or_touching_brush_regions_are_refused():
    overlap = refuse(brush([[0, 0], [0.5, 0], [0.5, 0.5]], [[0.3, 0], [1, 0], [1, 0.5]]))
    touch = refuse(brush([[0, 0], [0.5, 0], [0.5, 0.5], [0, 0.5]], [[0.5, 0], [1, 0], [1, 0.5], [0.5, 0.5]]))
    for message in (overlap, touch):
        assert message.startswith("shots[0].motion_brush:") and "regions 0 and 1" in message
    assert parse_storyboard(brush([[0, 0], [0.4, 0], [0.4, 0.4]], [[0.5, 0], [1, 0], [1, 0.5]]))


def test_brush_polygon_outside_the_image_is_refused():
    assert "0..1" in refuse(brush([[0, 0], [1.5, 0], [1, 1]]))


def test_brush_vector_follows_direction_and_speed():
    board = parse_storyboard({"title": "t", "shots": [{**SHOT, "motion_brush": [
        {"polygon": [[0, 0], [0.2, 0], [0.2, 0.2]], "direction": "up-right", "speed": 0.1}]}]})
    dx, dy = board.shots[0].motion_brush[0].vector(duration=2, aspect=16 / 9)
    assert dx == pytest.approx(0.2 * 0.7071, abs=1e-3) and dy == pytest.approx(-0.2 * 0.7071 * 16 / 9, abs=1e-3)


def test_yaml_errors_are_one_line(tmp_path):
    path = tmp_path / "board.yaml"
    path.write_text("title: t\nshots:\n  - brief: [unclosed\n")
    with pytest.raises(StoryboardError) as caught:
        load_storyboard(path)
    assert "board.yaml: line" in str(caught.value) and "\n" not in str(caught.value)


def test_examples_are_valid_and_resolve_reference_paths():
    boards = {p.stem: load_storyboard(p) for p in EXAMPLES.glob("*.yaml")}
    assert len(boards) >= 3
    kite = boards["kite-meadow"]
    assert kite.shots[0].reference_image.endswith("examples/references/kite-meadow.jpg")
    assert {b.defaults.aspect_ratio for b in boards.values()} >= {"16:9", "9:16"}
    assert kite.total_duration() == pytest.approx(5 + 4 - 0.75)


def test_sound_files_must_exist_and_hold_audio(tmp_path):
    missing = refuse({"title": "t", "shots": [SHOT], "sound": {"music": "bed.mp3"}}, tmp_path)
    assert missing.startswith("sound.music: bed.mp3: no such file")
    (tmp_path / "still.png").write_bytes((EXAMPLES / "references" / "kite-meadow.jpg").read_bytes())
    silent = refuse({"title": "t", "shots": [SHOT], "sound": {"voice_over": "still.png"}}, tmp_path)
    assert silent.startswith("sound.voice_over: still.png: no audio stream")


def test_titles_must_end_within_the_edit():
    message = refuse({"title": "t", "defaults": {"duration": 2}, "shots": [SHOT, SHOT],
                      "titles": [{"text": "The End", "start": 3, "duration": 2}]})
    assert message.startswith("titles[0]: ends at 5 s, after the edit's 4 s")


def test_every_blending_transition_shortens_the_edit():
    board = parse_storyboard({"title": "t", "defaults": {"duration": 2}, "shots": [
        {**SHOT, "transition": {"kind": "fade_black", "duration": 0.5}},
        {**SHOT, "transition": {"kind": "dip", "duration": 0.25, "color": "#ffcc00"}}, SHOT]})
    assert board.total_duration() == pytest.approx(6 - 0.75)
    assert refuse({"title": "t", "shots": [{**SHOT, "transition": {"kind": "dip", "color": "not a colour"}}]}
                  ).startswith("shots[0].transition.color:")


def test_vertical_reframe_needs_a_landscape_edit():
    assert refuse({"title": "t", "defaults": {"aspect_ratio": "9:16", "vertical_reframe": True},
                   "shots": [SHOT]}).startswith("defaults.vertical_reframe:")
