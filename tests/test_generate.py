"""Remote reference images are downloaded, verified as images and named by their content."""

from __future__ import annotations

import functools
import hashlib
import http.server
import threading

import pytest

from blocks.providers import GenerationError
from tasks.generate import fetch_remote
from tests.conftest import EXAMPLES


@pytest.fixture(scope="module")
def image_server():
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(EXAMPLES))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_remote_reference_is_saved_under_its_content_hash(image_server, tmp_path):
    path = fetch_remote.fn(f"{image_server}/references/kite-meadow.jpg", "kite", tmp_path)
    data = (EXAMPLES / "references" / "kite-meadow.jpg").read_bytes()
    assert path.read_bytes() == data
    assert path.name == f"kite-{hashlib.sha256(data).hexdigest()[:12]}.jpg"


def test_remote_non_image_is_refused_without_retry(image_server, tmp_path):
    with pytest.raises(GenerationError, match="is not an image") as caught:
        fetch_remote.fn(f"{image_server}/kite-meadow.yaml", "kite", tmp_path)
    assert not caught.value.transient
    assert list(tmp_path.iterdir()) == []
