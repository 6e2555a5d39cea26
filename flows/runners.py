"""Where the produce flow's tasks run: calls to hosted providers in threads of the flow's process
(they wait on the network, a thread each is plenty), and the CPU-heavy work (previz rendering,
scoring, assembly) on a Dask cluster when `TAKEFLOW_DASK_ADDRESS` names one.

TAKEFLOW_DASK_ADDRESS (read when each run starts):
  unset            everything runs in threads of the flow's process (one machine)
  tcp://HOST:8786  a running scheduler: `dask scheduler`, then on every host
                   `dask worker tcp://HOST:8786 --nthreads 1` (one thread per process: the work is
                   numpy/OpenCV/ffmpeg, a process per core scales it without fighting the GIL)
  local, local:N   a temporary cluster of N single-threaded worker processes for the run
                   (default: one per core)

Dask workers run the Prefect task engine themselves: they report task states, read and write the
result/cache storage and the ledger, so they need the flow's PREFECT_API_URL (sent with each task,
in the Prefect settings prefect-dask ships with it), the same result storage and the same
TAKEFLOW_STATE_URL, TAKEFLOW_CATALOGUE and TAKEFLOW_MODELS; the run refuses to start when a
worker's differ. On a worker, the runner prefect-dask rebuilds around each task (the flow's, so
that tasks it submits have one) keeps to threads: the worker is already on the cluster.

Each worker's own parallelism is explicit (OneCoreWorker, a Dask worker plugin the runner installs
when it connects): OpenCV and the BLAS/OpenMP pools keep to one thread, as ffmpeg does, so a
worker is one measuring thread plus the ffmpeg decoding it reads from, and more throughput comes
from more workers. TAKEFLOW_DASK_PIN_CORES=1 also pins every worker (and the ffmpeg it starts) to
a core of its own on its host: a worker then never uses more than one core, so workers can be
counted in cores. Unpinned, one scoring worker keeps about 1.2-1.8 cores busy (the decoder runs
beside the measuring), which is faster for a single worker and the same once the cores are full
(bench/dask_bench.py measures both).
"""

from __future__ import annotations

import os
import sys
from typing import Any, Iterable

from prefect.context import SettingsContext, get_settings_context
from prefect.futures import PrefectFuture
from prefect.settings import PREFECT_API_URL, Settings
from prefect.task_runners import TaskRunner, ThreadPoolTaskRunner
from prefect.utilities.collections import visit_collection
from pydantic import PrivateAttr

from blocks.home import state_url
from blocks.remote import RemoteVideoProvider

DASK_ADDRESS_ENV = "TAKEFLOW_DASK_ADDRESS"
# Tasks that keep a core busy from start to end; everything else waits on I/O.
CPU_TASKS = frozenset({"score-take", "assemble-final", "make-poster", "contact-sheet", "reframe-vertical",
                       "match-colour"})
# Tasks that call a provider: CPU-heavy only when the provider renders here (previz), not when it is hosted.
PROVIDER_TASKS = {"generate-take": "provider", "upscale-take": "provider"}
# Settings a Dask worker must share with the flow, or its work lands in another ledger or scores otherwise.
SHARED_SETTINGS = ("TAKEFLOW_STATE_URL", "TAKEFLOW_CATALOGUE", "TAKEFLOW_MODELS")
PIN_CORES_ENV = "TAKEFLOW_DASK_PIN_CORES"


def runs_on_cpu(task_name: str, parameters: dict[str, Any]) -> bool:
    """Whether a task does its work on this machine's CPU (and so belongs on the Dask cluster)."""
    if task_name in PROVIDER_TASKS:
        return not isinstance(parameters.get(PROVIDER_TASKS[task_name]), RemoteVideoProvider)
    return task_name in CPU_TASKS


def dask_runner(address: str):
    """The DaskTaskRunner for a TAKEFLOW_DASK_ADDRESS value; ValueError naming the variable when it is malformed."""
    from prefect_dask import DaskTaskRunner  # the `dask` extra: imported only when a cluster is asked for

    if address == "local" or address.startswith("local:"):
        count = address.partition(":")[2] or str(os.cpu_count() or 1)
        if not count.isdigit() or int(count) < 1:
            raise ValueError(f"{DASK_ADDRESS_ENV}={address}: the worker count after 'local:' must be a whole "
                             "number >= 1, e.g. local:2")
        return DaskTaskRunner(cluster_kwargs={"n_workers": int(count), "threads_per_worker": 1,
                                              "processes": True, "dashboard_address": None})
    if "://" not in address and ":" not in address:
        raise ValueError(f"{DASK_ADDRESS_ENV}={address}: expected a scheduler address such as "
                         "tcp://host:8786, or local / local:N for a temporary cluster")
    return DaskTaskRunner(address=address, client_kwargs={"timeout": "10s"})


