"""Storyboard inputs: one bounded, verified way to read local, https and s3:// files."""

from __future__ import annotations

import functools
import hashlib
import http.server
import os
import struct
import threading
import zlib

import pytest

from tasks.inputs import (InputError, check_image, download, fetch_input, image_size, read_storyboard_data,
                          regular_file)
from tests.conftest import EXAMPLES


@pytest.fixture(scope="module")
def image_server():
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(EXAMPLES))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def png_header(width: int, height: int) -> bytes:
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + b"IHDR" + ihdr
            + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr)))


def test_remote_reference_is_saved_under_its_content_hash(image_server, tmp_path):
    path = fetch_input.fn(f"{image_server}/references/kite-meadow.jpg", "kite", tmp_path, "image")
    data = (EXAMPLES / "references" / "kite-meadow.jpg").read_bytes()
    assert path.read_bytes() == data
    assert path.name == f"kite-{hashlib.sha256(data).hexdigest()[:12]}.jpg"


def test_remote_non_image_is_refused_without_retry(image_server, tmp_path):
    with pytest.raises(InputError, match="is not a PNG, JPEG or WebP file") as caught:
        fetch_input.fn(f"{image_server}/kite-meadow.yaml", "kite", tmp_path, "image")
    assert not caught.value.transient
    assert list(tmp_path.iterdir()) == []


def test_unreachable_and_missing_remote_inputs_say_why(image_server, tmp_path):
    with pytest.raises(InputError, match=r"HTTP 404") as missing:
        download(f"{image_server}/nope.jpg", tmp_path, "kite", "image")
    assert not missing.value.transient
    with pytest.raises(InputError, match=r"cannot fetch http://127.0.0.1:9/x.jpg \(connect error") as dead:
        download("http://127.0.0.1:9/x.jpg", tmp_path, "kite", "image")
    assert dead.value.transient and list(tmp_path.iterdir()) == []


def test_s3_input_without_storage_is_refused(tmp_path):
    with pytest.raises(InputError, match="needs a storage block"):
        fetch_input.fn("s3://bucket/kite.jpg", "kite", tmp_path, "image")


def test_image_headers_give_the_size_without_decoding():
    assert image_size(png_header(20000, 20000)) == ("png", 20000, 20000)
    jpeg = (EXAMPLES / "references" / "kite-meadow.jpg").read_bytes()
    fmt, width, height = image_size(jpeg)
    assert fmt == "jpeg" and width > 0 and height > 0
    vp8x = b"RIFF\0\0\0\0WEBPVP8X" + b"\0" * 8 + (3999).to_bytes(3, "little") + (1999).to_bytes(3, "little")
    assert image_size(vp8x) == ("webp", 4000, 2000)
    assert image_size(b"GIF89a") is None


def test_a_huge_image_is_refused_from_its_header(tmp_path):
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(png_header(20000, 20000) + b"\0" * 64)
    with pytest.raises(InputError, match=r"bomb.png: is 20000x20000 \(400 MP\), over the 40 MP limit"):
        check_image(bomb)


def test_special_files_are_refused_without_blocking(tmp_path):
    fifo = tmp_path / "ref.png"
    os.mkfifo(fifo)
    with pytest.raises(InputError, match=r"ref.png: is a FIFO \(named pipe\), not a regular file"):
        check_image(fifo)
    with pytest.raises(InputError, match="is a directory"):
        regular_file(tmp_path, 10)


def test_storyboard_files_are_bounded_before_parsing(tmp_path):
    deep = tmp_path / "deep.json"
    deep.write_text('{"title": ' + "[" * 5000 + "]" * 5000 + "}")
    with pytest.raises(InputError, match="nested more than 24 levels"):
        read_storyboard_data(deep)
    deep_yaml = tmp_path / "deep.yaml"
    deep_yaml.write_text("title: " + "[" * 5000 + "]" * 5000)
    with pytest.raises(InputError, match="line 1: nested more than 24 levels"):
        read_storyboard_data(deep_yaml)
    laughs = tmp_path / "laughs.yaml"
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"] + [
        f"a{n}: &a{n} [" + ", ".join([f"*a{n - 1}"] * 10) + "]" for n in range(1, 9)]
    laughs.write_text("\n".join(lines) + "\n")
    with pytest.raises(InputError, match="expands to more than"):
        read_storyboard_data(laughs)
    twice = tmp_path / "twice.yaml"
    twice.write_text("title: a\nshots: []\ntitle: b\n")
    with pytest.raises(InputError, match="line 3: key 'title' is given twice"):
        read_storyboard_data(twice)
