"""Stage the Lambdas' code asset (API and webhooks share it) at synth time, without Docker.

The asset is a plain directory that CDK zips:

    lambdas/**.py            the handlers (``lambdas.api.app.handler``, ``lambdas.webhooks.app.handler``)
    easel/**.py              the shared core (contract, config model, store); ``easel/cli`` is left
                             out: it needs typer/rich, which the Lambda never imports
    yaml/, pydantic_settings/, dotenv/, typing_inspection/
                             pure-Python dependencies of ``easel`` that the managed Powertools layer does
                             not ship, vendored from the local environment (``.py`` files only: PyYAML's
                             C extension is x86_64 and would not load on arm64, and PyYAML falls back to
                             its pure-Python implementation without it)
    httpx/, httpcore/, h11/, idna/, certifi/
                             the webhooks Lambda's HTTP client (pure Python; certifi keeps its
                             ``cacert.pem``, which httpx verifies TLS against)
    easel_config.json        the validated config, rendered as JSON (``EASEL_CONFIG_FILE``)

pydantic (v2), aws-lambda-powertools and the X-Ray SDK come from the AWS-managed Powertools layer; boto3
comes from the Lambda runtime. Staging copies only ``.py`` files (and ``VENDORED_DATA``) in sorted order, so
the same sources give the same asset hash.
"""

from __future__ import annotations

import importlib
import json
import shutil
from pathlib import Path

from easel.config import EaselConfig

REPO_ROOT = Path(__file__).resolve().parent.parent
CONFIG_FILE = "easel_config.json"
HANDLER = "lambdas.api.app.handler"
# (package, subpackages to leave out)
FIRST_PARTY: tuple[tuple[str, tuple[str, ...]], ...] = (("easel", ("cli",)), ("lambdas", ()))
VENDORED: tuple[str, ...] = (
    "yaml",
    "pydantic_settings",
    "dotenv",
    "typing_inspection",
    "httpx",
    "httpcore",
    "h11",
    "idna",
    "certifi",
)
# Non-Python files a vendored package needs at run time (package -> file names in its directory).
VENDORED_DATA: dict[str, tuple[str, ...]] = {"certifi": ("cacert.pem",)}


def stage_api_bundle(config: EaselConfig, dest: Path, *, repo_root: Path = REPO_ROOT) -> Path:
    """Write the API Lambda's code into ``dest`` (emptied first) and return ``dest``."""
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    for package, excluded in FIRST_PARTY:
        _copy_py_tree(repo_root / package, dest / package, excluded=excluded)
    for module in VENDORED:
        _copy_py_tree(_package_dir(module), dest / module)
        for name in VENDORED_DATA.get(module, ()):
            shutil.copyfile(_package_dir(module) / name, dest / module / name)
    config_json = json.dumps(config.model_dump(mode="json"), indent=2, sort_keys=True)
    (dest / CONFIG_FILE).write_text(config_json + "\n")
    return dest


def _package_dir(module: str) -> Path:
    imported = importlib.import_module(module)
    if imported.__file__ is None:
        raise FileNotFoundError(f"vendored package '{module}' has no __file__ (namespace package?)")
    return Path(imported.__file__).resolve().parent


def _copy_py_tree(src: Path, dst: Path, *, excluded: tuple[str, ...] = ()) -> None:
    if not (src / "__init__.py").is_file():
        raise FileNotFoundError(f"{src} is not a Python package (no __init__.py)")
    for path in sorted(src.rglob("*.py")):
        rel = path.relative_to(src)
        if rel.parts[0] in excluded or "__pycache__" in rel.parts:
            continue
        target = dst / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)
