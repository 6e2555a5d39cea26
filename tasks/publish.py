"""Delivery to the team's storage: upload a finished run under a per-project-and-run prefix,
manifest last, and put a share link on the flow run."""

from __future__ import annotations

import tempfile
from pathlib import Path

from prefect import task
from prefect.artifacts import create_link_artifact
from prefect.blocks.core import Block

import blocks.storage_s3  # noqa: F401  (registers the S3 block type so it can be loaded by slug)
from blocks.storage import Storage, join_key, publish, run_prefix
from tasks.storyboard import Storyboard, StoryboardError, load_storyboard, slug

LINK_EXPIRY_S = 7 * 24 * 3600  # the longest a SigV4 presigned link may live


class StorageNotFound(ValueError):
    pass


def load_storage(name: str) -> Storage:
    """A saved storage block named '<block-type-slug>/<name>', e.g. 'takeflow-s3-storage/media'."""
    try:
        block = Block.load(name)
    except (ValueError, KeyError) as exc:
        raise StorageNotFound(f"storage block '{name}' not found ({exc}); save one, e.g. "
                              "S3Storage(bucket=...).save('media'), and pass 'takeflow-s3-storage/media'") from None
    if not isinstance(block, Storage):
        raise StorageNotFound(f"'{name}' is a {type(block).__name__}, not a takeflow storage block")
    return block


@task(name="publish", retries=2, retry_delay_seconds=[5, 30])
def publish_run(storage: Storage, files: dict[str, Path], project: str, run: str) -> dict[str, str]:
    """Upload the deliverables under <project>/<run>/, manifest last; link the final video."""
    prefix = run_prefix(project, run)
    uris = publish(storage, files, prefix)
    if "final.mp4" in files:
        create_link_artifact(storage.url(join_key(prefix, "final.mp4"), LINK_EXPIRY_S),
                             link_text="final.mp4", key=slug(f"{project}-final", 100),
                             description=f"Finished video of {project} (link valid 7 days)")
    return uris


def load_storyboard_at(location: str, storage: str | None, storage_hint: str) -> Storyboard:
    """Load a storyboard from a path, or from s3:// through the named storage block (`storage_hint`
    says how to name one when it is missing); relative inputs inside it resolve beside it."""
    if not location.startswith("s3://"):
        return load_storyboard(location)
    if not storage:
        raise StoryboardError(f"storyboard: {location} is on S3; {storage_hint}")
    with tempfile.TemporaryDirectory(prefix="takeflow-storyboard-") as tmp:
        try:
            local = load_storage(storage).get(location, Path(tmp) / location.rsplit("/", 1)[-1])
        except (StorageNotFound, RuntimeError) as exc:
            raise StoryboardError(f"storyboard: cannot read {location} ({exc})") from None
        return load_storyboard(local, base_dir=location.rsplit("/", 1)[0])
