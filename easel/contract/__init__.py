"""The task contract: one definition of every payload that crosses a process boundary.

Request (client -> API), Task (API/agent -> client, webhooks, result topic), QueueMessage (API -> SNS ->
SQS -> agent) and the status machine. Lambdas, the agent and the CLI import these and nothing else.
"""

from easel.contract.status import TERMINAL, TaskStatus, can_transition, check_transition
from easel.contract.tasks import (
    SAMPLERS,
    CompatInfo,
    GenerationInput,
    Lane,
    LoraRef,
    Priority,
    QueueMessage,
    Task,
    TaskError,
    TaskInput,
    TaskMetrics,
    TaskOutput,
    TaskRequest,
    TaskType,
    TaskUrls,
    TrainLoraInput,
    lane_for,
    parse_input,
    parse_queue_message,
    parse_task_request,
    request_fingerprint,
    result_attributes,
    routing_attributes,
    sns_attributes,
)

__all__ = [
    "SAMPLERS",
    "TERMINAL",
    "CompatInfo",
    "GenerationInput",
    "Lane",
    "LoraRef",
    "Priority",
    "QueueMessage",
    "Task",
    "TaskError",
    "TaskInput",
    "TaskMetrics",
    "TaskOutput",
    "TaskRequest",
    "TaskStatus",
    "TaskType",
    "TaskUrls",
    "TrainLoraInput",
    "can_transition",
    "check_transition",
    "lane_for",
    "parse_input",
    "parse_queue_message",
    "parse_task_request",
    "request_fingerprint",
    "result_attributes",
    "routing_attributes",
    "sns_attributes",
]
