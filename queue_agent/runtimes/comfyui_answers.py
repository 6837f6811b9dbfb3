"""Reading ComfyUI's answers (``server.py`` / ``execution.py``, v0.2 line) as the agent's errors.

Errors, onto the agent's tree:

    connect error, dropped connection, 502/503/504            -> RuntimeUnavailable (retryable)
    400 from /prompt with a value_not_in_list on a *ckpt_name  -> ModelMissing       (permanent, names node)
    400 from /prompt otherwise (invalid_prompt, node errors)   -> RuntimeRejected    (permanent, names node)
    execution_error of a node                                  -> NodeFailed         (permanent: node id,
                                                                  type and message), except an out-of-
                                                                  memory error -> RuntimeFault (unknown)
    anything else >= 400, nonsense answers                     -> RuntimeFault       (unknown)
"""

from __future__ import annotations

from typing import Any

import httpx

from queue_agent.errors import ModelMissing, NodeFailed, RuntimeFault, RuntimeRejected, RuntimeUnavailable


def refusal(what: str, r: httpx.Response) -> Exception:
    """An answer >= 400 from any route but POST /prompt."""
    if r.status_code in (502, 503, 504):
        return RuntimeUnavailable(f"{what}: {r.status_code}")
    if r.status_code in (400, 404, 413):
        return RuntimeRejected(f"runtime refused {what} ({r.status_code}): {r.text[:200]}")
    return RuntimeFault(f"{what}: HTTP {r.status_code}: {r.text[:200]}")


def prompt_refusal(r: httpx.Response) -> Exception:
    """A 400 from POST /prompt: the graph's first node error, named by node id and type."""
    try:
        body = r.json()
    except ValueError:
        return RuntimeRejected(f"ComfyUI refused the workflow: {r.text[:200]}")
    error = body.get("error") if isinstance(body, dict) else None
    node_errors = body.get("node_errors") if isinstance(body, dict) else None
    if isinstance(node_errors, dict):
        for node_id, entry in sorted(node_errors.items(), key=lambda kv: node_order(kv[0])):
            class_type = entry.get("class_type", "?") if isinstance(entry, dict) else "?"
            for err in entry.get("errors", []) if isinstance(entry, dict) else []:
                if not isinstance(err, dict):
                    continue
                where = f"node {node_id} ({class_type})"
                text = f"{err.get('message', '')}: {err.get('details', '')}".strip(": ")
                input_name = str((err.get("extra_info") or {}).get("input_name", ""))
                if err.get("type") == "value_not_in_list" and input_name.endswith("ckpt_name"):
                    return ModelMissing(f"{where}: {text}")
                return RuntimeRejected(f"ComfyUI refused the workflow: {where}: {text}")
    if isinstance(error, dict):
        text = f"{error.get('message', '')} {error.get('details', '')}".strip()
        return RuntimeRejected(f"ComfyUI refused the workflow: {text}")
    return RuntimeRejected(f"ComfyUI refused the workflow: {str(error)[:200]}")


def node_failure(data: dict[str, Any]) -> Exception:
    node_id, node_type = data.get("node_id"), data.get("node_type")
    message = str(data.get("exception_message", ""))[:300]
    exception_type = str(data.get("exception_type", ""))
    if "OutOfMemory" in exception_type:
        return RuntimeFault(f"node {node_id} ({node_type}) ran out of memory: {message}")
    return NodeFailed(str(node_id), str(node_type), message)


def node_order(node_id: str) -> tuple[int, int | str]:
    return (0, int(node_id)) if node_id.isdigit() else (1, node_id)
