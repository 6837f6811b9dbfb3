"""The deployment as AWS and Kubernetes would see it: synthesized templates plus the rendered releases.

The audit tests (``test_deployment_audit.py``) apply the documented rules of the components a deployment
depends on to this model. Intrinsics become canonical placeholders so that a value in the rendered chart
(``<easel-compute:Workloadssd15Role009C5C6F.Arn>``) names the same resource as the IAM policy or pod identity
association that refers to it, across both stacks (``Fn::GetStackOutput`` is followed to the producing
stack's output).
"""

from __future__ import annotations

import fnmatch
import json
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tests.charts.chart_helpers import CHART
from tests.infra.conftest import Synth

HELM_CHART_TYPE = "Custom::AWSCDK-EKS-HelmChart"


@dataclass
class Statement:
    principal: str  # canonical role reference, e.g. "<easel-compute:Role123.Arn>" or a service principal
    actions: list[str]
    resources: list[str]
    conditions: dict[str, Any]


@dataclass
class Deployment:
    """Both templates, a resolver for their intrinsics, and the rendered runtime releases."""

    synth: Synth
    templates: dict[str, dict[str, Any]] = field(default_factory=dict)

    @classmethod
    def of(cls, synth: Synth) -> Deployment:
        d = cls(synth)
        for stack in (synth.core, synth.compute):
            d.templates[stack.stack_name] = synth.template_json(stack)
        return d

    # -- intrinsics -------------------------------------------------------------------------------------
    def canon(self, value: Any, stack: str) -> str:
        """``value`` as text; references become ``<stack:LogicalId>`` / ``<stack:LogicalId.Attr>``."""
        if isinstance(value, str):
            return value
        if isinstance(value, (int, float, bool)):
            return json.dumps(value)
        if isinstance(value, dict) and len(value) == 1:
            ((fn, arg),) = value.items()
            if fn == "Ref":
                if arg == "AWS::Partition":
                    return "aws"  # one partition is enough to compare ARNs
                return f"<{arg}>" if arg.startswith("AWS::") else f"<{stack}:{arg}>"
            if fn == "Fn::GetAtt":
                return f"<{stack}:{arg[0]}.{arg[1]}>"
            if fn == "Fn::Join":
                return str(arg[0]).join(self.canon(v, stack) for v in arg[1])
            if fn == "Fn::GetStackOutput":
                producer = arg["StackName"]
                return self.canon(self.templates[producer]["Outputs"][arg["OutputName"]]["Value"], producer)
            if fn == "Fn::ImportValue":
                for name, tpl in self.templates.items():
                    for out in tpl.get("Outputs", {}).values():
                        if out.get("Export", {}).get("Name") == arg:
                            return self.canon(out["Value"], name)
            if fn == "Fn::Sub":
                return arg if isinstance(arg, str) else str(arg[0])
        return json.dumps(value, sort_keys=True)

    def resources(self, type_: str) -> Iterator[tuple[str, str, dict[str, Any]]]:
        """(stack, logical id, resource) of every resource of ``type_`` in both stacks."""
        for stack, tpl in self.templates.items():
            for logical_id, res in tpl["Resources"].items():
                if res["Type"] == type_:
                    yield stack, logical_id, res

    def ref(self, stack: str, logical_id: str, attr: str | None = None) -> str:
        return f"<{stack}:{logical_id}.{attr}>" if attr else f"<{stack}:{logical_id}>"

    # -- IAM ---------------------------------------------------------------------------------------------
    def statements(self) -> list[Statement]:
        """Every Allow statement of every identity policy, per role it is attached to (canonical role ARN)."""
        out: list[Statement] = []

        def add(stack: str, roles: list[Any], doc: dict[str, Any]) -> None:
            for st in doc.get("Statement", []):
                if st.get("Effect") != "Allow":
                    continue
                actions = st["Action"] if isinstance(st["Action"], list) else [st["Action"]]
                res = st.get("Resource", [])
                res = res if isinstance(res, list) else [res]
                for role in roles:
                    out.append(
                        Statement(
                            principal=self.role_arn(stack, role),
                            actions=actions,
                            resources=[self.canon(r, stack) for r in res],
                            conditions=st.get("Condition", {}),
                        )
                    )

        for stack, _, res in self.resources("AWS::IAM::Policy"):
            add(stack, res["Properties"].get("Roles", []), res["Properties"]["PolicyDocument"])
        for stack, _, res in self.resources("AWS::IAM::ManagedPolicy"):
            add(stack, res["Properties"].get("Roles", []), res["Properties"]["PolicyDocument"])
        for stack, logical_id, res in self.resources("AWS::IAM::Role"):
            for pol in res["Properties"].get("Policies", []):
                add(stack, [{"Ref": logical_id}], pol["PolicyDocument"])
        return out

    def role_arn(self, stack: str, role: Any) -> str:
        """A role given as ``{"Ref": id}`` (how policies name roles) -> ``<stack:id.Arn>``."""
        if isinstance(role, dict) and "Ref" in role:
            return self.ref(stack, role["Ref"], "Arn")
        return self.canon(role, stack)

    def allows(self, principal: str, action: str, resource: str) -> bool:
        """Whether an identity policy of ``principal`` allows ``action`` on ``resource`` (wildcards honoured)."""
        for st in self.statements():
            if st.principal != principal:
                continue
            if not any(fnmatch.fnmatchcase(action, a) for a in st.actions):
                continue
            if any(r == "*" or fnmatch.fnmatchcase(resource, r) for r in st.resources):
                return True
        return False

    def trust_principals(self, role_arn: str) -> list[str]:
        """The principals (service names, canonical ARNs) a role's trust policy allows to assume it."""
        stack, logical_id = role_arn.strip("<>").removesuffix(".Arn").split(":", 1)
        doc = self.templates[stack]["Resources"][logical_id]["Properties"]["AssumeRolePolicyDocument"]
        found: list[str] = []
        for st in doc["Statement"]:
            principal = st.get("Principal", {})
            for kind in ("Service", "AWS"):
                values = principal.get(kind, [])
                for v in values if isinstance(values, list) else [values]:
                    found.append(self.canon(v, stack))
        return found

    def role_by_name(self, name: str) -> str | None:
        """A role referred to by name (``<stack:Role>`` as the chart gets it) -> its canonical ARN."""
        if name.startswith("<") and name.endswith(">"):
            return name[:-1] + ".Arn>"
        return None

    # -- EKS ---------------------------------------------------------------------------------------------
    def pod_identity(self) -> dict[tuple[str, str], str]:
        """(namespace, service account) -> canonical role ARN of every EKS Pod Identity association."""
        found: dict[tuple[str, str], str] = {}
        for stack, _, res in self.resources("AWS::EKS::PodIdentityAssociation"):
            p = res["Properties"]
            found[(p["Namespace"], p["ServiceAccount"])] = self.canon(p["RoleArn"], stack)
        return found

    def has_oidc_provider(self) -> bool:
        """IRSA needs an IAM OIDC provider for the cluster's issuer; without one no web identity works."""
        types = ("AWS::IAM::OIDCProvider", "Custom::AWSCDKOpenIdConnectProvider")
        return any(True for t in types for _ in self.resources(t))

    # -- the runtime releases -------------------------------------------------------------------------------
    def releases(self) -> dict[str, tuple[str, dict[str, Any]]]:
        """release name -> (logical id, resource) of every HelmChart custom resource."""
        return {
            res["Properties"]["Release"]: (logical_id, res)
            for _, logical_id, res in self.resources(HELM_CHART_TYPE)
        }

    def release_values(self, release: str) -> dict[str, Any]:
        _, res = self.releases()[release]
        stack = self.synth.compute.stack_name
        values: dict[str, Any] = json.loads(self.canon(res["Properties"].get("Values", "{}"), stack))
        return values

    def render(self, helm: str, release: str, tmp: Path) -> list[dict[str, Any]]:
        """``helm template`` of the runtime chart with exactly the values the CDK passes to ``release``."""
        _, res = self.releases()[release]
        values = tmp / f"{release}.values.json"
        values.write_text(json.dumps(self.release_values(release)))
        namespace = res["Properties"].get("Namespace", "default")
        proc = subprocess.run(
            [helm, "template", release, str(CHART), "--namespace", namespace, "-f", str(values)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert proc.returncode == 0, f"helm template {release} failed:\n{proc.stderr}"
        return [d for d in yaml.safe_load_all(proc.stdout) if d]

    def runtime_releases(self) -> list[str]:
        return [self.synth.names.release(r.name) for r in self.synth.config.runtimes]

    def depends_on(self, stack: str, logical_id: str) -> set[str]:
        """Every resource ``logical_id`` waits for, transitively (DependsOn and references)."""
        resources = self.templates[stack]["Resources"]
        seen: set[str] = set()
        todo = [logical_id]
        while todo:
            current = todo.pop()
            res = resources[current]
            deps = res.get("DependsOn", [])
            deps = [deps] if isinstance(deps, str) else list(deps)
            deps += _references(res.get("Properties", {}))
            for dep in deps:
                if dep in resources and dep not in seen:
                    seen.add(dep)
                    todo.append(dep)
        return seen


def _references(value: Any) -> list[str]:
    if isinstance(value, dict):
        if "Ref" in value and isinstance(value["Ref"], str):
            return [value["Ref"]]
        if "Fn::GetAtt" in value:
            return [value["Fn::GetAtt"][0]]
        return [r for v in value.values() for r in _references(v)]
    if isinstance(value, list):
        return [r for v in value for r in _references(v)]
    return []


def pod_templates(docs: list[dict[str, Any]]) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    """(workload object, pod template) of every Deployment, Job and CronJob in a rendering."""
    for doc in docs:
        if doc["kind"] in ("Deployment", "Job", "StatefulSet", "DaemonSet"):
            yield doc, doc["spec"]["template"]
        elif doc["kind"] == "CronJob":
            yield doc, doc["spec"]["jobTemplate"]["spec"]["template"]


def env_names(container: dict[str, Any]) -> set[str]:
    return {e["name"] for e in container.get("env", [])}
