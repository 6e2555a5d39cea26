"""What the scheduled flows remember between runs, in the shared state database (blocks/home.py),
so any worker on any host sees it: the inbox sensor's seen-set and the batch's produced briefs.

Seen-set: which object versions of an inbox have had their event, so a sensor announces each once.

A version is first *claimed* (a row with emitted false), then the event is sent, then the row is
marked emitted. A claim is atomic (primary key, insert-or-nothing), so two sensors running at
once never both announce an object. A sensor killed between claim and send leaves a stale claim:
the next sensor sends that event again with the same event id, and Prefect's trigger service
ignores an event id it has already seen, so a run is started once either way.
"""

from __future__ import annotations

import time
import uuid

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from blocks.home import state_engine
from blocks.storage import StoredObject

STALE_CLAIM_S = 120.0  # a claim this old without its event was left by a sensor that died

metadata = sa.MetaData()
seen = sa.Table(
    "inbox_seen", metadata,
    sa.Column("inbox", sa.String(1024), primary_key=True),
    sa.Column("key", sa.String(1024), primary_key=True),
    sa.Column("version", sa.String(200), primary_key=True),
    sa.Column("event_id", sa.String(36), nullable=False),
    sa.Column("emitted", sa.Boolean, nullable=False),
    sa.Column("claimed_at", sa.Float, nullable=False),
)


def event_id(inbox: str, obj: StoredObject) -> uuid.UUID:
    """The same id for the same object version, whichever sensor sends it."""
    return uuid.uuid5(uuid.NAMESPACE_URL, f"{inbox}|{obj.key}|{obj.version}")


class SeenSet:
    """Claims and confirmations for one inbox (named by its URI)."""

    def __init__(self, inbox: str, engine: sa.Engine | None = None):
        self.inbox = inbox
        self.engine = engine or state_engine()
        metadata.create_all(self.engine, checkfirst=True)

    def _insert(self):
        dialect = sqlite if self.engine.dialect.name == "sqlite" else postgresql
        return dialect.insert(seen)

    def claim(self, objects: list[StoredObject]) -> list[StoredObject]:
        """The objects whose event this caller must send: versions nobody has claimed before,
        and claims left stale by a sensor that died before sending."""
        now, mine = time.time(), []
        by_version = {(o.key, o.version): o for o in objects}
        with self.engine.begin() as db:
            for obj in objects:
                inserted = db.execute(self._insert().values(
                    inbox=self.inbox, key=obj.key, version=obj.version, event_id=str(event_id(self.inbox, obj)),
                    emitted=False, claimed_at=now).on_conflict_do_nothing())
                if inserted.rowcount:
                    mine.append(obj)
            stale = db.execute(sa.select(seen.c.key, seen.c.version, seen.c.claimed_at).where(
                seen.c.inbox == self.inbox, ~seen.c.emitted, seen.c.claimed_at < now - STALE_CLAIM_S)).all()
            for key, version, claimed_at in stale:
                taken = db.execute(sa.update(seen).where(  # only one sensor takes over a stale claim
                    seen.c.inbox == self.inbox, seen.c.key == key, seen.c.version == version,
                    seen.c.claimed_at == claimed_at).values(claimed_at=now))
                if taken.rowcount and (key, version) in by_version:
                    mine.append(by_version[(key, version)])
        return mine

    def confirm(self, objects: list[StoredObject]) -> None:
        with self.engine.begin() as db:
            for obj in objects:
                db.execute(sa.update(seen).where(seen.c.inbox == self.inbox, seen.c.key == obj.key,
                                                 seen.c.version == obj.version).values(emitted=True))

    def count(self) -> int:
        with self.engine.connect() as db:
            return db.execute(sa.select(sa.func.count()).select_from(seen).where(seen.c.inbox == self.inbox)).scalar()


produced = sa.Table(
    "batch_produced", metadata,
    sa.Column("library", sa.String(1024), primary_key=True),
    sa.Column("entry", sa.String(200), primary_key=True),
    sa.Column("digest", sa.String(64), primary_key=True),
    sa.Column("flow_run", sa.String(36), nullable=False),
    sa.Column("produced_at", sa.Float, nullable=False),
)


class ProducedSet:
    """Briefs of one prompt library (named by its URI) that a batch has produced, by content
    digest: an edited brief is a new one."""

    def __init__(self, library: str, engine: sa.Engine | None = None):
        self.library = library
        self.engine = engine or state_engine()
        metadata.create_all(self.engine, checkfirst=True)

    def done(self) -> set[tuple[str, str]]:
        with self.engine.connect() as db:
            rows = db.execute(sa.select(produced.c.entry, produced.c.digest).where(produced.c.library == self.library))
            return {(entry, digest) for entry, digest in rows}

    def add(self, entry: str, digest: str, flow_run: str) -> None:
        insert = (sqlite if self.engine.dialect.name == "sqlite" else postgresql).insert(produced)
        with self.engine.begin() as db:
            db.execute(insert.values(library=self.library, entry=entry, digest=digest, flow_run=flow_run,
                                     produced_at=time.time()).on_conflict_do_nothing())
