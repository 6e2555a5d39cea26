"""Names say what things are: no two modules of flows/, tasks/ and blocks/ share a name, and no
two Prefect tasks or flows share one (a task's name is part of its cache key, tasks/caching.py)."""

from __future__ import annotations

import importlib
import pkgutil
from collections import defaultdict

from prefect import Flow, Task

PACKAGES = ("flows", "tasks", "blocks")


def modules() -> list[str]:
    return [f"{package}.{info.name}" for package in PACKAGES
            for info in pkgutil.iter_modules(importlib.import_module(package).__path__)]


def test_no_two_modules_share_a_name() -> None:
    homes = defaultdict(list)
    for name in modules():
        homes[name.split(".")[1]].append(name)
    assert {short: found for short, found in homes.items() if len(found) > 1} == {}


def test_no_two_tasks_or_flows_share_a_name() -> None:
    owners = defaultdict(set)
    for name in modules():
        for attribute, value in vars(importlib.import_module(name)).items():
            if isinstance(value, (Task, Flow)) and value.__module__ == name:
                owners[(type(value).__name__, value.name)].add(f"{name}.{attribute}")
    assert len(owners) > 15  # every task and flow was found, not just a few
    assert {key: found for key, found in owners.items() if len(found) > 1} == {}
