"""The one JSON log format, the tracing setup (EASEL_TRACES, X-Ray ids, the JSONL span file) and the trace
waterfall that ``easel trace`` prints."""

from __future__ import annotations

import io
import json
import logging
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.trace import SpanKind, Status, StatusCode

from easel import logjson, tracing
from easel.traceview import read_spans, render, task_trace


def _logger(service: str = "svc") -> tuple[logging.Logger, io.StringIO]:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(logjson.JsonFormatter(service))
    logger = logging.getLogger(f"test.logjson.{service}")
    logger.handlers[:] = [handler]
    logger.propagate = False
    logger.setLevel(logging.INFO)
    return logger, out


def _lines(out: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.getvalue().splitlines()]


def test_log_lines_carry_service_bound_task_and_trace_ids_and_extras() -> None:
    logger, out = _logger("easel-agent")
    logger.info("outside")
    with logjson.log_context(task_id="t1", trace_id="a" * 32):
        logger.info("inside %s", "x", extra={"steps": 3})
        with logjson.log_context(task_id="t2", tenant=None):
            logger.info("nested")
    logger.info("after")
    first, inside, nested, after = _lines(out)
    assert first["service"] == "easel-agent" and first["msg"] == "outside" and "task_id" not in first
    assert inside == {
        "ts": inside["ts"],
        "level": "INFO",
        "service": "easel-agent",
        "logger": "test.logjson.easel-agent",
        "msg": "inside x",
        "task_id": "t1",
        "trace_id": "a" * 32,
        "steps": 3,
    }
    assert nested["task_id"] == "t2" and nested["trace_id"] == "a" * 32 and "tenant" not in nested
    assert "task_id" not in after


def test_trace_id_comes_from_the_hook_unless_the_line_has_one_and_exceptions_are_kept() -> None:
    logger, out = _logger()
    logjson.set_trace_id_hook(lambda: "b" * 32)
    try:
        logger.info("hooked")
        logger.info("explicit", extra={"trace_id": "c" * 32, "_aws": {"CloudWatchMetrics": []}})
        try:
            raise ValueError("boom")
        except ValueError:
            logger.exception("failed")
    finally:
        logjson.set_trace_id_hook(None)
    hooked, explicit, failed = _lines(out)
    assert hooked["trace_id"] == "b" * 32
    assert explicit["trace_id"] == "c" * 32 and explicit["_aws"] == {"CloudWatchMetrics": []}
    assert failed["level"] == "ERROR" and "ValueError: boom" in failed["exc"]


def test_trace_mode_names_the_variable_when_wrong() -> None:
    assert tracing.trace_mode({}) == "off"
    assert tracing.trace_mode({"EASEL_TRACES": "otlp"}) == "otlp"
    assert tracing.trace_mode({"EASEL_TRACES": "file:/x"}) == "file:/x"
    for bad in ("file:", "jaeger", "on"):
        with pytest.raises(ValueError, match="EASEL_TRACES"):
            tracing.trace_mode({"EASEL_TRACES": bad})
    assert tracing.make_provider("svc", {"EASEL_TRACES": "off"}) is None


def test_xray_header_becomes_a_w3c_parent_and_trace_id() -> None:
    header = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1"
    assert tracing.xray_traceparent(header) == "00-5759e988bd862e3fe1be46a994272793-53995c3f42cd8ad8-01"
    assert tracing.xray_trace_id(header) == "5759e988bd862e3fe1be46a994272793"
    unsampled = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=0"
    assert tracing.xray_traceparent(unsampled).endswith("-00")  # type: ignore[union-attr]
    assert tracing.xray_traceparent("Root=1-5759e988-bd862e3fe1be46a994272793") is None  # no parent
    assert tracing.xray_trace_id("garbage") is None


def _write_spans(directory: Path) -> tuple[str, str]:
    """A small task trace through a real SDK provider in file mode: api -> task -> (generate -> denoise)."""
    provider = tracing.make_provider("easel-test", {"EASEL_TRACES": f"file:{directory}"})
    assert provider is not None
    tracer = provider.get_tracer("test")
    with tracer.start_as_current_span("POST /v1/tasks", kind=SpanKind.SERVER) as api:
        api.set_attribute("easel.task_id", "t1")
        with tracer.start_as_current_span("easel.task") as task:
            task.set_attribute("easel.task_id", "t1")
            task.set_attribute("easel.outcome", "failed")
            task.add_event("interrupt", {"why": "canceled"})
            with tracer.start_as_current_span("generate") as generate:
                generate.set_attribute("easel.steps", 3)
                with tracer.start_as_current_span("denoise"):
                    pass
            task.set_status(Status(StatusCode.ERROR, "runtime refused"))
    with tracer.start_as_current_span("GET /v1/tasks/t2") as other:
        other.set_attribute("easel.task_id", "t2")
    provider.shutdown()
    return format(api.get_span_context().trace_id, "032x"), format(other.get_span_context().trace_id, "032x")


