"""``easel bench agent``'s console tables: every column has a header, and each rendered row is as wide as
the header (a cell without a header column shifted every column after it by one)."""

from __future__ import annotations

import re

from rich.console import Console

from bench.agent import AgentRun, tables


def _runs() -> list[AgentRun]:
    runs = []
    for hold in (100.0, 1500.0):
        for agent, busy in (("easel", 0.97), ("baseline", 0.71)):
            runs.append(
                AgentRun(
                    agent=agent, hold_ms=hold, tasks=36, completed=36, window_s=5.0, busy=busy,
                    tasks_per_s=7.0, overhead_median_ms=3.0, overhead_p95_ms=9.0, overhead_mean_ms=4.0,
                    busy_steady=busy + 0.01,
                )
            )  # fmt: skip
    return runs


def _cells(line: str) -> list[str]:
    return [c.strip() for c in re.split(r"[│┃]", line)[1:-1]]


def test_every_column_has_a_header_and_rows_match_its_width() -> None:
    for table in tables(_runs()):
        assert all(str(col.header).strip() for col in table.columns), [c.header for c in table.columns]
        console = Console(width=400, record=True, color_system=None)
        console.print(table)
        lines = [ln for ln in console.export_text().splitlines() if "│" in ln or "┃" in ln]
        header, rows = lines[0], lines[1:]
        assert rows
        assert all(len(_cells(r)) == len(_cells(header)) for r in rows)


def test_busy_steady_sits_under_its_header() -> None:
    console = Console(width=400, record=True, color_system=None)
    console.print(tables(_runs())[0])
    lines = [ln for ln in console.export_text().splitlines() if "│" in ln or "┃" in ln]
    header = _cells(lines[0])
    easel_100 = next(_cells(ln) for ln in lines if " easel " in ln and _cells(ln)[0] == "100")
    row = dict(zip(header, easel_100, strict=True))
    assert row["busy"] == "0.970" and row["busy steady"] == "0.980"
    assert row["tasks/s"] == "7.00" and row["done"] == "36/36"
