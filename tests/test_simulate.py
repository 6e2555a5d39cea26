"""`takeflow simulate` stops cleanly on SIGINT and SIGTERM: no simulator, no embedded Prefect
server left behind."""

from __future__ import annotations

import os
import select
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def free_ports(count: int) -> int:
    """A first port with `count` free ports after it."""
    for base in range(21000 + os.getpid() % 2000 * 10, 60000, 17):
        try:
            socks = [socket.create_server(("127.0.0.1", base + n)) for n in range(count)]
        except OSError:
            continue
        for sock in socks:
            sock.close()
        return base
    raise RuntimeError("no free ports")


def descendants(pid: int) -> set[int]:
    found, stack = set(), [pid]
    while stack:
        parent = stack.pop()
        for task in Path(f"/proc/{parent}/task").glob("*"):
            children = (task / "children").read_text().split() if (task / "children").exists() else []
            for child in map(int, children):
                if child not in found:
                    found.add(child)
                    stack.append(child)
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.fixture(scope="module")
def prefect_home(tmp_path_factory):
    return tmp_path_factory.mktemp("simulate-prefect-home")


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_simulate_leaves_no_process_behind(sig, prefect_home):
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API")}
    env.update(PREFECT_HOME=str(prefect_home), PYTHONPATH=str(ROOT), PREFECT_SERVER_ANALYTICS_ENABLED="false",
               PYTHONUNBUFFERED="1", PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS="180")
    proc = subprocess.Popen([sys.executable, "-m", "flows.cli", "simulate", "--port", str(free_ports(7)),
                             "--latency", "0.1"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    try:
        output, deadline = "", time.monotonic() + 300  # the first start creates Prefect's database
        while "Ctrl-C stops" not in output and time.monotonic() < deadline and proc.poll() is None:
            if select.select([proc.stdout], [], [], 1)[0]:  # read the pipe itself: lines a buffered
                output += os.read(proc.stdout.fileno(), 65536).decode()  # readline holds are unseen by select
        assert "Ctrl-C stops" in output, output
        children = descendants(proc.pid)
        assert children, "the blocks were saved through an embedded Prefect server, a child process"
        proc.send_signal(sig)
        assert proc.wait(timeout=120) == 0
        deadline = time.monotonic() + 60
        while any(alive(child) for child in children) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert not [child for child in children if alive(child)]
    finally:
        for child in descendants(proc.pid) if proc.poll() is None else ():
            os.kill(child, signal.SIGKILL)
        proc.kill()
        proc.wait()
