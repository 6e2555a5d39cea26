"""Runway's ephemeral uploads on the Runway simulator, as the runwayml SDK 5.24.0 drives them.

- `POST /v1/uploads` {filename, type: "ephemeral"} → {uploadUrl, fields, runwayUri}
  (SDK resources/uploads.py `_RunwayUploadStartedResponse`). The SDK then POSTs the `fields` and
  the file as multipart/form-data to `uploadUrl`, a presigned storage form, and uses `runwayUri`
  as promptImage or videoUri.
- The storage form (`POST /upload-bucket`) takes no API key: it checks the signed policy (fields
  unchanged, not expired), a `file` part after the fields and the 200 MB upload limit
  (providers.md, input limits), and answers 204 as S3 does, or an S3-style XML error. A request
  that carries an Authorization header is refused, so a client leaking the API key to storage
  fails here instead of passing silently.
- Uploads are kept for `upload_ttl` seconds; a runway:// URI that is unknown or expired is a 400.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import time
import uuid

from simulators.base import Request, Response, route

MAX_UPLOAD_BYTES = 200 * 2**20
FORM_TTL = 3600  # seconds a presigned form stays valid
FIELDS = {"filename", "type"}


class UploadRoutes:
    """Mixed into RunwaySimulator: `uploads` maps an upload id to (bytes, expiry), `forms` the
    upload ids whose form was issued but not yet posted to their fields."""

    upload_ttl = 24 * 3600.0

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.uploads: dict[str, tuple[bytes, float]] = {}
        self.forms: dict[str, dict[str, str]] = {}

    def resolve_upload(self, field: str, uri: str) -> bytes:
        """The bytes behind a runway:// URI, or raise ValueError with the API's 400 message."""
        entry = self.uploads.get(uri.removeprefix("runway://"))
        if entry is None or entry[1] < time.time():
            raise ValueError(f"{field}: the upload {uri} was not found or has expired; upload it again.")
        return entry[0]

    @route("POST", r"/v1/uploads", "upload")
    def create_upload(self, request: Request) -> Response:
        body, refused = self.json_body(request)
        if refused:
            return refused
        if not isinstance(body, dict):
            return Response(400, {"error": "The request body must be a JSON object."})
        unknown = set(body) - FIELDS
        if unknown:
            return Response(400, {"error": f"Unrecognized key(s) in object: {', '.join(sorted(unknown))}."})
        name = body.get("filename")
        if not isinstance(name, str) or not name.strip() or len(name) > 255 or "/" in name:
            return Response(400, {"error": "filename: expected a file name of 1 to 255 characters."})
        if body.get("type") != "ephemeral":
            return Response(400, {"error": "type: expected 'ephemeral'."})
        upload_id = uuid.uuid4().hex
        policy = base64.b64encode(json.dumps({"expiration": time.time() + FORM_TTL,
                                              "key": f"uploads/{upload_id}/{name}"}).encode()).decode()
        fields = {"key": f"uploads/{upload_id}/{name}", "policy": policy,
                  "x-amz-signature": self._sign(policy)}
        with self.lock:
            self.forms[upload_id] = fields
        return Response(200, {"uploadUrl": f"{self.url}/upload-bucket", "fields": fields,
                              "runwayUri": f"runway://{upload_id}"})

    @route("POST", r"/upload-bucket", "storage")
    def store_upload(self, request: Request) -> Response:
        headers = {key.lower(): value for key, value in request.headers.items()}
        if "authorization" in headers:
            return _s3_error(400, "InvalidArgument", "Unsupported Authorization Type")
        if not headers.get("content-type", "").startswith("multipart/form-data"):
            return _s3_error(412, "PreconditionFailed", "Bucket POST must be of the enclosure-type "
                                                        "multipart/form-data")
        try:
            fields, files = request.form()
        except Exception:  # noqa: BLE001 - any unparsable body is the client's fault
            return _s3_error(400, "MalformedPOSTRequest", "The body of your POST request is not "
                                                          "well-formed multipart/form-data.")
        match = re.fullmatch(r"uploads/([0-9a-f]{32})/.+", fields.get("key", ""))
        issued = self.forms.get(match.group(1)) if match else None
        if issued is None or any(fields.get(k) != v for k, v in issued.items()):
            return _s3_error(403, "AccessDenied", "Invalid according to Policy: Policy Condition failed")
        expiry = json.loads(base64.b64decode(issued["policy"]))["expiration"]
        if expiry < time.time():
            return _s3_error(403, "AccessDenied", "Invalid according to Policy: Policy expired.")
        if "file" not in files:
            return _s3_error(400, "InvalidArgument", "POST requires exactly one file upload per request.")
        data = files["file"][1]
        if len(data) > MAX_UPLOAD_BYTES:
            return _s3_error(400, "EntityTooLarge", "Your proposed upload exceeds the maximum allowed size")
        with self.lock:
            self.uploads[match.group(1)] = (data, time.time() + self.upload_ttl)
            del self.forms[match.group(1)]
        return Response(204, None)

    def _sign(self, policy: str) -> str:
        return hmac.new(self.api_key.encode(), policy.encode(), hashlib.sha256).hexdigest()


def _s3_error(status: int, code: str, message: str) -> Response:
    body = (f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code><Message>{message}'
            "</Message></Error>").encode()
    return Response(status, body, {"Content-Type": "application/xml"})
