"""The agent stays in small modules named for what they do (issue 10): none over 300 lines."""

from __future__ import annotations

from tests.conftest import ROOT

LIMIT = 300


def test_no_agent_module_is_over_300_lines() -> None:
    sizes = {
        str(path.relative_to(ROOT)): len(path.read_text(encoding="utf-8").splitlines())
        for path in (ROOT / "queue_agent").rglob("*.py")
    }
    assert len(sizes) > 20  # the package was found
    assert {name: n for name, n in sizes.items() if n > LIMIT} == {}
