"""Operating a deployment: ``verify`` (is it healthy, step by step), ``guard`` (the cost guard CronJob) and
``drain`` (the chart's pre-delete hook). They talk to AWS with boto3 and to Kubernetes with :mod:`.kube`
(httpx); nothing here imports the layers above the core.

DeployError
├── KubeError          the Kubernetes API refused or failed a request (status and path)
└── DrainTimeout       the pool's nodes were still there at the drain's deadline
"""

from __future__ import annotations

from easel.errors import EaselError


class DeployError(EaselError):
    """Base of the errors of :mod:`easel.deploy`."""


class KubeError(DeployError):
    def __init__(self, method: str, path: str, status: int, detail: str) -> None:
        super().__init__(f"{method} {path}: HTTP {status}: {detail}")
        self.status = status
        self.path = path


class DrainTimeout(DeployError):
    def __init__(self, remaining: list[str], seconds: float) -> None:
        super().__init__(f"still present after {seconds:.0f}s: {', '.join(remaining)}")
        self.remaining = remaining
