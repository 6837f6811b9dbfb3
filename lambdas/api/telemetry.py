"""Module-level Powertools Logger and Tracer of the API (shared by app and routes), and its metrics.

Metrics are EMF lines in the ``Easel`` namespace (``POWERTOOLS_METRICS_NAMESPACE`` overrides it), one
``single_metric`` per event so each carries its own dimensions (a request-wide ``Metrics`` object would
also warn on every request that adds none). Tracing turns itself off outside Lambda (local mode) and with
``POWERTOOLS_TRACE_DISABLED=1``.
"""

from __future__ import annotations

import os

from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.metrics import MetricUnit, single_metric
from aws_lambda_powertools.metrics.functions import is_metrics_disabled

from easel.contract import Task
from lambdas.logformat import EaselLogFormatter

SERVICE = "easel-api"
logger = Logger(service=SERVICE, logger_formatter=EaselLogFormatter(SERVICE))
tracer = Tracer(service=SERVICE)
_emit_metrics = True


def emit_metrics(on: bool) -> None:
    """Turn the EMF lines on or off (the local gateway turns them off: they are for CloudWatch)."""
    global _emit_metrics
    _emit_metrics = on


def record_submitted(task: Task) -> None:
    """One ``TasksSubmitted`` datapoint per new task, by task type and runtime."""
    # single_metric ignores POWERTOOLS_METRICS_DISABLED (local mode sets it), so honour it here.
    if not _emit_metrics or is_metrics_disabled():
        return
    with single_metric(
        name="TasksSubmitted",
        unit=MetricUnit.Count,
        value=1,
        namespace=os.environ.get("POWERTOOLS_METRICS_NAMESPACE") or "Easel",
    ) as metric:
        metric.add_dimension(name="task_type", value=str(task.task_type))
        metric.add_dimension(name="runtime", value=task.runtime)
