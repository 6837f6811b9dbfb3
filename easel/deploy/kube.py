"""A small Kubernetes API client over httpx: get, list, merge-patch and delete of namespaced or cluster
objects by path, with in-cluster configuration (service account token) or an explicit endpoint and token.

Only what verify, guard and drain need; errors are :class:`easel.deploy.KubeError` naming the request.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import httpx

from easel.deploy import KubeError

SERVICE_ACCOUNT_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")
MERGE_PATCH = "application/merge-patch+json"


class Kube:
    """``Kube(base_url, token)``; ``verify`` is a CA bundle path (or False for a loopback test server)."""

    def __init__(
        self, base_url: str, token: str, *, verify: str | bool = True, timeout: float = 10.0
    ) -> None:
        self._client = httpx.Client(
            base_url=base_url.rstrip("/"),
            headers={"Authorization": f"Bearer {token}", "Accept": "application/json"},
            verify=verify,
            timeout=timeout,
        )

    @classmethod
    def in_cluster(cls, sa_dir: Path = SERVICE_ACCOUNT_DIR) -> Kube:
        """The pod's own API access (its service account token and the cluster CA)."""
        host = os.environ["KUBERNETES_SERVICE_HOST"]
        port = os.environ.get("KUBERNETES_SERVICE_PORT", "443")
        token = (sa_dir / "token").read_text().strip()
        return cls(f"https://{host}:{port}", token, verify=str(sa_dir / "ca.crt"))

    def close(self) -> None:
        self._client.close()

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self._client.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise KubeError(method, path, 0, f"unreachable ({type(exc).__name__})") from None
        if response.status_code >= 400 and response.status_code != 404:
            try:
                detail = str(response.json().get("message", ""))
            except ValueError:
                detail = response.text[:200]
            raise KubeError(method, path, response.status_code, detail)
        return response

    def get(self, path: str) -> dict[str, Any] | None:
        """The object at ``path``, or None when it does not exist."""
        response = self._request("GET", path)
        if response.status_code == 404:
            return None
        body: dict[str, Any] = response.json()
        return body

    def items(self, path: str, *, label_selector: str | None = None) -> list[dict[str, Any]]:
        params = {"labelSelector": label_selector} if label_selector else None
        response = self._request("GET", path, params=params)
        if response.status_code == 404:
            return []
        items: list[dict[str, Any]] = response.json().get("items", [])
        return items

    def patch(self, path: str, body: dict[str, Any]) -> bool:
        """JSON merge patch; False when the object does not exist."""
        response = self._request("PATCH", path, json=body, headers={"Content-Type": MERGE_PATCH})
        return response.status_code != 404

    def delete(self, path: str, *, grace_seconds: int | None = None) -> bool:
        """Delete (background propagation); False when it was already gone."""
        body: dict[str, Any] = {"propagationPolicy": "Background"}
        if grace_seconds is not None:
            body["gracePeriodSeconds"] = grace_seconds
        response = self._request("DELETE", path, json=body)
        return response.status_code != 404


def deployment_path(namespace: str, name: str) -> str:
    return f"/apis/apps/v1/namespaces/{namespace}/deployments/{name}"


def scaled_object_path(namespace: str, name: str) -> str:
    return f"/apis/keda.sh/v1alpha1/namespaces/{namespace}/scaledobjects/{name}"


def pods_path(namespace: str) -> str:
    return f"/api/v1/namespaces/{namespace}/pods"


def selector(labels: dict[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items()))
