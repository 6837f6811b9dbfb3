"""Names of the task metrics the queue agent writes (CloudWatch EMF, namespace ``Easel``) and that the
dashboard and alarms read (``infra/constructs/monitoring.py``): one definition for both sides.

Every per-task metric carries the dimension sets :data:`TASK_DIMENSIONS`; ``cold_start_seconds`` is one
datapoint per pod start, by runtime. GPU utilisation and memory come from NVIDIA's DCGM exporter through the
collector (``infra/constructs/observability.py``), by runtime and by pod.
"""

from __future__ import annotations

NAMESPACE = "Easel"
TASKS = "tasks"
QUEUE_SECONDS = "queue_seconds"
PREDICT_SECONDS = "predict_seconds"
GPU_SECONDS = "gpu_seconds"
MODEL_SWITCH_SECONDS = "model_switch_seconds"
# 1 when the task needed a model switch (a cache miss of the runtime's loaded model), else 0: its average
# over a period is the miss ratio, one minus it the hit ratio.
MODEL_SWITCHES = "model_switches"
IMAGES = "images"
COLD_START_SECONDS = "cold_start_seconds"

TASK_SECONDS = (QUEUE_SECONDS, PREDICT_SECONDS, GPU_SECONDS, MODEL_SWITCH_SECONDS)
TASK_COUNTS = (TASKS, MODEL_SWITCHES, IMAGES)
TASK_DIMENSIONS = (("runtime",), ("runtime", "status"), ("runtime", "tenant"))