def test_file_exporter_writes_one_json_line_per_span_with_ids_status_and_events(tmp_path: Path) -> None:
    trace_id, _ = _write_spans(tmp_path)
    (path,) = tmp_path.glob("easel-test-*.jsonl")
    records = [json.loads(line) for line in path.read_text().splitlines()]
    by_name = {r["name"]: r for r in records}
    assert set(by_name) == {"POST /v1/tasks", "easel.task", "generate", "denoise", "GET /v1/tasks/t2"}
    task = by_name["easel.task"]
    assert task["trace_id"] == trace_id and task["parent_id"] == by_name["POST /v1/tasks"]["span_id"]
    assert task["status"] == "ERROR" and task["status_message"] == "runtime refused"
    assert task["events"][0]["name"] == "interrupt" and task["events"][0]["attributes"] == {"why": "canceled"}
    assert task["service"] == "easel-test" and by_name["POST /v1/tasks"]["kind"] == "SERVER"
    assert by_name["POST /v1/tasks"]["parent_id"] is None
    assert all(r["end"] >= r["start"] for r in records)


def test_task_trace_is_the_tasks_traces_parent_before_child(tmp_path: Path) -> None:
    _write_spans(tmp_path)
    (tmp_path / "torn.jsonl").write_text('{"trace_id": "x"')  # a process died mid-line: skipped
    stages = task_trace(read_spans(tmp_path), "t1")
    assert [(s.name, s.depth) for s in stages] == [
        ("POST /v1/tasks", 0),
        ("easel.task", 1),
        ("generate", 2),
        ("denoise", 3),
    ]
    assert stages[0].offset == 0.0 and all(s.offset >= 0 for s in stages)
    assert [s.error for s in stages] == [False, True, False, False]
    assert stages[1].events[0]["offset_seconds"] >= stages[1].offset
    assert task_trace(read_spans(tmp_path), "missing") == []
    # Another task's trace (a GET of t2) never leaks into t1's waterfall.
    assert [s.name for s in task_trace(read_spans(tmp_path), "t2")] == ["GET /v1/tasks/t2"]


def test_render_shows_offsets_durations_attributes_and_errors_in_red(tmp_path: Path) -> None:
    from rich.console import Console

    _write_spans(tmp_path)
    stages = task_trace(read_spans(tmp_path), "t1")
    console = Console(width=200, force_terminal=True, color_system="standard", record=True)
    console.print(render(stages, "t1"))
    text = console.export_text(styles=False, clear=False)
    assert "task t1" in text
    for name in ("POST /v1/tasks", "easel.task", "generate", "denoise"):
        assert name in text
    assert "outcome=failed" in text and "interrupt" in text and "steps=3" in text
    assert "error=runtime refused" in text
    styled = console.export_text(styles=True)
    red_lines = [line for line in styled.splitlines() if "\x1b[31m" in line]
    assert any("easel.task" in line for line in red_lines)
    assert not any("denoise" in line for line in red_lines)


def test_span_file_has_each_span_when_it_ends_and_closes_on_shutdown(tmp_path: Path) -> None:
    provider = tracing.make_provider("svc", {"EASEL_TRACES": f"file:{tmp_path}"})
    assert provider is not None
    tracer = provider.get_tracer("test")
    assert list(tmp_path.iterdir()) == []  # nothing is opened before the first span ends
    with tracer.start_as_current_span("outer"):
        with tracer.start_as_current_span("inner"):
            pass
        (path,) = tmp_path.iterdir()
        # On disk the moment it ended, while the process (and its open file) lives on.
        assert [json.loads(line)["name"] for line in path.read_text().splitlines()] == ["inner"]
    assert [json.loads(line)["name"] for line in path.read_text().splitlines()] == ["inner", "outer"]
    provider.shutdown()
    exporter = provider._active_span_processor._span_processors[0].span_exporter  # type: ignore[attr-defined]
    assert exporter._file is None  # closed
