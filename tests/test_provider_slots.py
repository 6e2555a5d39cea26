"""Provider slots: Prefect global-concurrency leases handed from take to take, on a real server."""

from __future__ import annotations

import threading
import time
import uuid

import pytest

from tasks import provider_slots
from tasks.provider_slots import SlotLimitMissing, provider_slot


@pytest.fixture
def limit(prefect_server):
    """A fresh global concurrency limit of one slot, and a client that is not this process's pool."""
    from prefect import get_client

    name = f"slots-test-{uuid.uuid4().hex[:8]}"
    with get_client(sync_client=True) as client:
        client.upsert_global_concurrency_limit_by_name(name, 1)
        yield name, client


def active_slots(client, name: str) -> int:
    return client.read_global_concurrency_limit_by_name(name).active_slots


def outside_acquire(client, name: str):
    """An acquisition as another process would make it: one attempt, no waiting."""
    import httpx

    try:
        response = client.increment_concurrency_slots_with_lease([name], 1, "concurrency", 60)
    except httpx.HTTPStatusError as exc:
        assert exc.response.status_code == 423
        return None
    return uuid.UUID(response.json()["lease_id"])


def wait_until(condition, seconds: float = 10) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


def test_back_to_back_takes_share_one_lease_that_others_see_taken_until_it_is_returned(limit):
    name, client = limit
    with provider_slot(name) as first:
        assert active_slots(client, name) == 1
    with provider_slot(name) as second:
        pass
    assert second == first  # handed over inside the process: no second server round trip
    assert active_slots(client, name) == 1 and outside_acquire(client, name) is None  # still counted

    wait_until(lambda: active_slots(client, name) == 0)  # returned once no take here wants it
    lease = outside_acquire(client, name)
    assert lease is not None
    client.release_concurrency_slots_with_lease(lease)


def test_a_full_limit_is_waited_out_until_another_holder_releases(limit):
    name, client = limit
    outside = outside_acquire(client, name)
    got = threading.Event()

    def take() -> None:
        with provider_slot(name):
            got.set()

    worker = threading.Thread(target=take)
    worker.start()
    assert not got.wait(1.0)  # the limit is full: the take waits instead of running
    client.release_concurrency_slots_with_lease(outside)
    worker.join(timeout=30)
    assert got.is_set()


def test_a_missing_limit_is_an_error_not_a_silent_no_op(prefect_server):
    with pytest.raises(SlotLimitMissing, match="provider-nowhere.*does not exist or is disabled"):
        with provider_slot("provider-nowhere"):
            pass


def test_a_lease_lost_on_the_server_is_never_handed_to_the_next_take(limit, monkeypatch):
    name, client = limit
    monkeypatch.setattr(provider_slots, "RENEW_AFTER", 0.05)
    with provider_slot(name) as lease:
        client.release_concurrency_slots_with_lease(lease)  # e.g. expired while the process stalled
        pool = provider_slots._pools[(str(client.api_url), name)]
        wait_until(lambda: lease not in pool.held)  # the keeper's renewal found it gone
    with provider_slot(name) as next_lease:
        assert next_lease != lease
        assert active_slots(client, name) == 1


def test_the_limit_of_an_earlier_takeflow_is_replaced_and_its_disable_carries_over(prefect_server):
    from prefect import get_client
    from prefect.client.schemas.actions import GlobalConcurrencyLimitUpdate
    from prefect.exceptions import ObjectNotFound

    from tasks.generate import retire_limit

    old = f"provider-old-{uuid.uuid4().hex[:8]}"
    new = f"tag:{old}"
    with get_client(sync_client=True) as client:
        client.upsert_global_concurrency_limit_by_name(old, 3)
        client.update_global_concurrency_limit(old, GlobalConcurrencyLimitUpdate(active=False))
        client.upsert_global_concurrency_limit_by_name(new, 3)
        retire_limit(client, old, new)
        assert not client.read_global_concurrency_limit_by_name(new).active
        with pytest.raises(ObjectNotFound):
            client.read_global_concurrency_limit_by_name(old)
        client.update_global_concurrency_limit(new, GlobalConcurrencyLimitUpdate(active=True))
        retire_limit(client, old, new)  # nothing left to move: the limit stays as the user set it
        assert client.read_global_concurrency_limit_by_name(new).active
