"""Provider concurrency slots: Prefect global concurrency limits, handed from take to take.

Every take holds one slot of its provider's limit (`tag:provider-<name>`, created by `ensure_limits`)
while it talks to the provider. Prefect's `concurrency()` asks the server for a lease on every
call. On the default SQLite server that costs about 2 s a take (bench/providers_bench.py): the
request lands while the server records the previous task run's states, SQLite answers "database
is locked", and Prefect's client waits 2 s before it retries.

So a slot a take has finished with stays with this process for `LINGER_SECONDS` and goes to the
process's next take without a server round trip. The slots are still Prefect leases on the same
limit, so other runs and processes see them taken; they are renewed while held and returned as
soon as no take here wants them.

A process that dies holding slots (SIGKILL, OOM, a lost machine) cannot return them, and on the
embedded server Prefect does not either: its repossessor, which revokes expired leases, does not
run in ephemeral servers, and its default lease storage lives in the server's memory, so a new
run's server knows nothing of the dead run's leases while the database still counts their slots
(`flows/run_guard.py` therefore keeps the embedded server's leases in Prefect's filesystem lease
storage). So every lease is also written to the shared state database (blocks/slot_holders.py)
with its holder, before it is asked for (a pending row whose token goes to the server as the
lease's holder; the lease id is added once granted), and a take that finds its limit full first
reclaims the leases of dead holders:
- a holder on this machine whose process is gone: at once (the next run starts promptly);
- any other holder once its lease has gone LEASE_SECONDS without renewal (60 s);
- a holder killed after asking but before it read the answer (the lease id never reached it):
  the lease is found by its holder token and revoked over the server's API, at once, on any
  server and lease storage. Prefect 3.9 looks leases up by holder only on limits named
  `tag:<tag>` (its task-run tag API: `GET /concurrency_limits/tag/{tag}` lists the holders,
  `POST /concurrency_limits/decrement` revokes a holder's leases), which is why the provider
  limits are named `tag:provider-<name>`. Our takes carry no `provider-*` tag, so Prefect's
  tag-concurrency orchestration never applies these limits to task runs by itself.
Leases expired in the embedded server's storage (a grant that landed after its dead holder's
row was reclaimed; a return that failed) are revoked as the repossessor would.
The rows cost two state-database writes per lease the server grants, none per take.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import random
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from uuid import UUID

import httpx
from prefect import get_client
from prefect.client.orchestration import SyncPrefectClient
from prefect.context import TaskRunContext
from prefect.settings import PREFECT_API_AUTH_STRING, PREFECT_API_KEY

from blocks import slot_holders

LEASE_SECONDS = 60.0      # the server's minimum: a dead holder's slots come back within a minute
RENEW_AFTER = LEASE_SECONDS / 3
RECLAIM_EVERY = 2.0       # seconds between two reclaims of dead holders' slots while a limit is full
LINGER_SECONDS = 0.5      # how long a finished take's slot waits for this process's next take
KEEPER_TICK = 0.1
QUICK_TRIES = 8            # 503s answered by a short sleep before Prefect's slower retries
TAG_PREFIX = "tag:"        # Prefect lists and revokes leases by holder on limits named so

log = logging.getLogger("takeflow.slots")


class SlotLimitMissing(RuntimeError):
    """The provider's concurrency limit does not exist, so the cap would silently not apply."""


