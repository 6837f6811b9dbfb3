"""Output of every bench: a rich table on the terminal and, with ``--json FILE``, a JSON document.

The JSON carries the machine (cores, memory, load average when the results were written) so two result
files can be compared knowing where they were measured.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import platform
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table


def machine() -> dict[str, Any]:
    """Cores, memory and load of this machine, read from /proc where available."""
    info: dict[str, Any] = {
        "cores": os.cpu_count(),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    with contextlib.suppress(OSError):
        info["load_avg_1m"] = round(os.getloadavg()[0], 2)
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            key, _, rest = line.partition(":")
            if key in ("MemTotal", "MemAvailable"):
                info[f"{key.lower()}_gib"] = round(int(rest.split()[0]) / 2**20, 1)
    except OSError:
        pass
    return info


def fmt(value: float | None, digits: int = 2, suffix: str = "") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.{digits}f}{suffix}"


def verdict(ok: bool | None) -> str:
    if ok is None:
        return "-"
    return "[green]met[/green]" if ok else "[red]missed[/red]"


def make_table(title: str, columns: list[str]) -> Table:
    table = Table(title=title, title_justify="left")
    for i, col in enumerate(columns):
        table.add_column(col, justify="left" if i == 0 else "right")
    return table


def emit(tables: list[Table], document: dict[str, Any], json_path: Path | None, console: Console) -> None:
    for table in tables:
        console.print(table)
    if json_path is not None:
        doc = {"machine": machine(), **document}
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(_clean(doc), indent=2) + "\n")
        console.print(f"wrote {json_path}")


def _clean(value: Any) -> Any:
    """NaN is not JSON: turn it into null."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    return value
