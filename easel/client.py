"""The Easel client SDK: SigV4-signed HTTPS calls to the API (service ``execute-api``).

    client = EaselClient("https://abc.execute-api.us-west-2.amazonaws.com/prod")   # or EASEL_ENDPOINT
    task = client.submit({"model": "sd15", "task_type": "text-to-image", "input": {"prompt": "a dog"}})
    done = client.wait(task["id"], timeout=600)

Credentials come from the standard AWS chain (env, profile, SSO, instance role) unless given; the region
from the argument, ``AWS_REGION``/``AWS_DEFAULT_REGION``, the execute-api host name, or ``us-east-1``.
With an API key (``api_key=`` or ``EASEL_API_KEY``; docs/api.md, "API keys") requests carry ``x-api-key``
and are not signed: point the endpoint at the key API (``KeyApiEndpoint``) or the local gateway.
Every method returns the API's JSON as a dict.

Errors (extending :mod:`easel.errors`)::

    EaselError
    └── ClientError
        ├── ClientConfigError    no endpoint or no credentials
        ├── TransportError       the endpoint could not be reached
        ├── ApiError             the API answered with an error: status, code, message, field
        └── WaitTimeout          ``wait`` gave up; ``tasks`` holds the last seen objects
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

import httpx
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from easel.errors import EaselError

SERVICE = "execute-api"
TERMINAL = frozenset({"succeeded", "failed", "canceled"})
_REGION_IN_HOST = re.compile(r"\.execute-api\.([a-z0-9-]+)\.amazonaws\.com")


class ClientError(EaselError):
    """Base of client SDK errors."""


class ClientConfigError(ClientError):
    pass


class TransportError(ClientError):
    pass


class ApiError(ClientError):
    def __init__(
        self, status: int, code: str, message: str, field: str | None = None, body: Any = None
    ) -> None:
        where = f" (field {field})" if field else ""
        super().__init__(f"HTTP {status} {code}: {message}{where}")
        self.status = status
        self.code = code
        self.message = message
        self.field = field
        self.body = body


class WaitTimeout(ClientError):
    def __init__(self, message: str, tasks: dict[str, dict[str, Any]]) -> None:
        super().__init__(message)
        self.tasks = tasks


def sign_request(
    method: str,
    url: str,
    *,
    body: bytes = b"",
    headers: dict[str, str] | None = None,
    credentials: Credentials,
    region: str,
) -> dict[str, str]:
    """The headers to send for a SigV4 (execute-api) signed request, signature included."""
    request = AWSRequest(method=method.upper(), url=url, data=body, headers=dict(headers or {}))
    SigV4Auth(credentials, SERVICE, region).add_auth(request)
    return dict(request.headers.items())


def _default_credentials() -> Credentials:
    import botocore.session

    creds = botocore.session.get_session().get_credentials()
    if creds is None:
        raise ClientConfigError(
            "no AWS credentials found (set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, AWS_PROFILE, or a role)"
        )
    return creds


class EaselClient:
    def __init__(
        self,
        endpoint: str | None = None,
        *,
        region: str | None = None,
        credentials: Credentials | None = None,
        access_key_id: str | None = None,
        secret_access_key: str | None = None,
        session_token: str | None = None,
        api_key: str | None = None,
        timeout: float = 30.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        endpoint = endpoint or os.environ.get("EASEL_ENDPOINT")
        if not endpoint:
            raise ClientConfigError("no endpoint: pass --endpoint or set EASEL_ENDPOINT")
        if urlsplit(endpoint).scheme not in ("http", "https"):
            raise ClientConfigError(f"endpoint '{endpoint}' must be an http(s) URL")
        self.endpoint = endpoint.rstrip("/")
        host_region = _REGION_IN_HOST.search(self.endpoint)
        self.region = (
            region
            or os.environ.get("AWS_REGION")
            or os.environ.get("AWS_DEFAULT_REGION")
            or (host_region.group(1) if host_region else "us-east-1")
        )
        if access_key_id and secret_access_key:
            credentials = Credentials(access_key_id, secret_access_key, session_token)
        self._credentials = credentials  # resolved lazily: constructing a client needs no credentials
        # An explicit SigV4 credential wins over a key from the environment.
        self._api_key = api_key or (None if credentials else os.environ.get("EASEL_API_KEY") or None)
        self._http = httpx.Client(timeout=timeout, transport=transport, follow_redirects=False)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> EaselClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # -- API ------------------------------------------------------------------------------------------
    def submit(self, request: dict[str, Any] | Any) -> dict[str, Any]:
        """``POST /v1/tasks``: a dict or a pydantic ``TaskRequest``."""
        if hasattr(request, "model_dump"):
            request = request.model_dump(mode="json", exclude_none=True)
        return self.request("POST", "/v1/tasks", json_body=request)

    def submit_v1alpha2(self, request: dict[str, Any]) -> dict[str, Any]:
        """``{"id", "runtime", "output_location", "task"}`` as stable-diffusion-on-eks answers."""
        return self.request("POST", "/v1alpha2", json_body=request)

    def submit_v1alpha1(self, request: dict[str, Any]) -> dict[str, Any]:
        """``{"id_task", "sd_model_checkpoint", "output_location", "task"}``."""
        return self.request("POST", "/v1alpha1", json_body=request)

    def get(self, task_id: str) -> dict[str, Any]:
        return self.request("GET", f"/v1/tasks/{quote(task_id, safe='')}")

    def cancel(self, task_id: str) -> dict[str, Any]:
        return self.request("POST", f"/v1/tasks/{quote(task_id, safe='')}/cancel")

    def list(
        self, *, status: str | None = None, limit: int | None = None, next: str | None = None
    ) -> dict[str, Any]:
        params = {
            k: str(v) for k, v in {"status": status, "limit": limit, "next": next}.items() if v is not None
        }
        return self.request("GET", "/v1/tasks", params=params)

    def models(self) -> dict[str, Any]:
        return self.request("GET", "/v1/models")

    def wait(
        self,
        task_ids: str | Iterable[str],
        *,
        timeout: float = 900.0,
        poll_seconds: float = 1.0,
        on_update: Callable[[dict[str, Any]], None] | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> dict[str, Any]:
        """Poll until every task is terminal. One id -> its task; several -> ``{id: task}``.

        ``on_update`` gets each task object every time it is fetched (drives progress displays).
        """
        ids = [task_ids] if isinstance(task_ids, str) else list(task_ids)
        deadline = time.monotonic() + timeout
        last: dict[str, dict[str, Any]] = {}
        pending = list(ids)
        while True:
            for task_id in list(pending):
                task = self.get(task_id)
                last[task_id] = task
                if on_update is not None:
                    on_update(task)
                if task.get("status") in TERMINAL:
                    pending.remove(task_id)
            if not pending:
                return last[ids[0]] if isinstance(task_ids, str) else last
            if time.monotonic() >= deadline:
                raise WaitTimeout(f"tasks still running after {timeout:.0f}s: {', '.join(pending)}", last)
            sleep(poll_seconds)

    def download(self, url: str) -> bytes:
        """GET a presigned output URL (no SigV4: the URL carries its own signature)."""
        try:
            resp = self._http.get(url)
        except httpx.HTTPError as exc:
            raise TransportError(f"download failed: {exc}") from exc
        if resp.status_code != 200:
            raise ApiError(resp.status_code, "download_failed", resp.text[:200])
        return resp.content

    # -- plumbing -------------------------------------------------------------------------------------
    def request(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        params: dict[str, str] | None = None,
        raw_body: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        """A signed request (or one with the API key): the decoded JSON, or :class:`ApiError`."""
        url = self.endpoint + path
        if params:
            url += "?" + urlencode(params, quote_via=quote)
        body = raw_body if raw_body is not None else b""
        send_headers = dict(headers or {})
        if json_body is not None:
            body = json.dumps(json_body).encode()
            send_headers.setdefault("Content-Type", "application/json")
        if self._api_key is not None:
            signed = {**send_headers, "x-api-key": self._api_key}
        else:
            creds = (self._credentials or _default_credentials()).get_frozen_credentials()
            signed = sign_request(
                method,
                url,
                body=body,
                headers=send_headers,
                credentials=Credentials(str(creds.access_key), str(creds.secret_key), creds.token),
                region=self.region,
            )
        try:
            resp = self._http.request(method, url, content=body, headers=signed)
        except httpx.HTTPError as exc:
            raise TransportError(f"{method} {url}: {exc}") from exc
        try:
            data = resp.json()
        except ValueError:
            data = None
        if resp.status_code >= 400:
            err = (data or {}).get("error") if isinstance(data, dict) else None
            if isinstance(err, dict):
                raise ApiError(
                    resp.status_code, str(err.get("code")), str(err.get("message")), err.get("field"), data
                )
            message = (data or {}).get("message") if isinstance(data, dict) else None
            raise ApiError(resp.status_code, "http_error", str(message or resp.text[:200]), None, data)
        if not isinstance(data, dict):
            raise ApiError(resp.status_code, "bad_response", "the API did not answer with a JSON object")
        return data
