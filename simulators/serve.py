"""`takeflow simulate`: every provider simulator on loopback, with provider blocks pointing at them.

For demos and trials without keys or credits: the saved blocks (named after each provider, as
`takeflow produce` loads them) get the simulator's URL and key, so any storyboard naming runway,
kling, veo, sora, seedance, ltx or fal models runs end to end against the simulators.
"""

from __future__ import annotations

import importlib
import signal
import threading
from typing import Any

import httpx

from blocks.registry import provider_class
from simulators.base import ProviderSimulator

# provider -> (simulator class, path the API root sits under)
SIMULATORS: dict[str, tuple[str, str]] = {
    "runway": ("simulators.runway:RunwaySimulator", ""),
    "kling": ("simulators.kling:KlingSimulator", ""),
    "veo": ("simulators.veo:VeoSimulator", ""),
    "sora": ("simulators.sora:SoraSimulator", "/v1"),
    "seedance": ("simulators.seedance:SeedanceSimulator", "/api/v3"),
    "ltx": ("simulators.ltx:LtxSimulator", ""),
    "fal": ("simulators.fal:FalSimulator", ""),
}


def start_simulator(name: str, **options: Any) -> ProviderSimulator:
    module, cls = SIMULATORS[name][0].split(":")
    return getattr(importlib.import_module(module), cls)(**options).start()


def read_record(url: str) -> dict[str, Any]:
    """A running simulator's own books (creates, every task's status, credits charged), as served
    at `<url>/_sim/record` to tests and to `takeflow simulate` users."""
    response = httpx.get(url.rstrip("/") + "/_sim/record", timeout=10)
    response.raise_for_status()
    return response.json()


def client_settings(name: str, sim: ProviderSimulator) -> dict[str, Any]:
    """The provider block fields that point an adapter at a running simulator."""
    settings: dict[str, Any] = {"base_url": sim.url + SIMULATORS[name][1]}
    if name == "kling":
        settings.update(access_key=sim.access_key, secret_key=sim.secret_key)
    else:
        settings["api_key"] = sim.api_key
    return settings


def serve(latency: float, fault_rate: float, first_port: int, save: bool) -> int:
    """Run until SIGINT or SIGTERM, then stop the simulators and return, so that the embedded
    Prefect server the block saves started is stopped too (by Prefect's exit handler; a
    process killed by SIGTERM's default action would leave it running)."""
    stopped = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stopped.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    sims = {}
    try:
        for offset, name in enumerate(SIMULATORS):
            sims[name] = start_simulator(name, latency=latency, fault_rate=fault_rate, port=first_port + offset,
                                         render_height=360)
            block = provider_class(name)(**client_settings(name, sims[name]))
            if save:
                block.save(name, overwrite=True)
            print(f"{name:9} simulator at {sims[name].url}" + (f"  (block '{name}' saved)" if save else ""))
        print("\nwhat each simulator charged: GET <its URL>/_sim/record (creates, tasks, credits)")
        print(f"\nsimulated generations take {latency:g} s"
              + (f"; {fault_rate:.0%} of requests get a transient fault" if fault_rate else "")
              + ".\nIn another terminal: takeflow produce examples/simulated-providers.yaml"
              + "\nCtrl-C stops the simulators (the saved blocks then point at nothing: save real keys "
                "or run this again).")
        while not stopped.wait(1):  # a timed wait: signal handlers run between waits
            pass
    finally:
        for sim in sims.values():
            sim.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0