@dataclass
class _Pool:
    """The leases on one limit of one Prefect API that this process holds."""

    api_url: str
    name: str
    credentials: dict = field(repr=False)  # the Prefect API key, if any: never printed
    cond: threading.Condition = field(default_factory=threading.Condition)
    idle: list[UUID] = field(default_factory=list)        # most recently freed last
    freed_at: dict[UUID, float] = field(default_factory=dict)
    held: dict[UUID, float] = field(default_factory=dict)  # every lease looked after -> last renewed
    keeper: threading.Thread | None = None
    reclaimed_at: float = 0.0

    def take_idle(self) -> UUID | None:
        if not self.idle:
            return None
        lease = self.idle.pop()
        self.freed_at.pop(lease, None)
        return lease

    def keep(self) -> None:
        """Renew held leases and hand back idle ones; ends when nothing is held."""
        try:
            self._keep()
        except Exception as exc:  # noqa: BLE001 - e.g. the server went away
            log.warning("stopped looking after the %s slots (%s); the server lets their leases run out",
                        self.name, exc)
            with self.cond:
                self.idle, self.freed_at, self.held, self.keeper = [], {}, {}, None

    def _keep(self) -> None:
        with SyncPrefectClient(self.api_url, **self.credentials) as client:
            while True:
                time.sleep(KEEPER_TICK)
                now = time.monotonic()
                with self.cond:
                    stale = [lease for lease in self.idle if now - self.freed_at[lease] >= LINGER_SECONDS]
                    for lease in stale:
                        self.idle.remove(lease)
                        del self.freed_at[lease], self.held[lease]
                    due = [lease for lease, at in self.held.items() if now - at >= RENEW_AFTER]
                for lease in stale:
                    _quietly(client.release_concurrency_slots_with_lease, lease)
                    slot_holders.released(lease)
                for lease in due:
                    self.renew(client, lease)
                with self.cond:
                    if not self.held:
                        self.keeper = None
                        return

    def renew(self, client: SyncPrefectClient, lease: UUID) -> None:
        try:
            client.renew_concurrency_lease(lease_id=lease, lease_duration=LEASE_SECONDS)
        except httpx.HTTPStatusError as exc:
            if exc.response.status_code not in (404, 410):
                log.warning("could not renew the %s slot lease (%s); will try again", self.name, exc)
                return
            log.warning("the %s slot lease expired on the server; the take keeps running", self.name)
            with self.cond:
                self.held.pop(lease, None)  # so it is not handed to another take
            slot_holders.released(lease)
            return
        except httpx.HTTPError as exc:
            log.warning("could not renew the %s slot lease (%s); will try again", self.name, exc)
            return
        with self.cond:
            if lease in self.held:
                self.held[lease] = time.monotonic()
        slot_holders.renewed(lease, LEASE_SECONDS)

    def release_all(self) -> None:
        with self.cond:
            leases, self.idle, self.freed_at, self.held = list(self.held), [], {}, {}
        if leases:
            with SyncPrefectClient(self.api_url, **self.credentials) as client:
                for lease in leases:
                    _quietly(client.release_concurrency_slots_with_lease, lease)
                    slot_holders.released(lease)

    def reclaim(self, client: SyncPrefectClient, force: bool = False) -> int:
        """Return the slots of dead holders of this limit (at most every RECLAIM_EVERY seconds)."""
        now = time.monotonic()
        with self.cond:
            if now - self.reclaimed_at < RECLAIM_EVERY and not force:
                return 0
            self.reclaimed_at = now
        orphans = slot_holders.orphaned(self.api_url, self.name)
        leases = orphans.leases + slot_holders.expired_on_embedded_server()
        for lease in leases:
            _quietly(client.release_concurrency_slots_with_lease, lease)
        count = len(leases) + self.revoke_granted_to(client, orphans.pending)
        if count:
            log.warning("returned %d slot(s) of %s held by runs that died", count, self.name)
        return count

    def revoke_granted_to(self, client: SyncPrefectClient, tokens: list[UUID]) -> int:
        """Revoke the leases the server granted to requests of dead holders that never read the
        answer, found by their holder token; returns how many there were."""
        if not tokens:
            return 0
        if not self.name.startswith(TAG_PREFIX):  # only `tag:` limits list their holders
            log.info("a run died while asking for a %s slot; if the server granted it, it comes back when "
                     "the lease expires (leases are looked up by holder only on `tag:` limits)", self.name)
            return 0
        tag = self.name.removeprefix(TAG_PREFIX)
        granted = set(client.read_concurrency_limit_by_tag(tag).active_slots) & set(tokens)
        for token in granted:
            client.decrement_v1_concurrency_slots([tag], token, occupancy_seconds=0)
        return len(granted)


_pools: dict[tuple[str, str], _Pool] = {}
_flow_runs: set[UUID] = set()  # flow runs whose takes took slots here, for a clean stop to cancel
_pools_lock = threading.Lock()


def _pool(client: SyncPrefectClient, name: str) -> _Pool:
    key = (str(client.api_url), name)
    with _pools_lock:
        if key not in _pools:
            credentials = {"api_key": PREFECT_API_KEY.value(), "auth_string": PREFECT_API_AUTH_STRING.value()}
            _pools[key] = _Pool(str(client.api_url), name, credentials)
        return _pools[key]


def _quietly(call, lease: UUID) -> None:
    try:
        call(lease)
    except httpx.HTTPError as exc:  # the lease runs out on the server by itself
        log.debug("could not return slot lease %s: %s", lease, exc)


