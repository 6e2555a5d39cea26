"""Runway's ephemeral uploads: how files too large for a data URI reach the API.

✅ runwayml SDK 5.24.0 `uploads.create_ephemeral`: `POST /v1/uploads` {filename, type:
"ephemeral"} → {uploadUrl, fields, runwayUri}; the file then goes with `fields` as
multipart/form-data to `uploadUrl` (a presigned storage form), and `runwayUri` stands for it in
promptImage or videoUri. ◐ Uploads take up to 200 MB (runwayml/skills rw-api-reference).
"""

from __future__ import annotations

import mimetypes
import re
from pathlib import Path
from typing import TYPE_CHECKING

import httpx

from blocks.remote import ProviderError

if TYPE_CHECKING:
    from blocks.runway import RunwayProvider

MAX_UPLOAD_BYTES = 200 * 2**20
UPLOAD_TIMEOUT = 600.0  # 200 MB on a slow uplink


def upload(provider: RunwayProvider, path: Path) -> str:
    """Upload `path` as an ephemeral Runway asset and return its runway:// URI.

    Nothing is charged for an upload, so a failed one is transient (the take retries it) unless
    storage refused the file itself.
    """
    size = path.stat().st_size
    if size > MAX_UPLOAD_BYTES:
        raise ProviderError(provider.name, "invalid_input", (
            f"{path.name} is {size / 2**20:.0f} MB; Runway takes files of at most "
            f"{MAX_UPLOAD_BYTES // 2**20} MB"))
    answer = provider.send("POST", "/v1/uploads", json={"filename": path.name, "type": "ephemeral"})
    try:
        started = answer.json()
    except ValueError:
        started = None
    uri, url, fields = (started.get(k) if isinstance(started, dict) else None
                        for k in ("runwayUri", "uploadUrl", "fields"))
    if not (isinstance(uri, str) and uri.startswith("runway://") and isinstance(url, str)
            and isinstance(fields, dict)):
        raise ProviderError(provider.name, "transient", "POST /v1/uploads answered without runwayUri, "
                                                        "uploadUrl and fields")
    kind = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    try:
        with path.open("rb") as handle:
            # storage, not the API: the form's signature is the credential, the API key stays home
            response = httpx.post(url, data=fields, files={"file": (path.name, handle, kind)},
                                  timeout=httpx.Timeout(UPLOAD_TIMEOUT, connect=provider.connect_timeout))
    except httpx.TransportError as exc:
        raise ProviderError(provider.name, "transient",
                            f"the upload of {path.name} broke off ({type(exc).__name__})") from None
    if response.is_success:
        return uri
    code = re.search(r"<Code>([^<]+)</Code>", response.text)
    said = f"storage answered HTTP {response.status_code}" + (f" {code.group(1)}" if code else "")
    if response.status_code in (400, 413) and code and code.group(1) in ("EntityTooLarge", "InvalidArgument"):
        raise ProviderError(provider.name, "invalid_input", f"the upload of {path.name} was refused: {said}")
    raise ProviderError(provider.name, "transient", f"the upload of {path.name} failed: {said}")
