"""The runtime imports nothing of the repository, so it keeps its own copies of a few core patterns; these
tests prove each copy still agrees with the core's definition."""

from __future__ import annotations

from easel.config import TENANT_ID
from easel.contract.tasks import NAME_PATTERN
from runtime_image.server import private, schemas


def test_private_lora_tenant_and_name_patterns_are_the_cores() -> None:
    assert private.TENANT_PATTERN.pattern == TENANT_ID
    assert private.NAME_PATTERN.pattern == NAME_PATTERN


def test_training_output_name_pattern_is_the_cores() -> None:
    field = schemas.TrainLoraRequest.model_fields["output_name"]
    patterns = [getattr(m, "pattern", None) for m in field.metadata]
    assert NAME_PATTERN in patterns, patterns


def test_log_format_and_tracing_setup_are_identical_copies() -> None:
    """One JSON log format and one tracing setup for every process: the runtime's files are the core's."""
    from tests.conftest import ROOT

    for name in ("logjson.py", "tracing.py"):
        core = (ROOT / "easel" / name).read_bytes()
        runtime = (ROOT / "runtime_image" / "server" / name).read_bytes()
        assert runtime == core, f"runtime_image/server/{name} differs from easel/{name}: copy it again"