def worker_settings() -> dict[str, str | None]:
    """The settings of SHARED_SETTINGS as this process sees them (the ledger's URL resolved)."""
    return {name: state_url() if name == "TAKEFLOW_STATE_URL" else os.environ.get(name)
            for name in SHARED_SETTINGS}


class ShippedSettings(SettingsContext):
    """The settings a task sent to Dask carries: the flow's, with PREFECT_API_URL set to the run's API.

    prefect-dask serialises the current settings context into every task it submits
    (prefect.context.serialize_context), several hundred settings walked and dumped each time,
    though they do not change during a run: this context serialises them once and hands every
    later task the same dict (each submit enters a copy, which shares it)."""

    _serialized: dict[bool, dict[str, Any]] = PrivateAttr(default_factory=dict)

    def serialize(self, include_secrets: bool = True) -> dict[str, Any]:
        if include_secrets not in self._serialized:
            self._serialized[include_secrets] = super().serialize(include_secrets=include_secrets)
        return self._serialized[include_secrets]


class TakeflowTaskRunner(TaskRunner[PrefectFuture[Any]]):
    """Threads for waiting on providers, a Dask cluster (when configured) for CPU-heavy tasks."""

    def __init__(self, max_threads: int = 8, dask_address: str | None = None, pin_cores: bool | None = None):
        super().__init__()
        self.max_threads = max_threads
        self.dask_address = dask_address  # None: TAKEFLOW_DASK_ADDRESS at the start of each run
        self.pin_cores = pin_cores  # None: TAKEFLOW_DASK_PIN_CORES at the start of each run
        self._threads: ThreadPoolTaskRunner | None = None
        self._dask = None
        self._api_url: str | None = None
        self._shipped: tuple[Settings, ShippedSettings] | None = None  # (the flow's settings, what Dask gets)

    @property
    def name(self) -> str:
        return "takeflow"

    def duplicate(self) -> "TakeflowTaskRunner":
        return type(self)(self.max_threads, self.dask_address, self.pin_cores)

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, TakeflowTaskRunner) and other.max_threads == self.max_threads
                and other.dask_address == self.dask_address and other.pin_cores == self.pin_cores)

    def __enter__(self) -> "TakeflowTaskRunner":
        super().__enter__()
        self._threads = ThreadPoolTaskRunner(max_workers=self.max_threads).__enter__()
        address = self.dask_address or os.environ.get(DASK_ADDRESS_ENV, "").strip()
        if address and not _on_dask_worker():
            try:
                self._api_url = _api_url(address)
                _refuse_other_default_client(address)
                self._dask = dask_runner(address).__enter__()
                try:
                    client = self._dask.client
                except OSError as exc:  # distributed's connect timeout is an OSError too
                    raise RuntimeError(f"{DASK_ADDRESS_ENV}={address}: no Dask scheduler answers "
                                       f"({str(exc).splitlines()[0]}); start one (dask scheduler) or unset "
                                       f"{DASK_ADDRESS_ENV} to run on threads") from None
                _check_workers(client, address)
                pin = self.pin_cores if self.pin_cores is not None else \
                    os.environ.get(PIN_CORES_ENV, "").strip().lower() in ("1", "true", "yes")
                from flows.dask_worker import OneCoreWorker  # imports distributed, like the runner

                client.register_plugin(OneCoreWorker(pin), name=OneCoreWorker.name)
            except BaseException:
                self.__exit__(None, None, None)
                raise
        return self

    def __exit__(self, *exc: Any) -> None:
        try:
            if self._dask is not None:
                self._dask.__exit__(*exc)
        finally:
            self._dask = None
            if self._threads is not None:
                self._threads.__exit__(*exc)
                self._threads = None
            super().__exit__(*exc)

    def cancel_all(self) -> None:
        if self._threads is not None:
            self._threads.cancel_all()

    def submit(self, task, parameters: dict[str, Any], wait_for: Iterable[PrefectFuture[Any]] | None = None,
               dependencies=None) -> PrefectFuture[Any]:
        if not self._started:
            raise RuntimeError("The task runner must be started before submitting work.")
        if self._dask is None or not runs_on_cpu(task.name, parameters):
            return self._threads.submit(task, parameters, wait_for, dependencies)
        from prefect_dask.task_runners import PrefectDaskFuture

        # A future of the thread pool means nothing on a Dask worker: wait for it here instead; one of
        # Dask goes as the Dask future it wraps (as DaskTaskRunner.submit sends them).
        parameters = visit_collection(parameters, visit_fn=_for_dask, return_data=True)
        for future in wait_for or ():
            if not _on_dask(future):
                future.wait()
        on_dask = [future.wrapped_future for future in wait_for or () if _on_dask(future)] or None
        with self._shipped_settings():  # serialised into the task by prefect-dask's client
            # DaskTaskRunner.submit, but with pure=False: its default (pure) keys each task by a hash of
            # the task, its parameters and the whole serialised flow-run context and settings, the
            # largest serial cost of a submit; every task carries a new task-run id, so that hash
            # could never find an equal task to share, and a random key is what Dask then uses.
            future = self._dask.client.submit(task, parameters=parameters, wait_for=on_dask, dependencies=dependencies,
                                              return_type="state", pure=False)
        return PrefectDaskFuture(wrapped_future=future, task_run_id=future.task_run_id)

    def _shipped_settings(self) -> ShippedSettings:
        """A fresh copy (so that threads submitting at once each enter their own) of the settings
        for the workers, built when the flow's settings are new to this run: normally once, where
        `temporary_settings` per submit rebuilt and revalidated every setting each time."""
        flow = get_settings_context()
        if self._shipped is None or self._shipped[0] is not flow.settings:
            settings = flow.settings if flow.settings.api.url == self._api_url else \
                flow.settings.copy_with_update(updates={PREFECT_API_URL: self._api_url})
            self._shipped = flow.settings, ShippedSettings(profile=flow.profile, settings=settings)
        return self._shipped[1].model_copy()


