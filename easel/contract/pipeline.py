"""The ``pipeline`` task's input: a ComfyUI workflow in its API format, plus named input images.

A workflow is what ComfyUI's "Save (API format)" writes: a JSON object of node id -> node, each node
``{"class_type": "KSampler", "inputs": {...}, "_meta": {"title": "..."}}``. An input is either a literal
(string, number, bool, object) or a link ``[<node id>, <output index>]`` to another node's output.

:func:`check_workflow` holds the rules the API enforces before anything is stored or queued, each error
naming the node (``input.workflow.<id>...``):

    shape      a non-empty object of node id -> {class_type, inputs[, _meta]}, ids [A-Za-z0-9_:.-]{1,64}
    links      every [id, n] link names a node of the workflow and a non-negative output index
    DAG        no node depends on itself through its links (ComfyUI would recurse forever or refuse)
    size       at most ``max_nodes`` nodes (the runtime's ``pipeline.max_nodes``)
    refused    no node of a type the runtime refuses (``pipeline.refused_node_types``)

``images`` maps a file name to an s3:// or https reference; the agent fetches each through the same safe
fetch as any input and uploads it to ComfyUI under that name, where a ``LoadImage`` node refers to it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

from easel.errors import FieldError

NODE_ID = re.compile(r"^[A-Za-z0-9_:.-]{1,64}$")
CLASS_TYPE = re.compile(r"^[^\x00-\x1f]{1,128}$")
IMAGE_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$"
# Ceiling of the per-runtime limit (config ``pipeline.max_nodes`` is at most this).
MAX_NODES = 1000
MAX_IMAGES = 8
_NODE_KEYS = frozenset({"class_type", "inputs", "_meta"})

ImageName = Annotated[str, Field(pattern=IMAGE_NAME_PATTERN)]
ImageRef = Annotated[str, Field(min_length=1, max_length=2048, description="s3:// URI or https URL")]


class PipelineInput(BaseModel):
    """Input of a ``pipeline`` task (ComfyUI runtimes)."""

    model_config = ConfigDict(extra="forbid")

    workflow: Annotated[
        dict[str, Any],
        Field(description="ComfyUI workflow in API format: node id -> {class_type, inputs}"),
    ]
    images: Annotated[
        dict[ImageName, ImageRef],
        Field(max_length=MAX_IMAGES, description="file name (as LoadImage names it) -> s3:// or https"),
    ] = {}


def check_workflow(
    workflow: Any,
    *,
    max_nodes: int = MAX_NODES,
    refused: Iterable[str] = (),
    prefix: str = "input.workflow",
    runtime: str = "",
) -> None:
    """Raise :class:`FieldError` naming the first node (or input) that breaks a rule of the module doc.

    The contract checks shape, links and the DAG with the ceiling :data:`MAX_NODES`; the API checks again
    with the serving runtime's ``max_nodes`` and ``refused`` node types (:func:`easel.limits.check_model`)."""

    def name(*parts: str) -> str:
        return ".".join(p for p in (prefix, *parts) if p) or "workflow"

    if not isinstance(workflow, dict) or not workflow:
        raise FieldError(name(), "must be a non-empty object of node id -> node (ComfyUI API format)")
    if len(workflow) > max_nodes:
        raise FieldError(name(), f"{len(workflow)} nodes is over the limit of {max_nodes}")
    refused_set = frozenset(refused)
    links: dict[str, list[str]] = {}
    for node_id, node in workflow.items():
        if not NODE_ID.match(node_id):
            raise FieldError(name(node_id[:64] or '""'), "node ids are 1-64 of [A-Za-z0-9_:.-]")
        if not isinstance(node, dict):
            raise FieldError(name(node_id), "a node must be an object with class_type and inputs")
        extra = sorted(set(node) - _NODE_KEYS)
        if extra:
            raise FieldError(
                name(node_id, str(extra[0])[:64]), "unknown field (a node has class_type, inputs)"
            )
        class_type = node.get("class_type")
        if not isinstance(class_type, str) or not CLASS_TYPE.match(class_type):
            raise FieldError(name(node_id, "class_type"), "must be a node type name (1-128 characters)")
        if class_type in refused_set:
            who = f"runtime '{runtime}'" if runtime else "this runtime"
            raise FieldError(name(node_id, "class_type"), f"node type '{class_type}' is refused by {who}")
        inputs = node.get("inputs")
        if not isinstance(inputs, dict):
            raise FieldError(name(node_id, "inputs"), "must be an object of input name -> value or link")
        links[node_id] = []
        for input_name, value in inputs.items():
            if _is_link(value):
                target, index = value
                if target not in workflow:
                    raise FieldError(
                        name(node_id, "inputs", input_name[:64]),
                        f"links to node '{str(target)[:64]}', which is not in the workflow",
                    )
                if index < 0:
                    raise FieldError(name(node_id, "inputs", input_name[:64]), "output index must be >= 0")
                links[node_id].append(target)
    cycle = _find_cycle(links)
    if cycle:
        raise FieldError(name(cycle[0]), f"the workflow is not a DAG: {' -> '.join(cycle)}")


def _is_link(value: Any) -> bool:
    # ComfyUI's own test: a list of two whose first item is a node id (str) and second an output index.
    return (
        isinstance(value, list)
        and len(value) == 2
        and isinstance(value[0], str)
        and isinstance(value[1], int)
        and not isinstance(value[1], bool)
    )


def _find_cycle(links: dict[str, list[str]]) -> list[str]:
    """A cycle as node ids ``[a, b, ..., a]`` or ``[]``; iterative so a deep graph cannot overflow."""
    white, grey, black = 0, 1, 2
    color = dict.fromkeys(links, white)
    for start in links:
        if color[start] != white:
            continue
        path: list[str] = [start]
        stack: list[Iterator[str]] = [iter(links[start])]
        color[start] = grey
        while stack:
            nxt = next(stack[-1], None)
            if nxt is None:
                color[path.pop()] = black
                stack.pop()
                continue
            if color[nxt] == grey:
                return [*path[path.index(nxt) :], nxt]
            if color[nxt] == white:
                color[nxt] = grey
                path.append(nxt)
                stack.append(iter(links[nxt]))
    return []
