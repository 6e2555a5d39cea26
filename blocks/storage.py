"""Where deliverables go and inputs come from: a folder or an S3 bucket, behind one interface.

Blocks know nothing about storyboards: they move files to and from keys, relative paths such as
`my-film/run-42/final.mp4`. A run's files count as delivered only once its `manifest.json`
exists, and `publish` writes that manifest last.
"""

from __future__ import annotations

import json
import re
import tempfile
from abc import abstractmethod
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import urlparse
from urllib.request import url2pathname

from prefect.blocks.core import Block
from pydantic import BaseModel, ConfigDict, Field

from blocks.media import file_digest, place

MANIFEST = "manifest.json"

_UNSAFE_IN_SEGMENT = re.compile(r"[^A-Za-z0-9._-]+")


class StorageError(RuntimeError):
    """A storage operation failed; the message is one line naming the object and the cause."""


def check_key(key: str) -> str:
    """Return `key` if it is a canonical relative path, else raise ValueError.

    S3-compatible servers map keys onto files, so '.', '..', empty segments and leading slashes
    are refused rather than normalised: two spellings must never reach the same object, and a
    key must never escape its folder or bucket.
    """
    segments = key.split("/")
    if "\\" in key or any(segment in ("", ".", "..") for segment in segments):
        raise ValueError(f"not a relative storage key: {key!r}")
    return key


def join_key(*parts: str) -> str:
    """Join key parts with single slashes, skipping empty ones (an empty prefix adds nothing)."""
    return "/".join(part.strip("/") for part in parts if part.strip("/"))


def _key_segment(text: str, what: str) -> str:
    segment = _UNSAFE_IN_SEGMENT.sub("-", text.strip()).strip(".-")
    if not segment:
        raise ValueError(f"{what} {text!r} has no characters usable in a storage key")
    return segment


def run_prefix(project: str, run: str) -> str:
    """The key prefix of one run's files, `<project>/<run>`, with each part made key-safe."""
    return f"{_key_segment(project, 'project')}/{_key_segment(run, 'run')}"


class ManifestEntry(BaseModel):
    """One delivered file as the manifest lists it."""

    model_config = ConfigDict(frozen=True)

    name: str = Field(description="Key of the file relative to the run prefix.")
    size: int = Field(ge=0, description="Size in bytes.")
    sha256: str = Field(description="sha256 of the file's bytes, hex.")


def manifest_entries(files: Mapping[str, Path]) -> list[ManifestEntry]:
    """Describe local files (name -> path) for a manifest; reads and hashes every file."""
    return [ManifestEntry(name=check_key(name), size=Path(path).stat().st_size, sha256=file_digest(path))
            for name, path in files.items()]


class StoredObject(BaseModel):
    """One object found under a key prefix."""

    model_config = ConfigDict(frozen=True)

    key: str = Field(description="Key of the object, relative to the storage (a block prefix excluded).")
    size: int = Field(ge=0, description="Size in bytes.")
    version: str = Field(description="Changes whenever the object is written again: the S3 ETag, or a local "
                                     "file's size and modification time.")
    modified: datetime = Field(description="When the object was last written (UTC).")


