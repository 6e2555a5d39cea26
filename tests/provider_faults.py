"""The transient faults every polled provider adapter must survive with a single create."""

from __future__ import annotations

from simulators.base import Fault


def transient_faults(expire: bool = True) -> list[Fault]:
    """Fresh Fault objects (they count down as they fire), one per parametrised case."""
    faults = [
        Fault("rate_limit", on="create", retry_after=0.1),
        Fault("rate_limit", on="create"),
        Fault("server", on="create", status=503, retry_after=0.1),
        Fault("rate_limit", on="poll", retry_after=0.1),
        Fault("rate_limit", on="poll"),
        Fault("server", on="poll", status=500),
        Fault("drop", on="poll"),
        Fault("drop", on="download"),
        Fault("truncate"),
        Fault("corrupt"),
    ]
    return faults + [Fault("expire")] if expire else faults


def fault_id(fault: Fault) -> str:
    return f"{fault.kind}-{fault.on}-{fault.retry_after}"


def open_tasks() -> list:
    """Journal entries of provider tasks not yet done (a test's own journal: own_takeflow_home)."""
    from blocks.journal import all_entries

    return [entry for entry in all_entries() if entry.state != "done"]