def _api_url(address: str) -> str:
    """The Prefect API the Dask workers report to: this run's. Without PREFECT_API_URL the run uses
    the temporary server Prefect started in this process, and a worker told nothing would start one
    of its own, where the run's concurrency limits and task states are not."""
    configured = PREFECT_API_URL.value()
    if configured:
        return configured
    host = address.split("://")[-1].rsplit(":", 1)[0]
    if not (address.startswith("local") or host in ("localhost", "::1", "[::1]") or host.startswith("127.")):
        raise RuntimeError(f"{DASK_ADDRESS_ENV}={address}: Dask workers on other hosts cannot reach this run's "
                           "temporary Prefect server; start one (prefect server start) and set PREFECT_API_URL")
    from prefect.server.api.server import SubprocessASGIServer

    server = SubprocessASGIServer()  # the one this process's client started (start() is then a no-op)
    server.start()
    return server.api_url


def _on_dask_worker() -> bool:
    """Whether this runs in a task on a Dask worker. prefect-dask rebuilds the flow-run context
    around every task a worker runs, entering a duplicate of the flow's runner; connecting that one
    to the cluster would cost each task a Dask client, a settings check of every worker and the
    worker plugin installed again on all of them (about 0.2 s a task at load 11-14,
    bench/README.md)."""
    if "distributed" not in sys.modules:  # a worker has imported it; elsewhere it need not be
        return False
    from distributed import get_worker

    try:
        get_worker()
    except ValueError:
        return False
    return True


def _on_dask(value: Any) -> bool:
    return type(value).__name__ == "PrefectDaskFuture"


def _for_dask(value: Any) -> Any:
    """A parameter as a Dask task takes it: a thread's future resolved to its result, a Dask one unwrapped."""
    if not isinstance(value, PrefectFuture):
        return value
    return value.wrapped_future if _on_dask(value) else value.result()


def _refuse_other_default_client(address: str) -> None:
    """prefect-dask sends the tasks to the process's default Dask client, if there is one, whatever
    the address says: refuse one of another cluster instead of running there unnoticed."""
    import distributed

    try:
        default = distributed.default_client()
    except ValueError:  # none: the runner connects to `address`
        return
    connected = default.scheduler.address
    if address.startswith("local") or connected.split("://")[-1] != address.split("://")[-1]:
        raise RuntimeError(f"{DASK_ADDRESS_ENV}={address}, but this process has a default Dask client of "
                           f"{connected}; close that client or point {DASK_ADDRESS_ENV} at its scheduler")


def _check_workers(client, address: str) -> None:
    """Refuse a cluster whose workers would write to another ledger or price and score otherwise."""
    mine = worker_settings()
    theirs = client.run(worker_settings)
    if not theirs:
        raise RuntimeError(f"{DASK_ADDRESS_ENV}={address}: the scheduler has no workers; start some with "
                           f"`dask worker {address} --nthreads 1`")
    for worker, settings in sorted(theirs.items()):
        for name in SHARED_SETTINGS:
            if settings[name] != mine[name]:
                shown = "the flow's" if name == "TAKEFLOW_STATE_URL" else repr(mine[name])  # a URL may hold a password
                raise RuntimeError(f"{DASK_ADDRESS_ENV}: Dask worker {worker} has a different {name}; start the "
                                   f"workers with {name} set to {shown}, as the flow has it")

