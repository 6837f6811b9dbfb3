"""Pipeline tasks (ComfyUI workflows) through the API, on a config with one pool per runtime kind.

Every bad request is refused with a 4xx naming the field, and nothing is stored or queued."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from easel.client import EaselClient
from infra.local.stack import LocalStack
from tests.agent.conformance import workflow
from tests.conftest import ROOT
from tests.integration.api.helpers import call, control_plane, drain, message_counts, t2i, table_items

THREE_KINDS = ROOT / "tests" / "configs" / "three-kinds.yaml"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    work: Path = tmp_path_factory.mktemp("local-kinds")
    with control_plane(THREE_KINDS, work) as running:
        yield running


def pipeline(graph: Any, **extra: Any) -> dict[str, Any]:
    return {"task_type": "pipeline", "model": "flows", "input": {"workflow": graph, **extra}}


def refused(acme: EaselClient, fresh: LocalStack, body: dict[str, Any], field: str, *words: str) -> None:
    reply = call(acme, "POST", "/v1/tasks", json_body=body)
    assert 400 <= reply.status < 500, reply.body
    assert reply.error["field"] == field, reply.error
    for word in words:
        assert word in reply.error["message"], reply.error
    assert sum(message_counts(fresh).values()) == 0
    assert table_items(fresh) == []


def test_a_pipeline_is_queued_for_the_comfyui_pool(acme: EaselClient, fresh: LocalStack) -> None:
    reply = call(acme, "POST", "/v1/tasks", json_body=pipeline(workflow()))
    assert reply.status == 200 or reply.status == 201, reply.body
    assert reply.body["runtime"] == "comfy" and reply.body["task_type"] == "pipeline"
    queued = drain(fresh)
    (message,) = queued["comfy-normal"]
    assert message["body"]["input"]["workflow"]["3"]["class_type"] == "KSampler"
    assert message["attributes"]["task_type"] == "pipeline"


def test_a_pipeline_for_a_diffusers_pool(acme: EaselClient, fresh: LocalStack) -> None:
    body = {**pipeline(workflow()), "model": "sd15"}
    refused(acme, fresh, body, "task_type", "diffusers", "pipeline")


def test_an_a1111_body_for_the_comfyui_pool(acme: EaselClient, fresh: LocalStack) -> None:
    refused(acme, fresh, t2i("flows"), "task_type", "comfyui")
    # A pipeline task whose input is an A1111 body names the field that is wrong.
    refused(
        acme,
        fresh,
        {"task_type": "pipeline", "model": "flows", "input": {"prompt": "a dog"}},
        "input.workflow",
    )


def test_a_refused_node_type(acme: EaselClient, fresh: LocalStack) -> None:
    graph = workflow()
    graph["20"] = {"class_type": "LoadImageFromUrl", "inputs": {"url": "https://example.com/x.png"}}
    refused(acme, fresh, pipeline(graph), "input.workflow.20.class_type", "LoadImageFromUrl", "comfy")


def test_a_graph_over_the_node_limit(acme: EaselClient, fresh: LocalStack) -> None:
    graph = workflow()
    for i in range(30):
        graph[str(100 + i)] = {"class_type": "CLIPTextEncode", "inputs": {"text": "x", "clip": ["4", 1]}}
    refused(acme, fresh, pipeline(graph), "input.workflow", "38 nodes", "limit of 20")


def test_a_graph_that_is_not_a_dag(acme: EaselClient, fresh: LocalStack) -> None:
    graph = workflow()
    graph["4"]["inputs"]["loop"] = ["8", 0]  # the loader now depends on the decoder, which depends on it
    reply = call(acme, "POST", "/v1/tasks", json_body=pipeline(graph))
    assert reply.status == 400
    assert reply.error["field"].startswith("input.workflow.") and "not a DAG" in reply.error["message"]
    assert sum(message_counts(fresh).values()) == 0 and table_items(fresh) == []


@pytest.mark.parametrize(
    ("graph", "field", "words"),
    [
        ({}, "input.workflow", ("non-empty",)),
        ({"1": {"inputs": {}}}, "input.workflow.1.class_type", ("node type",)),
        ({"1": {"class_type": "X", "inputs": {"a": ["9", 0]}}}, "input.workflow.1.inputs.a", ("node '9'",)),
        ({"1": {"class_type": "X", "inputs": [], "x": 1}}, "input.workflow.1.x", ("unknown field",)),
        ({"a b": {"class_type": "X", "inputs": {}}}, "input.workflow.a b", ("node ids",)),
    ],
)
def test_malformed_graphs(
    acme: EaselClient, fresh: LocalStack, graph: dict[str, Any], field: str, words: tuple[str, ...]
) -> None:
    refused(acme, fresh, pipeline(graph), field, *words)


def test_pipeline_images_must_be_references_the_agent_may_fetch(acme: EaselClient, fresh: LocalStack) -> None:
    body = pipeline(workflow(image="photo.png"), images={"photo.png": "ftp://example.com/p.png"})
    refused(acme, fresh, body, "input.images.photo.png", "scheme")