def _request_slot(client: SyncPrefectClient, name: str, holder: UUID) -> httpx.Response:
    """Ask the server for one slot, retrying "database is locked" (503) after tens of milliseconds.

    Prefect's client sleeps 2 s or more before it retries a 503 (even with retries set to 0), while
    SQLite's lock clears within milliseconds. So the first tries go out on the client's underlying
    httpx client (same address, auth and TLS settings) without that wrapper; anything else than a
    503, and a persistent 503, is left to the Prefect client's own handling.
    """
    # The holder token names the pending row. Prefect's holder types are its own run kinds, and its
    # API finds and revokes leases by holder only for "task_run" holders on `tag:` limits, so the
    # token passes as one here.
    body = {"names": [name], "slots": 1, "mode": "concurrency", "lease_duration": LEASE_SECONDS,
            "holder": {"type": "task_run", "id": str(holder)}}
    http = client._client
    response = None
    for attempt in range(QUICK_TRIES):
        try:
            response = httpx.Client.send(http, http.build_request("POST", _INCREMENT, json=body))
        except httpx.TransportError:
            break  # Prefect's client knows which of these to retry
        if response.status_code != 503:
            break
        time.sleep(random.uniform(0.02, 0.06) * (attempt + 1))
    if response is not None and response.status_code in (200, 423):
        response.raise_for_status()
        return response
    return client.request("POST", _INCREMENT, json=body)  # e.g. a server with CSRF protection


_INCREMENT = "/v2/concurrency_limits/increment-with-lease"


def _acquire(client: SyncPrefectClient, pool: _Pool) -> UUID:
    token, noted = None, 0.0  # the pending row, written before the first request to the server
    try:
        while True:
            with pool.cond:
                lease = pool.take_idle()
                if lease is not None:
                    return lease
            if token is None:
                token, noted = slot_holders.pending(pool.api_url, pool.name, LEASE_SECONDS), time.monotonic()
            elif time.monotonic() - noted >= RENEW_AFTER:  # still waiting on a full limit
                slot_holders.still_pending(token, LEASE_SECONDS)
                noted = time.monotonic()
            try:
                response = _request_slot(client, pool.name, token)
            except httpx.HTTPStatusError as exc:
                if exc.response.status_code != 423:
                    raise
                if pool.reclaim(client):
                    continue  # a dead run's slots came back: ask again at once
                # Full: wait for the server's hint, or less if a take of ours frees a slot first.
                wait = float(exc.response.headers.get("Retry-After", 1)) * random.uniform(1.0, 1.3)
                with pool.cond:
                    pool.cond.wait_for(lambda: pool.idle, timeout=wait)
                continue
            body = response.json()
            if not body.get("limits"):
                raise SlotLimitMissing(f"the concurrency limit {pool.name!r} does not exist or is disabled; run "
                                       "takeflow produce (it creates the limit) or `prefect gcl enable` it")
            lease = UUID(body["lease_id"])
            slot_holders.granted(token, lease, LEASE_SECONDS)
            token = None
            with pool.cond:
                pool.held[lease] = time.monotonic()
                if pool.keeper is None:
                    pool.keeper = threading.Thread(target=pool.keep, name=f"slots-{pool.name}", daemon=True)
                    pool.keeper.start()
            return lease
    finally:
        if token is not None:
            slot_holders.abandoned(token)


@contextlib.contextmanager
def provider_slot(name: str) -> Iterator[UUID]:
    """Hold one slot of the global concurrency limit `name` for the duration of the block.

    Yields the id of the Prefect lease behind the slot.
    """
    client = get_client(sync_client=True)  # inside a task run: the run's own, already open client
    context = TaskRunContext.get()
    if context is not None and context.task_run.flow_run_id is not None:
        _flow_runs.add(context.task_run.flow_run_id)
    with client:
        pool = _pool(client, name)
        lease = _acquire(client, pool)
    try:
        yield lease
    finally:
        with pool.cond:
            if lease in pool.held:  # not lost on the server, still looked after: pass it on
                pool.idle.append(lease)
                pool.freed_at[lease] = time.monotonic()
                pool.cond.notify()


def reclaim_dead_holders(client: SyncPrefectClient, names: list[str]) -> int:
    """At a run's start: return the slots of `names` that runs which died still hold on the server,
    so nothing (this run, another run, the UI) sees them taken. Returns how many came back."""
    count = 0
    for name in names:
        count += _pool(client, name).reclaim(client, force=True)
    return count


def flow_runs_holding_slots() -> list[UUID]:
    return list(_flow_runs)


@atexit.register
def return_held_slots() -> None:
    """Give back every slot this process holds (at exit, or when the run is stopped)."""
    for pool in list(_pools.values()):
        try:
            pool.release_all()
        except Exception:  # noqa: BLE001 - exiting anyway; the leases run out on the server
            pass
