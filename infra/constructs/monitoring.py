"""Monitoring: the CloudWatch dashboard, the alarms, and the (encrypted) alarms topic they notify.

Alarms: any DLQ with a visible message, any message in the unroutable queue, a lane whose oldest message is
older than ``monitoring.oldest_message_alarm_seconds`` (the pool is not keeping up or cannot scale), and an
API 5XX rate above 1 %. Per runtime, the SLO alarms: the share of finished tasks that failed
(``monitoring.failure_ratio_alarm`` over three periods), a pod's cold start (process start until its runtime
is ready) above ``monitoring.cold_start_alarm_seconds``, and GPUs idle (below
``monitoring.gpu_idle_percent`` utilisation) while the runtime's lanes hold tasks, for three periods.

Task outcomes and latencies come from the ``Easel`` namespace: the queue agent's EMF metrics (names in
:mod:`easel.metrics`), the API's ``TasksSubmitted``, and the DCGM exporter's GPU utilisation and memory
written by the collector (``infra/constructs/observability.py``). Each runtime gets a row of latency widgets
(queue wait, generation, model switches and cache hit ratio, images per second, cold starts) and a row of
GPU and cost widgets (utilisation and memory per pod, GPU-seconds per tenant).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import aws_cdk as cdk
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as actions
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from easel import metrics
from easel.config import Monitoring as MonitoringConfig
from easel.contract.tasks import Lane
from easel.naming import Names
from infra.constructs.messaging import LaneQueues
from infra.constructs.observability import GPU_MEMORY_USED, GPU_UTIL

PERIOD = cdk.Duration.minutes(5)
# Terminal statuses the agent reports as the `status` dimension of its `tasks` metric.
OUTCOMES = ("succeeded", "failed", "canceled")
API_5XX_RATE = 0.01


class Monitoring(Construct):
    """``dashboard``, ``alarms`` (by purpose) and ``alarms_topic`` (with its key)."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        names: Names,
        config: MonitoringConfig,
        lanes: Mapping[str, Mapping[Lane, LaneQueues]],
        unroutable_queue: sqs.IQueue,
        rest_api: apigw.RestApi,
        key_api: apigw.RestApi | None = None,
    ) -> None:
        """``key_api``: the API-key REST API, when a tenant takes keys (infra/constructs/apikeys.py)."""
        super().__init__(scope, construct_id)
        self.key = kms.Key(
            self,
            "Key",
            description=f"{names.prefix}: alarms topic",
            enable_key_rotation=True,
            removal_policy=cdk.RemovalPolicy.DESTROY,
            pending_window=cdk.Duration.days(7),
        )
        # CloudWatch publishes alarm notifications itself; it needs the key to encrypt into the topic.
        self.key.add_to_resource_policy(
            iam.PolicyStatement(
                principals=[iam.ServicePrincipal("cloudwatch.amazonaws.com")],
                actions=["kms:Decrypt", "kms:GenerateDataKey*"],
                resources=["*"],
                conditions={"StringEquals": {"aws:SourceAccount": cdk.Stack.of(self).account}},
            )
        )
        self.alarms_topic = sns.Topic(
            self, "AlarmsTopic", topic_name=names.alarms_topic, master_key=self.key, enforce_ssl=True
        )
        if config.alarm_email:
            self.alarms_topic.add_subscription(subscriptions.EmailSubscription(config.alarm_email))
        action = actions.SnsAction(self.alarms_topic)

        self.alarms: dict[str, cloudwatch.Alarm] = {}

        def alarm(
            key: str, metric: cloudwatch.IMetric, threshold: float, description: str, periods: int = 1
        ) -> None:
            # Every alarm fires when its metric is above the threshold; missing data (no tasks, no pods) is
            # not a breach.
            created = cloudwatch.Alarm(
                self,
                f"Alarm{key}",
                alarm_name=f"{names.prefix}-{key}",
                alarm_description=description,
                metric=metric,
                threshold=threshold,
                evaluation_periods=periods,
                comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
                treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
            )
            created.add_alarm_action(action)
            created.add_ok_action(action)
            self.alarms[key] = created

        for runtime, by_lane in lanes.items():
            for lane, queues in by_lane.items():
                alarm(
                    f"{runtime}-{lane}-dlq",
                    queues.dlq.metric_approximate_number_of_messages_visible(
                        period=PERIOD, statistic="Maximum"
                    ),
                    0,
                    f"Tasks of runtime {runtime} ({lane} lane) exhausted their retries and sit in the DLQ.",
                )
                alarm(
                    f"{runtime}-{lane}-oldest",
                    queues.queue.metric_approximate_age_of_oldest_message(period=PERIOD, statistic="Maximum"),
                    config.oldest_message_alarm_seconds,
                    f"The oldest {lane}-lane task of runtime {runtime} has waited longer than "
                    f"{config.oldest_message_alarm_seconds} s: the pool is not keeping up or cannot scale.",
                )
        for runtime, by_lane in lanes.items():
            self._slo_alarms(alarm, names, config, runtime, by_lane)
        alarm(
            "unroutable",
            unroutable_queue.metric_approximate_number_of_messages_visible(
                period=PERIOD, statistic="Maximum"
            ),
            0,
            "A task named a runtime no queue serves (config and API disagree); see the unroutable queue.",
        )
        alarm(
            "api-5xx",
            rest_api.metric_server_error(period=PERIOD, statistic="Average"),
            API_5XX_RATE,
            f"More than {API_5XX_RATE:.0%} of API requests failed with 5XX for 10 minutes.",
            periods=2,
        )
        if key_api is not None:
            # A failing authorizer (its Lambda, the keys table) shows here as 5XX of the key API alone.
            alarm(
                "key-api-5xx",
                key_api.metric_server_error(period=PERIOD, statistic="Average"),
                API_5XX_RATE,
                f"More than {API_5XX_RATE:.0%} of API-key requests failed with 5XX for 10 minutes "
                "(the API Lambda, or the key authorizer and its table).",
                periods=2,
            )

        self.dashboard = cloudwatch.Dashboard(self, "Dashboard", dashboard_name=names.prefix)
        self.dashboard.add_widgets(
            cloudwatch.TextWidget(
                markdown=f"# Easel `{names.prefix}`\nLane queues, dead letters, task outcomes, API.",
                width=24,
                height=2,
            )
        )
        for runtime, by_lane in lanes.items():
            self.dashboard.add_widgets(
                cloudwatch.GraphWidget(
                    title=f"{runtime}: queued tasks (visible)",
                    left=[
                        q.queue.metric_approximate_number_of_messages_visible(
                            period=PERIOD, statistic="Maximum", label=str(lane)
                        )
                        for lane, q in by_lane.items()
                    ],
                    width=8,
                ),
                cloudwatch.GraphWidget(
                    title=f"{runtime}: age of oldest task (s)",
                    left=[
                        q.queue.metric_approximate_age_of_oldest_message(
                            period=PERIOD, statistic="Maximum", label=str(lane)
                        )
                        for lane, q in by_lane.items()
                    ],
                    left_annotations=[
                        cloudwatch.HorizontalAnnotation(
                            value=config.oldest_message_alarm_seconds, label="alarm"
                        )
                    ],
                    width=8,
                ),
                cloudwatch.GraphWidget(
                    title=f"{runtime}: task outcomes",
                    left=[
                        cloudwatch.Metric(
                            namespace=names.metrics_namespace,
                            metric_name="tasks",
                            dimensions_map={"runtime": runtime, "status": status},
                            statistic="Sum",
                            period=PERIOD,
                            label=status,
                        )
                        for status in OUTCOMES
                    ],
                    width=8,
                ),
            )
        for runtime in lanes:
            self.dashboard.add_widgets(*self._latency_widgets(names, runtime))
            self.dashboard.add_widgets(*self._gpu_widgets(names, config, runtime))
        self.dashboard.add_widgets(
            cloudwatch.GraphWidget(
                title="Dead-letter queues (visible)",
                left=[
                    q.dlq.metric_approximate_number_of_messages_visible(
                        period=PERIOD, statistic="Maximum", label=f"{runtime}-{lane}"
                    )
                    for runtime, by_lane in lanes.items()
                    for lane, q in by_lane.items()
                ],
                width=8,
            ),
            cloudwatch.GraphWidget(
                title="Unroutable queue (visible)",
                left=[
                    unroutable_queue.metric_approximate_number_of_messages_visible(
                        period=PERIOD, statistic="Maximum", label="unroutable"
                    )
                ],
                width=8,
            ),
            cloudwatch.GraphWidget(
                title="Tasks submitted (API)",
                left=[
                    cloudwatch.MathExpression(
                        expression=(
                            f'SEARCH(\'Namespace="{names.metrics_namespace}" MetricName="TasksSubmitted"\', '
                            f"'Sum', {PERIOD.to_seconds()})"
                        ),
                        label="submitted",
                        period=PERIOD,
                    )
                ],
                width=8,
            ),
        )
        self.dashboard.add_widgets(
            cloudwatch.GraphWidget(
                title="API requests and errors",
                left=[
                    rest_api.metric_count(period=PERIOD, label="requests"),
                    rest_api.metric_client_error(period=PERIOD, statistic="Sum", label="4XX"),
                    rest_api.metric_server_error(period=PERIOD, statistic="Sum", label="5XX"),
                    *(
                        [
                            key_api.metric_count(period=PERIOD, label="key API requests"),
                            key_api.metric_client_error(period=PERIOD, statistic="Sum", label="key API 4XX"),
                            key_api.metric_server_error(period=PERIOD, statistic="Sum", label="key API 5XX"),
                        ]
                        if key_api is not None
                        else []
                    ),
                ],
                width=12,
            ),
            cloudwatch.GraphWidget(
                title="API latency (ms)",
                left=[
                    rest_api.metric_latency(period=PERIOD, statistic=stat, label=f"latency {stat}")
                    for stat in ("p50", "p90", "p99")
                ]
                + [
                    rest_api.metric_integration_latency(
                        period=PERIOD, statistic="p99", label="integration p99"
                    )
                ],
                width=12,
            ),
            cloudwatch.AlarmStatusWidget(alarms=list(self.alarms.values()), title="Alarms", width=24),
        )

    # -- SLO alarms -----------------------------------------------------------------------------------------
    def _slo_alarms(
        self,
        alarm: Callable[..., None],
        names: Names,
        config: MonitoringConfig,
        runtime: str,
        by_lane: Mapping[Lane, LaneQueues],
    ) -> None:
        outcomes = {
            status[0]: _task_metric(names, metrics.TASKS, runtime, "Sum", status=status)
            for status in OUTCOMES
        }
        alarm(
            f"{runtime}-failure-ratio",
            cloudwatch.MathExpression(
                expression="FILL(f, 0) / (FILL(s, 0) + FILL(f, 0) + FILL(c, 0))",
                using_metrics=outcomes,
                period=PERIOD,
                label="failed / finished",
            ),
            config.failure_ratio_alarm,
            f"More than {config.failure_ratio_alarm:.0%} of runtime {runtime}'s finished tasks failed in "
            "each of three 5-minute periods; read the failed tasks' error codes and the agent's "
            "`failing task` logs.",
            periods=3,
        )
        alarm(
            f"{runtime}-cold-start",
            _task_metric(names, metrics.COLD_START_SECONDS, runtime, "Maximum"),
            config.cold_start_alarm_seconds,
            f"A pod of runtime {runtime} took longer than {config.cold_start_alarm_seconds} s from start "
            "to a ready runtime (node launch, image pull or model load is slow).",
        )
        backlog = {
            f"q{i}": q.queue.metric_approximate_number_of_messages_visible(period=PERIOD, statistic="Maximum")
            for i, q in enumerate(by_lane.values())
        }
        alarm(
            f"{runtime}-gpu-idle-backlog",
            cloudwatch.MathExpression(
                expression=(f"IF(({' + '.join(backlog)}) > 0 AND gpu < {config.gpu_idle_percent:g}, 1, 0)"),
                using_metrics={**backlog, "gpu": _gpu_metric(names, GPU_UTIL, runtime, "Average")},
                period=PERIOD,
                label="idle GPUs while tasks wait",
            ),
            0,
            f"Runtime {runtime}'s GPUs stayed below {config.gpu_idle_percent:g} % utilisation for 15 minutes "
            "while its lanes held tasks: the agent is not feeding the runtime (stuck, failing or throttled).",
            periods=3,
        )

    # -- dashboard rows -------------------------------------------------------------------------------------
    def _latency_widgets(self, names: Names, runtime: str) -> list[cloudwatch.IWidget]:
        percentiles = ("p50", "p90", "p99")
        switches = _task_metric(names, metrics.MODEL_SWITCHES, runtime, "Average")
        images = _task_metric(names, metrics.IMAGES, runtime, "Sum")
        return [
            cloudwatch.GraphWidget(
                title=f"{runtime}: queue wait (s)",
                left=[_task_metric(names, metrics.QUEUE_SECONDS, runtime, p, label=p) for p in percentiles],
                width=6,
            ),
            cloudwatch.GraphWidget(
                title=f"{runtime}: generation (s)",
                left=[_task_metric(names, metrics.PREDICT_SECONDS, runtime, p, label=p) for p in percentiles],
                width=6,
            ),
            cloudwatch.GraphWidget(
                title=f"{runtime}: model switches (s) and cache hit ratio (%)",
                left=[
                    _task_metric(names, metrics.MODEL_SWITCH_SECONDS, runtime, s, label=f"switch {s}")
                    for s in ("Average", "Maximum")
                ],
                right=[
                    cloudwatch.MathExpression(
                        expression="100 * (1 - m)",
                        using_metrics={"m": switches},
                        period=PERIOD,
                        label="cache hit %",
                    )
                ],
                width=6,
            ),
            cloudwatch.GraphWidget(
                title=f"{runtime}: images per second and cold starts (s)",
                left=[
                    cloudwatch.MathExpression(
                        expression="n / PERIOD(n)",
                        using_metrics={"n": images},
                        period=PERIOD,
                        label="images/s",
                    )
                ],
                right=[
                    _task_metric(names, metrics.COLD_START_SECONDS, runtime, "Maximum", label="cold start")
                ],
                width=6,
            ),
        ]

    def _gpu_widgets(self, names: Names, config: MonitoringConfig, runtime: str) -> list[cloudwatch.IWidget]:
        def per_pod(metric: str, label: str) -> cloudwatch.MathExpression:
            return cloudwatch.MathExpression(
                expression=(
                    f'SEARCH(\'{{{names.metrics_namespace},pod,runtime}} MetricName="{metric}" '
                    f"runtime=\"{runtime}\"', 'Average', {PERIOD.to_seconds()})"
                ),
                label=label,
                period=PERIOD,
            )

        return [
            cloudwatch.GraphWidget(
                title=f"{runtime}: GPU utilisation per pod (%)",
                left=[per_pod(GPU_UTIL, "")],
                left_annotations=[
                    cloudwatch.HorizontalAnnotation(value=config.gpu_idle_percent, label="idle")
                ],
                width=8,
            ),
            cloudwatch.GraphWidget(
                title=f"{runtime}: GPU memory used per pod (MiB)",
                left=[per_pod(GPU_MEMORY_USED, "")],
                width=8,
            ),
            cloudwatch.GraphWidget(
                title=f"{runtime}: GPU-seconds per tenant",
                left=[
                    cloudwatch.MathExpression(
                        expression=(
                            f"SEARCH('{{{names.metrics_namespace},runtime,tenant}} "
                            f'MetricName="{metrics.GPU_SECONDS}" runtime="{runtime}"\', \'Sum\', '
                            f"{PERIOD.to_seconds()})"
                        ),
                        label="",
                        period=PERIOD,
                    )
                ],
                stacked=True,
                width=8,
            ),
        ]


def _task_metric(
    names: Names, name: str, runtime: str, statistic: str, *, status: str | None = None, label: str = ""
) -> cloudwatch.Metric:
    dimensions = {"runtime": runtime} if status is None else {"runtime": runtime, "status": status}
    return cloudwatch.Metric(
        namespace=names.metrics_namespace,
        metric_name=name,
        dimensions_map=dimensions,
        statistic=statistic,
        period=PERIOD,
        label=label or None,
    )


def _gpu_metric(names: Names, name: str, runtime: str, statistic: str) -> cloudwatch.Metric:
    return cloudwatch.Metric(
        namespace=names.metrics_namespace,
        metric_name=name,
        dimensions_map={"runtime": runtime},
        statistic=statistic,
        period=PERIOD,
    )