class Storage(Block):
    """Base for storage blocks: put files under keys, get them back, share links, commit sets."""

    @abstractmethod
    def uri(self, key: str) -> str:
        """The URI that names the object stored under `key` (file:// or s3://)."""

    @abstractmethod
    def put(self, local: Path, key: str) -> str:
        """Store a local file under `key`; the object appears whole or not at all. Returns its URI."""

    @abstractmethod
    def get(self, key_or_uri: str, dest: Path) -> Path:
        """Download a key (or a URI this storage can read) to `dest`, atomically; returns `dest`."""

    @abstractmethod
    def exists(self, key: str) -> bool:
        """Whether an object is stored under `key`."""

    @abstractmethod
    def list_objects(self, prefix: str = "") -> list[StoredObject]:
        """Objects under the key prefix `prefix` (a folder, '' for all), sorted by key; only
        whole objects are listed, never uploads in progress."""

    @abstractmethod
    def url(self, key: str, expires_s: int = 3600) -> str:
        """A link to share the object; on stores that sign links, it stops working after `expires_s`."""

    def commit(self, prefix: str, entries: list[ManifestEntry]) -> str:
        """Write `<prefix>/manifest.json` listing `entries`, the marker that the set is complete.

        Refuses while any listed file is not stored yet, so a manifest only ever describes files
        that are all there. Returns the manifest's URI.
        """
        missing = [entry.name for entry in entries if not self.exists(join_key(prefix, entry.name))]
        if missing:
            raise StorageError(f"{self.uri(join_key(prefix, MANIFEST))}: not committed, files not "
                               f"stored yet: {', '.join(missing)}")
        manifest = {"committed_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                    "files": [entry.model_dump() for entry in entries]}
        with tempfile.TemporaryDirectory(prefix="takeflow-manifest-") as tmp:
            path = Path(tmp) / MANIFEST
            path.write_text(json.dumps(manifest, indent=2))
            return self.put(path, join_key(prefix, MANIFEST))

    def read_manifest(self, prefix: str) -> list[ManifestEntry] | None:
        """The files committed under `prefix`, or None while the set is not committed."""
        key = join_key(prefix, MANIFEST)
        if not self.exists(key):
            return None
        with tempfile.TemporaryDirectory(prefix="takeflow-manifest-") as tmp:
            manifest = json.loads(self.get(key, Path(tmp) / MANIFEST).read_text())
        return [ManifestEntry(**entry) for entry in manifest["files"]]


def publish(storage: Storage, files: Mapping[str, Path], prefix: str) -> dict[str, str]:
    """Upload a run's deliverables (name -> local file) under `prefix`, then commit the manifest.

    Every file is stored before the manifest is written, so a crash or a failed upload part way
    leaves no manifest and readers never take an incomplete run for a finished one. Publishing
    the same files again (a retried flow) changes nothing; different files under a committed
    prefix are refused, since readers may already trust its manifest. Returns name -> URI,
    including `manifest.json`.
    """
    if MANIFEST in files:
        raise ValueError(f"'{MANIFEST}' is written by publish itself; rename that deliverable")
    entries = manifest_entries(files)  # hashes first, so a missing local file fails before any upload
    committed = storage.read_manifest(prefix)
    if committed is not None and committed != entries:
        raise StorageError(f"{storage.uri(join_key(prefix, MANIFEST))}: already committed with "
                           f"different files; publish under a new run prefix")
    uris = {name: storage.uri(join_key(prefix, name)) for name in files}
    if committed is None:
        for name, path in files.items():
            storage.put(Path(path), join_key(prefix, name))
        storage.commit(prefix, entries)
    return {**uris, MANIFEST: storage.uri(join_key(prefix, MANIFEST))}


class LocalStorage(Storage):
    """Stores files in a local folder; links are file:// URIs.

    Example:
        ```python
        from blocks.storage import LocalStorage
        storage = LocalStorage.load("BLOCK_NAME")
        ```
    """

    _block_type_name = "takeflow local storage"
    _documentation_url = "https://docs.prefect.io/v3/concepts/blocks"
    _description = "A local folder for deliverables and inputs; files appear whole, never half-written."

    folder: Path = Field(
        Path("out"),
        description="Folder that holds the stored files; a relative folder is relative to the "
                    "working directory of the run.")

    def _path(self, key: str) -> Path:
        return self.folder / check_key(key)

    def uri(self, key: str) -> str:
        return self._path(key).resolve().as_uri()

    def put(self, local: Path, key: str) -> str:
        # `place` hard-links when it can: our stages replace files (new inode) rather than edit
        # them in place, so the stored copy never changes behind the storage's back.
        place(local, self._path(key))
        return self.uri(key)

    def _source(self, key_or_uri: str) -> Path:
        if key_or_uri.startswith("file://"):
            return Path(url2pathname(urlparse(key_or_uri).path))
        if "://" in key_or_uri:
            raise StorageError(f"{key_or_uri}: a local storage reads only keys and file:// URIs")
        return self._path(key_or_uri)

    def get(self, key_or_uri: str, dest: Path) -> Path:
        source = self._source(key_or_uri)
        if not source.is_file():
            raise StorageError(f"{source}: no such file")
        return place(source, dest)

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def list_objects(self, prefix: str = "") -> list[StoredObject]:
        root = self._path(prefix) if prefix else self.folder
        found = []
        for path in sorted(root.rglob("*")) if root.is_dir() else ():
            relative = path.relative_to(self.folder)
            # Dot-names are files being written (our atomic writes, editors, rsync): not objects yet.
            if any(part.startswith(".") for part in relative.parts) or not path.is_file():
                continue
            stat = path.stat()
            found.append(StoredObject(key=relative.as_posix(), size=stat.st_size,
                                      version=f"{stat.st_size}-{stat.st_mtime_ns}",
                                      modified=datetime.fromtimestamp(stat.st_mtime, timezone.utc)))
        return found

    def url(self, key: str, expires_s: int = 3600) -> str:
        return self.uri(key)  # a file link has nothing to sign, so it never expires
