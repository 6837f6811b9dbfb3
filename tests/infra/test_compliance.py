"""cdk-nag (AwsSolutions) and cfn-lint on the synthesized app; stack outputs; `python -m infra.app`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from easel.config import load_config
from infra.app import build_app
from infra.constructs import compliance
from tests.conftest import EXAMPLE_CONFIG, ROOT, TWO_RUNTIMES_CONFIG
from tests.infra.conftest import Synth, missing_context

pytestmark = [pytest.mark.infra, pytest.mark.slow]

# Every module that acknowledges findings (they import `acknowledge` by name).
ACKNOWLEDGING_MODULES = [
    "infra.constructs.api",
    "infra.constructs.cluster",
    "infra.constructs.functions",
    "infra.constructs.messaging",
    "infra.constructs.observability",
    "infra.constructs.storage",
    "infra.constructs.webhooks",
    "infra.stacks.core",
    "infra.stacks.compute",
]


def test_cdk_nag_and_cfn_validation_report_no_violations(synth: Synth) -> None:
    assert synth.report["pluginReports"] == [] or all(
        r["conclusion"] == "success" and not r["violations"] for r in synth.report["pluginReports"]
    )


def test_every_acknowledgment_matches_a_real_finding_and_has_a_reason(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Synth with acknowledgments recorded but not applied: cdk-nag must then report exactly those findings.

    This proves that cdk-nag runs, that nothing passes unacknowledged, and that no acknowledgment is stale;
    and every reason is a sentence of more than ten words.
    """
    recorded: list[tuple[str, str, str]] = []

    def record(scope: Any, rule_ids: Any, reason: str) -> None:
        assert len(reason.split()) > 10, f"{scope.node.path}: {reason!r}"
        for rule_id in [rule_ids] if isinstance(rule_ids, str) else rule_ids:
            recorded.append((scope.node.path, rule_id, reason))

    for module in ACKNOWLEDGING_MODULES:
        monkeypatch.setattr(f"{module}.acknowledge", record)
    app = build_app(load_config(EXAMPLE_CONFIG), outdir=tmp_path, nag=True)
    with pytest.raises(RuntimeError, match="ValidationFailed"):
        app.synth()

    report = json.loads((tmp_path / "validation-report.json").read_text())
    findings = {
        (v["ruleName"], c["constructPath"])
        for plugin in report["pluginReports"]
        for v in plugin["violations"]
        for c in v["violatingConstructs"]
    }
    plugins = {p["pluginName"] for p in report["pluginReports"] if p["violations"]}
    assert plugins == {"AwsSolutions"}
    assert {rule for rule, _ in findings} == {rule for _, rule, _ in recorded}
    for path, rule, _ in recorded:
        assert any(r == rule and (p == path or p.startswith(path + "/")) for r, p in findings), (path, rule)
    for rule, path in findings:
        assert any(r == rule and (path == p or path.startswith(p + "/")) for p, r, _ in recorded), (
            rule,
            path,
        )


def test_acknowledge_refuses_a_short_reason() -> None:
    import aws_cdk as cdk

    stack = cdk.Stack(cdk.App(), "S")
    with pytest.raises(ValueError, match="at least"):
        compliance.acknowledge(stack, "AwsSolutions-S1", "no logs needed")


def test_cfn_lint_finds_no_errors(example_synth: Synth, two_runtimes_synth: Synth) -> None:
    templates = [
        str(s.outdir / stack.template_file)
        for s in (example_synth, two_runtimes_synth)
        for stack in (s.core, s.compute)
    ]
    cfn_lint = Path(sys.executable).parent / "cfn-lint"
    proc = subprocess.run(
        [str(cfn_lint), "--format", "json", *templates],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    # Exit code 0: clean; 4: warnings only. Errors (2) or a crash fail the test.
    assert proc.returncode in (0, 4), proc.stdout + proc.stderr
    matches = json.loads(proc.stdout or "[]")
    assert [m for m in matches if m["Level"] == "Error"] == []


def test_stack_outputs_tell_the_user_what_to_do_next(example_synth: Synth) -> None:
    core = example_synth.template_json(example_synth.core)["Outputs"]
    for key in (
        "ApiEndpoint",
        "TasksTopicArn",
        "ResultsTopicArn",
        "AlarmsTopicArn",
        "ModelsBucketName",
        "OutputsBucketName",
        "TasksTableName",
        "SubscribeCommand",
        "SubmitCommand",
    ):
        assert key in core, key
    subscribe = _text(core["SubscribeCommand"]["Value"])
    assert subscribe.startswith("aws sns subscribe --region us-west-2 --topic-arn ")
    assert '"RawMessageDelivery":"true"' in subscribe
    submit = _text(core["SubmitCommand"]["Value"])
    assert submit.startswith("easel submit --endpoint https://")
    assert "--model sd15" in submit
    compute = example_synth.template_json(example_synth.compute)["Outputs"]
    assert compute["ClusterName"]["Value"] == {
        "Ref": next(k for k in example_synth.resources(example_synth.compute, "AWS::EKS::Cluster"))
    }
    assert _text(compute["KubeconfigCommand"]["Value"]).startswith(
        "aws eks update-kubeconfig --region us-west-2"
    )


def test_synth_with_an_explicit_account_needs_no_lookups(tmp_path: Path) -> None:
    """With env.account set CDK would look AZs up (credentials needed); the app must not."""
    config = load_config(EXAMPLE_CONFIG)
    config = config.model_copy(update={"env": config.env.model_copy(update={"account": "123456789012"})})
    build_app(config, outdir=tmp_path, nag=True).synth()
    assert not missing_context(tmp_path)
    template = json.loads((tmp_path / "easel.template.json").read_text())
    # The explicit account reaches the templates (ARNs), no lookup needed.
    assert "123456789012" in json.dumps(template)


def test_python_m_infra_app_writes_the_cloud_assembly(tmp_path: Path) -> None:
    """What `make synth` runs: both stacks' templates land in --out."""
    out = tmp_path / "cdk.out"
    proc = subprocess.run(
        [sys.executable, "-m", "infra.app", "--out", str(out), "--config", str(TWO_RUNTIMES_CONFIG)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (out / "easel2.template.json").is_file()
    assert (out / "easel2-compute.template.json").is_file()
    manifest = json.loads((out / "manifest.json").read_text())
    assert {"easel2", "easel2-compute"} <= set(manifest["artifacts"])


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    return "".join(p if isinstance(p, str) else "<token>" for p in value["Fn::Join"][1])
