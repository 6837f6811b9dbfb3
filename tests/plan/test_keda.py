"""The KEDA/HPA arithmetic of easel.plan.keda against the examples KEDA's and Kubernetes' docs give."""

from __future__ import annotations

from easel.plan.keda import (
    DEFAULT_SCALE_UP,
    Hpa,
    Keda,
    Policy,
    Rules,
    average_value_replicas,
    hpa_desired,
    is_active,
    ratio_desired,
    sqs_metric,
)


def test_keda_sqs_doc_example_30_messages_at_queue_length_10_is_3_pods() -> None:
    # KEDA aws-sqs-queue docs: "if one pod can handle 10 messages, set the queue length target to 10. If the
    # actual messages in the SQS Queue is 30, the scaler scales to 3 pods."
    assert average_value_replicas(30, 10) == 3
    assert hpa_desired(1, 30, 10) == 3
    assert average_value_replicas(31, 10) == 4  # ceil


def test_actual_messages_count_in_flight_unless_scale_on_in_flight_is_false() -> None:
    # "actual messages" = ApproximateNumberOfMessages + ApproximateNumberOfMessagesNotVisible by default.
    assert sqs_metric(3, 2) == 5
    assert sqs_metric(3, 2, scale_on_in_flight=False) == 3


def test_activation_is_strictly_above_the_activation_target() -> None:
    assert not is_active(0, 0)
    assert is_active(1, 0)
    assert not is_active(5, 5)
    assert is_active(6, 5)


def test_hpa_doc_ratio_examples_double_and_halve() -> None:
    # Kubernetes HPA docs: 200m current vs 100m desired doubles the replicas; 50m halves them.
    assert ratio_desired(4, 200, 100) == 8
    assert ratio_desired(4, 50, 100) == 2


def test_hpa_tolerance_blog_example_50_replicas_at_90_of_75_go_to_60() -> None:
    # Kubernetes v1.33 blog "HPA configurable tolerance": 50 * (90 / 75) = 60; 20 % is beyond the 10 %.
    assert ratio_desired(50, 90, 75) == 60
    # Within the default tolerance (0.1) nothing changes.
    assert ratio_desired(50, 80, 75) == 50
    assert hpa_desired(10, 105, 10) == 10  # ratio 1.05
    assert hpa_desired(10, 115, 10) == 12  # ratio 1.15 -> ceil(115 / 10)


def test_hpa_is_idle_at_zero_replicas() -> None:
    assert hpa_desired(0, 100, 1) == 0


def test_kep_853_scale_down_stabilization_example() -> None:
    # KEP-853 "Stabilization before scaling down": window 600 s, Pods 5 per 600 s, one sync a minute,
    # recommendations [10, 9, 8, 9, 9, 8, 9, 8, 9] then 8 -> keeps 10; then 7 -> 9.
    hpa = Hpa(
        target=1,
        min_replicas=1,
        max_replicas=100,
        scale_down=Rules(600, (Policy("Pods", 5, 600),)),
    )
    current = 10
    for minute, rec in enumerate([10, 9, 8, 9, 9, 8, 9, 8, 9]):
        current = hpa.normalize(minute * 60.0, current, rec)
        assert current == 10
    assert hpa.normalize(9 * 60.0, current, 8) == 10
    assert hpa.normalize(10 * 60.0, current, 7) == 9


def test_hpa_doc_scale_down_policies_example_80_to_10() -> None:
    # Kubernetes HPA docs, "Scaling policies": Pods 4 / 60 s and Percent 10 / 60 s (selectPolicy Max): from
    # 80 replicas the first step removes 8; at 72, 10 % is 7.2, rounded up to 8; below 40, 4 at a time.
    rules = Rules(0, (Policy("Pods", 4, 60), Policy("Percent", 10, 60)))
    hpa = Hpa(target=1, min_replicas=1, max_replicas=100, scale_down=rules)
    assert hpa.normalize(0.0, 80, 10) == 72
    assert hpa.normalize(15.0, 72, 10) == 72  # the period (60 s) has not passed: 8 already removed
    assert hpa.normalize(61.0, 72, 10) == 64
    hpa2 = Hpa(target=1, min_replicas=1, max_replicas=100, scale_down=rules)
    assert hpa2.normalize(0.0, 30, 10) == 26


def test_hpa_default_scale_up_is_the_larger_of_100_percent_and_4_pods_per_15_s() -> None:
    hpa = Hpa(target=1, min_replicas=1, max_replicas=100, scale_up=DEFAULT_SCALE_UP)
    assert hpa.step(0.0, 1, 40) == 5  # 1 + 4 beats 1 * 2
    assert hpa.step(15.0, 5, 40) == 10  # 100 % of 5 beats + 4
    assert hpa.step(30.0, 10, 40) == 20
    assert hpa.step(45.0, 20, 40) == 40
    assert hpa.step(60.0, 40, 40) == 40


def test_hpa_bounds_by_min_and_max() -> None:
    hpa = Hpa(target=2, min_replicas=1, max_replicas=4)
    assert hpa.step(0.0, 2, 40) == 4
    hpa = Hpa(target=2, min_replicas=1, max_replicas=4, scale_down=Rules(0, (Policy("Percent", 100, 15),)))
    assert hpa.step(0.0, 3, 0) == 1


def test_keda_activation_and_cooldown_to_zero() -> None:
    keda = Keda(activation_target=0, min_replicas=0, cooldown_seconds=300)
    assert keda.poll(0.0, 0, 0) == 0  # nothing to do
    assert keda.poll(15.0, 0, 1) == 1  # active: 0 -> 1
    assert keda.poll(30.0, 1, 0) == 1  # inactive, cooling down (last active at 15 s)
    assert keda.poll(314.0, 1, 0) == 1
    assert keda.poll(315.0, 1, 0) == 0  # 300 s after the last activity
    keep = Keda(activation_target=0, min_replicas=1, cooldown_seconds=0)
    assert keep.poll(0.0, 0, 3) == 1
    assert keep.poll(100.0, 1, 0) == 1  # min_replicas 1: never to zero


def test_keda_activation_target_holds_back_small_queues() -> None:
    keda = Keda(activation_target=5, min_replicas=0, cooldown_seconds=60)
    assert keda.poll(0.0, 0, 5) == 0
    assert keda.poll(15.0, 0, 6) == 1
