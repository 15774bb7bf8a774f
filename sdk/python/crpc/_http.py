"""JSON over HTTP with the standard library: one place that turns responses into exceptions."""

import hashlib
import json
import os
import ssl
import time
import urllib.error
import urllib.parse
import urllib.request

from .errors import Unreachable, from_response, RateLimited

# How many times a 429 (nothing was done) is retried, honouring Retry-After.
RATE_LIMIT_RETRIES = 5


class Http:
    def __init__(self, base, token, timeout, ca_cert=None):
        self.base = base.rstrip("/")
        self.token = token
        self.timeout = timeout
        self.context = ssl.create_default_context(cafile=ca_cert) if ca_cert else None

    def request(self, method, path, body=None, query=None, timeout=None):
        url = self.base + path
        if query:
            url += "?" + urllib.parse.urlencode({k: v for k, v in query.items() if v is not None})
        data = None if body is None else json.dumps(body).encode()
        headers = {"Accept": "application/json"}
        if data is not None:
            headers["Content-Type"] = "application/json"
        if self.token:
            headers["Authorization"] = "Bearer " + self.token
        for attempt in range(RATE_LIMIT_RETRIES + 1):
            try:
                return self._send(urllib.request.Request(url, data, headers, method=method), timeout)
            except RateLimited as e:
                if attempt == RATE_LIMIT_RETRIES:
                    raise
                time.sleep(min(e.retry_after or 1.0, 30.0))

    def put_file(self, path, local, timeout=None):
        """PUTs the file at `local` (streamed from disk) to `path`; the JSON answer."""
        size = os.path.getsize(local)
        headers = {"Accept": "application/json", "Content-Type": "application/octet-stream",
                   "Content-Length": str(size)}
        if self.token:
            headers["Authorization"] = "Bearer " + self.token
        with open(local, "rb") as f:
            req = urllib.request.Request(self.base + path, f, headers, method="PUT")
            return self._send(req, timeout)

    def download(self, path, out, timeout=None):
        """GETs `path`, writing the body to the binary file `out` in chunks; the sha256 of
        what it wrote."""
        headers = {"Authorization": "Bearer " + self.token} if self.token else {}
        req = urllib.request.Request(self.base + path, None, headers, method="GET")
        digest = hashlib.sha256()
        try:
            with urllib.request.urlopen(req, timeout=timeout or self.timeout, context=self.context) as r:
                for chunk in iter(lambda: r.read(1 << 20), b""):
                    digest.update(chunk)
                    out.write(chunk)
        except (urllib.error.URLError, OSError) as e:
            self._raise(e)
        return digest.hexdigest()

    def _send(self, req, timeout):
        try:
            with urllib.request.urlopen(req, timeout=timeout or self.timeout, context=self.context) as r:
                return json.loads(r.read() or b"null")
        except (urllib.error.URLError, OSError) as e:
            self._raise(e)

    def _raise(self, e):
        """The client's exception for a failed request: the server's error, or unreachable."""
        if isinstance(e, urllib.error.HTTPError):
            raw = e.read()
            try:
                body = json.loads(raw)
            except ValueError:
                body = raw.decode("utf-8", "replace")
            retry = e.headers.get("Retry-After")
            raise from_response(e.code, body, float(retry) if retry and retry.isdigit() else None) from None
        reason = getattr(e, "reason", e)
        raise Unreachable(f"cannot reach {self.base}: {reason}", code="unreachable") from None
