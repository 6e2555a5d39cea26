"""What a Dask worker process runs with, installed by flows/runners.py on every worker of the
cluster a run connects to: its parallelism made explicit.

A scoring task is one measuring thread (OpenCV kept to one thread) reading frames from one ffmpeg
decoder (`-threads 1`); BLAS/OpenMP pools are kept to one thread as Dask's nanny already sets them.
Pinned (TAKEFLOW_DASK_PIN_CORES=1), each worker and the ffmpeg it starts share one core of their
own, so N workers use N cores, no more.
"""

from __future__ import annotations

import fcntl
import os
import tempfile
from pathlib import Path

from distributed.diagnostics.plugin import WorkerPlugin

ONE_THREAD_POOLS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


class OneCoreWorker(WorkerPlugin):
    """A Dask worker plugin: the worker's libraries keep to one thread (and, pinned, the worker
    and its children to one core), so a cluster's parallelism is its worker count.

    Registered again by every run (the run's pin setting wins); teardown undoes the pinning."""

    name = "takeflow-one-core"

    def __init__(self, pin: bool = False):
        self.pin = pin
        self._lock: int | None = None
        self._cores: set[int] | None = None

    def setup(self, worker=None) -> None:
        import cv2

        os.environ.update({pool: "1" for pool in ONE_THREAD_POOLS})  # for what the worker starts
        cv2.setNumThreads(1)  # the scorer already measures on one thread; the rest of a task too
        if self.pin:
            self._cores = os.sched_getaffinity(0)
            claimed = claim_core(self._cores)
            if claimed is not None:
                self._lock, core = claimed
                _set_affinity({core})

    def teardown(self, worker=None) -> None:
        if self._lock is not None:
            _set_affinity(self._cores)
            os.close(self._lock)  # releases the core for another worker
            self._lock = None


def claim_core(cores: set[int]) -> tuple[int, int] | None:
    """A core no other worker process on this host holds (its lock file's descriptor, the core),
    or None when every core is taken. The lock goes when the process does, even killed."""
    folder = Path(tempfile.gettempdir()) / "takeflow-dask-cores"
    folder.mkdir(exist_ok=True)
    for core in sorted(cores):
        fd = os.open(folder / f"core-{core}.lock", os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue
        return fd, core
    return None


def _set_affinity(cores: set[int]) -> None:
    """Every thread of this process (Linux affinity is per thread; children inherit their
    starting thread's), so the task threads and the ffmpeg they start keep to `cores`."""
    for tid in os.listdir("/proc/self/task"):
        try:
            os.sched_setaffinity(int(tid), cores)
        except (ProcessLookupError, PermissionError):  # a thread that just ended
            pass
