"""`takeflow server start|stop|status`: a local Prefect server kept running in the background, and
how `takeflow produce` finds it.

Without a running server every command boots a temporary one (about 5 s on two cores) and its
runs leave the UI when the command ends. `takeflow server start` runs `prefect server start` in
its own process group, with its pid, address and log under $TAKEFLOW_HOME/server/; later
commands attach to it. The server keeps Prefect's own home (PREFECT_HOME, default ~/.prefect),
so runs made before it started are in its UI too.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

from blocks.home import takeflow_home

DEFAULT_HOST, DEFAULT_PORT = "127.0.0.1", 4200
START_TIMEOUT_S = 120.0  # a first start creates and migrates Prefect's database
STOP_TIMEOUT_S = 20.0
FILESYSTEM_LEASES = "prefect.server.concurrency.lease_storage.filesystem"
KEEP_RUNNING_HINT = ("no Prefect server is running, so this run starts a temporary one (about 5 s) and "
                     "leaves the UI when it ends; `takeflow server start` keeps one running")


def _folder(create: bool = True) -> Path:
    folder = takeflow_home() / "server"
    if create:  # only a start writes here: a command that is only looking leaves no folder behind
        folder.mkdir(parents=True, exist_ok=True)
    return folder


def _files(create: bool = True) -> tuple[Path, Path, Path]:
    folder = _folder(create)
    return folder / "prefect.pid", folder / "prefect.log", folder / "api-url"


def healthy(api_url: str, timeout: float = 0.5) -> bool:
    """Whether a Prefect API answers its health check at `api_url` (…/api)."""
    try:
        reply = httpx.get(f"{api_url.rstrip('/')}/health", timeout=timeout)
    except httpx.HTTPError:
        return False
    return reply.status_code == 200


def spawn_server(host: str, port: int, log: Path, env: dict[str, str] | None = None) -> subprocess.Popen:
    """`prefect server start` in a process group of its own (so a stop reaches every child),
    output to `log`; the caller waits for health."""
    # The UI finds its API from these settings, not from --host/--port: without them a server on
    # any port but 4200 serves a UI that calls 127.0.0.1:4200 (PREFECT_UI_API_URL still wins).
    env = {**(os.environ if env is None else env), "PREFECT_SERVER_API_HOST": host,
           "PREFECT_SERVER_API_PORT": str(port)}
    with open(log, "ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "prefect", "server", "start", "--host", host, "--port", str(port)],
            stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)


def wait_healthy(api_url: str, proc: subprocess.Popen, log: Path, timeout: float = START_TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if healthy(api_url, timeout=2):
            return
        if proc.poll() is not None:
            raise RuntimeError(f"prefect server exited with {proc.returncode}: {_last_line(log)} (log: {log})")
        time.sleep(0.3)
    raise RuntimeError(f"prefect server did not answer {api_url}/health within {timeout:g} s (log: {log})")


def stop_group(pid: int, timeout: float = STOP_TIMEOUT_S) -> bool:
    """SIGTERM the process group led by `pid`, SIGKILL it if it is still there after `timeout`.
    False when there was nothing to stop."""
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return False
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)  # reap it when it is our own child (tests)
        if not _alive(pid):
            return True
        time.sleep(0.2)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)
    return True


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().rsplit(")", 1)[-1].split()[0] == "Z")


def _ours(pid: int) -> bool:
    """The pid is a `prefect server start`, not an unrelated process that got the number later."""
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return _alive(pid)  # no /proc (macOS): trust the pid file
    return b"prefect" in command and b"server" in command


def _last_line(log: Path) -> str:
    lines = [line for line in log.read_text(errors="replace").splitlines() if line.strip()] if log.exists() else []
    return lines[-1].strip() if lines else "no output"


def recorded_server() -> tuple[int | None, str]:
    """The pid (None if not running) and API URL of the server `takeflow server start` left."""
    pid_file, _, url_file = _files(create=False)
    url = url_file.read_text().strip() if url_file.exists() else f"http://{DEFAULT_HOST}:{DEFAULT_PORT}/api"
    try:
        pid = int(pid_file.read_text())
    except (OSError, ValueError):
        return None, url
    return (pid if _alive(pid) and _ours(pid) else None), url


def start(host: str = DEFAULT_HOST, port: int = DEFAULT_PORT) -> int:
    pid, url = recorded_server()
    if pid is not None:
        print(f"already running (pid {pid}): UI {url.removesuffix('/api')}, API {url}")
        return 0
    url = f"http://{host}:{port}/api"
    if healthy(url):
        print(f"a Prefect server not started by takeflow already answers at {url}; takeflow uses it")
        return 0
    pid_file, log, url_file = _files()
    env = dict(os.environ)
    # Leases in files survive a server restart, so provider slots held by runs are still known.
    env.setdefault("PREFECT_SERVER_CONCURRENCY_LEASE_STORAGE", FILESYSTEM_LEASES)
    env.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    env.pop("PREFECT_API_URL", None)  # the server's own UI must not point at another API
    proc = spawn_server(host, port, log, env)
    pid_file.write_text(str(proc.pid))
    url_file.write_text(url)
    try:
        wait_healthy(url, proc, log)
    except RuntimeError as exc:
        stop_group(proc.pid)
        pid_file.unlink(missing_ok=True)
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"Prefect server running (pid {proc.pid}): UI http://{host}:{port}, API {url}\n"
          f"log: {log}; `takeflow produce` uses it; for `prefect` commands: export PREFECT_API_URL={url}")
    return 0


def stop() -> int:
    pid_file, _, _ = _files()
    pid, url = recorded_server()
    pid_file.unlink(missing_ok=True)
    if pid is None:
        print("not running (nothing started by `takeflow server start`)")
        return 0
    stop_group(pid)
    print(f"stopped the Prefect server at {url} (pid {pid})")
    return 0


def status() -> int:
    pid, url = recorded_server()
    if pid is not None:
        state = "answering" if healthy(url, timeout=2) else "not answering yet (starting?)"
        print(f"running (pid {pid}), {state}: UI {url.removesuffix('/api')}, API {url}")
        return 0
    if healthy(url):
        print(f"running, not started by takeflow: API {url}")
        return 0
    print(f"not running; start one with `takeflow server start` (would serve {url})")
    return 1


def run_server_command(action: str, host: str, port: int) -> int:
    return {"start": lambda: start(host, port), "stop": stop, "status": status}[action]()


def note_temporary_server() -> None:
    """Say, in one line, that a run is about to start Prefect's temporary server, and how not to."""
    from prefect.settings import PREFECT_API_URL

    if not PREFECT_API_URL.value():
        print(f"note: {KEEP_RUNNING_HINT}", file=sys.stderr)


@contextlib.contextmanager
def attach_to_server() -> Iterator[str | None]:
    """Point this process at a running Prefect server: PREFECT_API_URL when set, else the one
    `takeflow server start` left (or the local default) when it answers. Yields its API URL, or
    None when a run would fall back to Prefect's temporary server."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    configured = PREFECT_API_URL.value()
    if configured:
        yield configured
        return
    _, url = recorded_server()
    if not healthy(url):
        yield None
        return
    # Prefect reads its settings once, at import: a context is what makes this process use it now.
    os.environ["PREFECT_API_URL"] = url
    try:
        with temporary_settings({PREFECT_API_URL: url}):
            yield url
    finally:
        os.environ.pop("PREFECT_API_URL", None)
