"""`takeflow simulate`: every provider simulator on loopback, with provider blocks pointing at them.

For demos and trials without keys or credits: the saved blocks (named after each provider, as
`takeflow produce` loads them) get the simulator's URL and key, so any storyboard naming runway,
kling, veo, sora, seedance, ltx or fal models runs end to end against the simulators.
"""

from __future__ import annotations

import importlib
import threading
from typing import Any

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


def client_settings(name: str, sim: ProviderSimulator) -> dict[str, Any]:
    """The provider block fields that point an adapter at a running simulator."""
    settings: dict[str, Any] = {"base_url": sim.url + SIMULATORS[name][1]}
    if name == "kling":
        settings.update(access_key=sim.access_key, secret_key=sim.secret_key)
    else:
        settings["api_key"] = sim.api_key
    return settings


def serve(latency: float, fault_rate: float, first_port: int, save: bool) -> int:
    sims = {}
    try:
        for offset, name in enumerate(SIMULATORS):
            sims[name] = start_simulator(name, latency=latency, fault_rate=fault_rate, port=first_port + offset,
                                         render_height=360)
            block = provider_class(name)(**client_settings(name, sims[name]))
            if save:
                block.save(name, overwrite=True)
            print(f"{name:9} simulator at {sims[name].url}" + (f"  (block '{name}' saved)" if save else ""))
        print(f"\nsimulated generations take {latency:g} s"
              + (f"; {fault_rate:.0%} of requests get a transient fault" if fault_rate else "")
              + ".\nIn another terminal: takeflow produce examples/simulated-providers.yaml"
              + "\nCtrl-C stops the simulators (the saved blocks then point at nothing: save real keys "
                "or run this again).")
        threading.Event().wait()
    except KeyboardInterrupt:
        return 0
    finally:
        for sim in sims.values():
            sim.stop()
    return 0
