"""A clean stop for runs started from the command line: Ctrl-C or SIGTERM returns what the run holds
and exits within seconds, and the next run on the same Prefect home starts at once.

What a run holds when it is stopped, and what happens to it:
- provider concurrency slots (Prefect leases): returned to the server;
- anything registered with `on_stop` (e.g. the ledger's reservations): its callback runs;
- provider tasks in flight: nothing to do. They stay in the take journal, so the next run
  resumes them instead of paying again;
- the flow run: marked Cancelled, naming the signal;
- the embedded Prefect server: stopped, not left running as an orphan.

A second signal while stopping exits at once. The embedded server is also told to keep its
concurrency leases in files (Prefect's filesystem lease storage), so that the leases of a run
killed with SIGKILL are still known to the next run's server and can be revoked.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import sys
import threading
from collections.abc import Callable, Iterator

log = logging.getLogger("takeflow.stop")

STOP_SECONDS = 8.0  # most time spent returning what the run holds before exiting anyway
FILESYSTEM_LEASES = "prefect.server.concurrency.lease_storage.filesystem"

_callbacks: list[Callable[[], None]] = []
_stopping = threading.Lock()  # taken by the first signal


def on_stop(callback: Callable[[], None]) -> None:
    """Run `callback` (quick, no arguments) when the run is stopped by a signal."""
    _callbacks.append(callback)


@contextlib.contextmanager
def guard_run() -> Iterator[None]:
    """Install the stop handlers for the length of a CLI run (main thread only).

    During a flow run Prefect swaps in its own SIGTERM handler, which unwinds the flow and then
    waits for every running task (a render, a download) before the process can exit. So the stop
    does not wait for the main thread: the signal is also written to a wakeup socket (as Python
    does for every handled signal), and a watcher thread does the stop from there.
    """
    if not os.environ.get("PREFECT_API_URL"):
        os.environ.setdefault("PREFECT_SERVER_CONCURRENCY_LEASE_STORAGE", FILESYSTEM_LEASES)
    previous = {sig: signal.signal(sig, _stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    reader, writer = socket.socketpair()
    writer.setblocking(False)
    old_fd = signal.set_wakeup_fd(writer.fileno(), warn_on_full_buffer=False)
    threading.Thread(target=_watch, args=(reader,), daemon=True, name="takeflow-signals").start()
    try:
        yield
    finally:
        signal.set_wakeup_fd(old_fd)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        writer.close()


def _watch(reader: socket.socket) -> None:
    while True:
        try:
            data = reader.recv(64)
        except OSError:
            return
        if not data:
            return
        for signum in data:
            if signum in (signal.SIGINT, signal.SIGTERM):
                _stop(signum, None)


def _stop(signum: int, _frame) -> None:
    code = 128 + signum
    if not _stopping.acquire(blocking=False):
        if threading.current_thread() is threading.main_thread():
            os._exit(code)  # a second signal while stopping: at once
        return
    name = signal.Signals(signum).name
    print(f"\nstopping ({name}): returning provider slots; run the same command again to resume "
          "(paid takes are not paid again)", file=sys.stderr, flush=True)
    worker = threading.Thread(target=_release, args=(name,), daemon=True, name="takeflow-stop")
    worker.start()
    worker.join(STOP_SECONDS)
    os._exit(code)  # worker threads may be inside a provider call or an encode: do not wait for them


def _release(signal_name: str) -> None:
    from tasks.provider_slots import flow_runs_holding_slots, return_held_slots

    runs = flow_runs_holding_slots()
    steps: list[Callable[[], None]] = [return_held_slots, *_callbacks,
                                       lambda: _cancel_flow_runs(runs, signal_name), _stop_embedded_server]
    for step in steps:
        try:
            step()
        except Exception as exc:  # noqa: BLE001 - stopping anyway; say what was not returned
            log.warning("while stopping: %s failed (%s)", getattr(step, "__name__", "a step"), exc)


def _cancel_flow_runs(flow_run_ids, signal_name: str) -> None:
    from prefect import get_client
    from prefect.states import Cancelled

    with get_client(sync_client=True) as client:
        for flow_run_id in flow_run_ids:
            client.set_flow_run_state(flow_run_id, Cancelled(message=f"stopped by {signal_name}"), force=True)


def _stop_embedded_server() -> None:
    if os.environ.get("PREFECT_API_URL"):
        return
    from prefect.server.api.server import SubprocessASGIServer

    for server in list(SubprocessASGIServer._instances.values()):
        server.stop()
