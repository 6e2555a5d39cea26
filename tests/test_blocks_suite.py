"""Every takeflow block passes Prefect's own block checks and registers with the Prefect CLI, so
each can be created and edited in the UI."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import pytest
from prefect.testing.standard_test_suites import BlockStandardTestSuite

import blocks

REPO = Path(__file__).resolve().parents[1]
BLOCK_CLASSES = [getattr(blocks, name) for name in blocks.BLOCK_CLASSES]


def test_every_block_class_in_the_package_is_listed():
    """A block module added without an entry in blocks.BLOCK_CLASSES would not be registered."""
    import importlib
    import inspect
    import pkgutil

    from prefect.blocks.core import Block

    found = set()
    for info in pkgutil.iter_modules(blocks.__path__):
        module = importlib.import_module(f"blocks.{info.name}")
        found |= {cls for _, cls in inspect.getmembers(module, inspect.isclass)
                  if issubclass(cls, Block) and cls.__module__ == module.__name__
                  and not inspect.isabstract(cls)}
    assert {cls.__name__ for cls in found} == set(blocks.BLOCK_CLASSES)


@pytest.mark.parametrize("block_class", BLOCK_CLASSES, ids=lambda cls: cls.__name__)
class TestBlockStandards(BlockStandardTestSuite):
    @pytest.fixture
    def block(self, block_class):
        return block_class

    def test_has_a_valid_image(self, block):
        pytest.skip("downloads the block's logo from the network; tests reach only loopback")


def test_prefect_block_register_registers_every_block(prefect_server):
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(PREFECT_API_URL=prefect_server["api_url"], PYTHONPATH=str(REPO))
    done = subprocess.run([sys.executable, "-m", "prefect", "block", "register", "-m", "blocks"],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"Successfully registered {len(BLOCK_CLASSES)} blocks" in done.stdout, done.stdout

    from prefect.client.orchestration import get_client

    async def registered() -> dict[str, dict]:
        async with get_client() as client:
            kinds = {}
            for cls in BLOCK_CLASSES:
                kind = await client.read_block_type_by_slug(cls.get_block_type_slug())
                schema = await client.read_block_schema_by_checksum(cls._calculate_schema_checksum())
                assert kind.description and str(kind.documentation_url).startswith("https://")
                kinds[kind.slug] = schema.fields["properties"]
            return kinds

    kinds = asyncio.run(registered())
    for cls in BLOCK_CLASSES:  # the UI's form is built from the registered schema: every field, described
        fields = kinds[cls.get_block_type_slug()]
        assert set(cls.model_fields) <= set(fields), cls.__name__
        assert all(fields[name].get("description") for name in cls.model_fields), cls.__name__
