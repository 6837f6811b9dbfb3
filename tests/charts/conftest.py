"""Chart test fixtures (defined in chart_helpers so the test modules can import the helpers by name)."""

from tests.charts.chart_helpers import crd_validators, helm, render

__all__ = ["crd_validators", "helm", "render"]
