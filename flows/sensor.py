"""The inbox sensor: a short scheduled flow that lists an inbox prefix in storage (a local folder
or an S3 bucket) and emits one `takeflow.asset.uploaded` Prefect event per new object, once.

The object is the event's resource, so a deployment trigger (deployments/prefect.yaml) can start
the animate flow for it: `event.resource['takeflow.key']` is its key in the storage and
`event.resource['takeflow.storage']` the storage block ('' for the local inbox under
$TAKEFLOW_HOME). Which versions were announced is kept in the shared state database
(blocks/platform_state.py), so restarts and several workers never announce one twice. An object
written again (a new S3 ETag, or a new size or modification time) is announced again.

Prefect's own S3 answer would be bucket notifications POSTed to /api/events; this sensor is the
fallback that needs no bucket configuration and also watches plain folders.
"""

from __future__ import annotations

from datetime import datetime, timezone

from prefect import flow, get_run_logger
from prefect.events import emit_event

from blocks.home import takeflow_home
from blocks.platform_state import SeenSet, event_id
from blocks.storage import LocalStorage, Storage, StoredObject, join_key

UPLOADED = "takeflow.asset.uploaded"
MEDIA_KINDS = {".jpg": "image", ".jpeg": "image", ".png": "image", ".webp": "image", ".mp4": "video",
               ".mov": "video", ".webm": "video", ".wav": "audio", ".mp3": "audio", ".m4a": "audio"}


def inbox_storage(storage: str) -> Storage:
    """The storage block named `storage`, or '' for a local folder: $TAKEFLOW_HOME itself, so the
    default inbox prefix 'inbox' is the folder $TAKEFLOW_HOME/inbox."""
    if not storage:
        return LocalStorage(folder=takeflow_home())
    from tasks.publish import load_storage

    return load_storage(storage)


def media_kind(key: str) -> str:
    return MEDIA_KINDS.get("." + key.rsplit(".", 1)[-1].lower() if "." in key else "", "other")


def _announce(store: Storage, storage: str, inbox: str, obj: StoredObject) -> None:
    uri = store.uri(obj.key)
    event = emit_event(
        # occurred: now, not the file's time, so events reach the trigger in the order they happen
        UPLOADED, id=event_id(inbox, obj),
        resource={"prefect.resource.id": f"takeflow.asset.{uri}", "prefect.resource.name": obj.key,
                  "takeflow.key": obj.key, "takeflow.storage": storage, "takeflow.media": media_kind(obj.key)},
        payload={"uri": uri, "key": obj.key, "size": obj.size, "version": obj.version, "storage": storage,
                 "modified": obj.modified.isoformat()})
    if event is None:  # no events client: the event went nowhere, so the object stays unannounced
        raise RuntimeError("cannot emit events: no Prefect API is configured (set PREFECT_API_URL)")


@flow(name="sense-inbox", flow_run_name="sense-{prefix}")
def sense_inbox(storage: str = "", prefix: str = "inbox", settle_seconds: float = 2.0) -> int:
    """Announce every object under `prefix` in `storage` not announced before; returns how many.

    storage: saved storage block ('takeflow-s3-storage/uploads'), or '' for $TAKEFLOW_HOME.
    prefix: key prefix of the inbox inside that storage.
    settle_seconds: a file modified more recently than this is left for the next run, so a
    copy still being written into a local folder is not announced half-written.
    """
    logger = get_run_logger()
    store = inbox_storage(storage)
    inbox = store.uri(join_key(prefix, "_")).removesuffix("/_")  # the inbox's own URI, also for prefix ''

    now = datetime.now(timezone.utc)
    listed = store.list_objects(prefix)
    settled = [o for o in listed if (now - o.modified).total_seconds() >= settle_seconds]
    seen = SeenSet(inbox)
    new = seen.claim(settled)
    for obj in new:
        _announce(store, storage, inbox, obj)
    seen.confirm(new)
    logger.info(f"{inbox}: {len(listed)} objects, {len(new)} new"
                + (f" ({len(listed) - len(settled)} still being written)" if len(settled) < len(listed) else ""))
    return len(new)
