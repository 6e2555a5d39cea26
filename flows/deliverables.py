"""Delivery of the produce flow: the chosen takes become one graded, titled, captioned, mixed edit
in a single ffmpeg pass, plus poster, edit decision list, optional vertical reframe, and the upload."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import ffmpeg
from prefect import task

from blocks.media import H264_OUTPUT, atomic_path, place, probe, run_ffmpeg
from blocks.storage import Storage
from flows.progress import RunProgress
from tasks.assemble import assemble_final, make_poster
from tasks.caching import content_key, work_name
from tasks.edit import EditClip, Soundtrack, Title, write_edl
from tasks.grade import match_colours
from tasks.inputs import Kind, resolve_input
from tasks.lanczos_scale import delivery_scale
from tasks.plan import ShotPlan, delivery_size
from tasks.publish import publish_run
from tasks.report import ShotRecord
from tasks.srt import Cue, fit_to_edit, read_srt
from tasks.storyboard import Storyboard

FINAL_NAMES = {"h264": "final.mp4", "hevc10": "final.mp4", "prores": "final.mov"}


def local_input(uri: str | None, name: str, folder: Path, storage: Storage | None, kind: Kind) -> Path | None:
    """A storyboard input as a local file: s3:// through the storage block, https downloaded."""
    return resolve_input(uri, name, folder, kind, storage)


def soundtrack_for(storyboard: Storyboard, folder: Path, storage: Storage | None) -> Soundtrack | None:
    sound = storyboard.sound
    if sound is None:
        return None
    return Soundtrack(
        music=local_input(sound.music, "music", folder / "inputs", storage, "audio"),
        music_gain_db=sound.music_gain_db, music_fit=sound.music_fit,
        voice_over=local_input(sound.voice_over, "voice-over", folder / "inputs", storage, "audio"),
        voice_over_start=sound.voice_over_start, fade_in=sound.fade_in, fade_out=sound.fade_out,
        loudness_lufs=sound.loudness, keep_take_audio=sound.keep_take_audio)


def load_captions(storyboard: Storyboard, folder: Path, storage: Storage | None) -> list[Cue]:
    """The storyboard's caption cues fitted to the edit, remote files fetched first; raises
    SubtitleError (or the fetch's error) so the run can stop before anything is spent."""
    uri = storyboard.captions
    if uri is None:
        return []
    path = resolve_input(uri, "captions", folder / "inputs", "captions", storage)
    name = Path(uri.split("?")[0]).name
    return fit_to_edit(read_srt(path, name), storyboard.total_duration(), name)


@dataclass(frozen=True)
class Delivered:
    """What the delivery stage made: name -> local file (the edit first), and the colour
    correction applied to each shot's take, by shot id (None: left as it was)."""

    files: dict[str, Path]
    grades: dict[str, dict | None]


def deliver(storyboard: Storyboard, plans: list[ShotPlan], shots: list[ShotRecord], folder: Path,
            storage: Storage | None, progress: RunProgress, takes: list[Path], captions: list[Cue]) -> Delivered:
    """Assemble the chosen (and possibly upscaled) `takes` and write every deliverable."""
    defaults = storyboard.defaults
    width, height = delivery_size(defaults.aspect_ratio, defaults.delivery)
    progress.start("assemble", 4)
    grades = match_colours(takes, defaults.colour_match)
    clips = [EditClip(path=take, grade=grade) for take, grade in zip(takes, grades)]
    transitions = [plan.transition for plan in plans[:-1]]
    soundtrack = soundtrack_for(storyboard, folder, storage)
    titles = [Title(**title.model_dump()) for title in storyboard.titles]
    fmt = defaults.delivery_format
    name = FINAL_NAMES[fmt]
    key = work_name(clips, transitions, defaults.fps, width, height, soundtrack, titles, fmt, captions)
    work = folder / "work" / f"final-{key}{Path(name).suffix}"
    edit = cached_file(assemble_final, clips, transitions, defaults.fps, work, width, height, soundtrack, titles,
                       fmt, captions)
    files = {name: place(edit, folder / name)}
    progress.advance("assemble", name)
    poster_at = min(plans[0].duration / 2, storyboard.total_duration() / 2)
    files["poster.jpg"] = place(cached_file(make_poster, edit, poster_at,
                                        folder / "work" / f"poster-{work_name(edit, poster_at)}.jpg"),
                                folder / "poster.jpg")
    progress.advance("assemble", "poster.jpg")
    files["edit.csv"] = write_edl(clips, transitions, defaults.fps, folder / "edit.csv", [s.shot_id for s in shots])
    progress.advance("assemble", "edit.csv")
    if defaults.vertical_reframe:
        vertical = delivery_size("9:16", defaults.delivery)
        reframed = cached_file(reframe_video, edit, *vertical,
                           folder / "work" / f"vertical-{work_name(edit, vertical)}{Path(name).suffix}")
        files[f"final-9x16{Path(name).suffix}"] = place(reframed, folder / f"final-9x16{Path(name).suffix}")
    progress.advance("assemble", "vertical" if defaults.vertical_reframe else "")
    return Delivered(files, {shot.shot_id: grade.model_dump() if grade else None for shot, grade in zip(shots, grades)})


def publish(storage: Storage, files: dict[str, Path], shots: list[ShotRecord], folder: Path,
            project: str, run: str) -> dict[str, str]:
    """Upload the deliverables, report and contact sheets under <project>/<run>/, manifest last."""
    extra = {f"contact-sheets/{Path(s.contact_sheet).name}": folder / s.contact_sheet
             for s in shots if s.contact_sheet}
    return publish_run(storage, {**files, **extra}, project, run)


@task(name="reframe-vertical", cache_key_fn=content_key("dest"), persist_result=True, retries=1)
def reframe_video(video: Path, width: int, height: int, dest: Path) -> Path:
    """A 9:16 centre reframe of a landscape edit, sound copied as it is."""
    source = ffmpeg.input(str(video))
    streams = [delivery_scale(source.video, width, height)]
    if probe(video).has_audio:
        streams.append(source.audio)
    codec = {**H264_OUTPUT, "crf": 18} if Path(dest).suffix == ".mp4" else {
        "vcodec": "prores_ks", "profile:v": 3, "pix_fmt": "yuv422p10le"}
    with atomic_path(dest) as tmp:
        run_ffmpeg(ffmpeg.output(*streams, str(tmp), acodec="copy", **codec), f"reframe {video.name}")
    return Path(dest)


def cached_file(task, *args):
    """Run a cached task; if its cached output file has since been deleted, redo the work.

    Submitted rather than called, so the flow's task runner places it (on Dask, see flows/runners.py)."""
    result = task.submit(*args).result()
    if not Path(result).is_file():
        result = task.with_options(refresh_cache=True).submit(*args).result()
    return result
