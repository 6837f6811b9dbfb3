"""The model store: a directory (an S3 or EFS mount in production) of models and LoRA adapters.

Layout::

    <models_dir>/<name>/model_index.json      a diffusers folder; <name> may contain '/' (nested folders)
    <models_dir>/<name>.safetensors            a single-file checkpoint (original SD key layout; see
                                               original_layout.py to export a diffusers folder to one)
    <models_dir>/configs/<name>/ or configs/default/
                                               diffusers configs used to load single-file checkpoints offline
    <models_dir>/loras/<name>.safetensors      LoRA adapters (public: any tenant may name them)
    <models_dir>/controlnet/<name>/config.json ControlNet models (diffusers folders), for SD 1.x or SDXL
    <models_dir>/upscalers/<name>.safetensors  ESRGAN-family upscalers (also .pth, tensors only)

Private adapters (``<tenant>/<name>``) live in a separate writable directory, see :mod:`private`.

A model's name is its path relative to the store without the ``.safetensors`` suffix: the same string as
``sd_model_checkpoint``, ``/sdapi/v1/sd-models`` titles and the config's model ``path``.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from runtime_image.server.arch import Arch, detect_folder, detect_single_file
from runtime_image.server.errors import LoraNotFound, ModelNotFound, RequestError
from runtime_image.server.private import PrivateLoras

LORAS_DIR = "loras"
CONFIGS_DIR = "configs"
CONTROLNET_DIR = "controlnet"
UPSCALERS_DIR = "upscalers"
_RESERVED = {LORAS_DIR, CONFIGS_DIR, CONTROLNET_DIR, UPSCALERS_DIR}
UPSCALER_SUFFIXES = (".safetensors", ".pth")
# A1111 titles look like "name.safetensors [abcdef1234]": clients send them back as sd_model_checkpoint.
_A1111_HASH_SUFFIX = re.compile(r"\s*\[[0-9a-fA-F]{6,64}\]$")
# Stop walking below this depth: a mounted bucket can be deep and every listing is a network call.
MAX_DEPTH = 4


class ModelFormat(StrEnum):
    DIFFUSERS = "diffusers"
    SINGLE_FILE = "single-file"


@dataclass(frozen=True)
class ModelEntry:
    name: str
    path: Path
    format: ModelFormat

    def fingerprint(self) -> tuple[int, int]:
        """Changes when the files are replaced, so a cached pipeline of old weights is not reused."""
        target = self.path / "model_index.json" if self.format is ModelFormat.DIFFUSERS else self.path
        st = target.stat()
        return st.st_mtime_ns, st.st_size

    def arch(self) -> Arch:
        if self.format is ModelFormat.DIFFUSERS:
            return detect_folder(self.path, self.name)
        return detect_single_file(self.path, self.name)


@dataclass(frozen=True)
class FileEntry:
    """A ControlNet folder or an upscaler file; the fingerprint is its config or weights file."""

    name: str
    path: Path

    def fingerprint(self) -> tuple[int, int]:
        target = self.path / "config.json" if self.path.is_dir() else self.path
        st = target.stat()
        return st.st_mtime_ns, st.st_size


@dataclass(frozen=True)
class LoraEntry:
    name: str
    path: Path
    private: bool = False

    @property
    def key(self) -> str:
        """Identity in the adapter cache: a private ``acme/x`` never shares a slot with a public one."""
        return f"private:{self.name}" if self.private else self.name

    def fingerprint(self) -> tuple[int, int]:
        st = self.path.stat()
        return st.st_mtime_ns, st.st_size


class ModelStore:
    def __init__(self, models_dir: Path, private: PrivateLoras | None = None) -> None:
        self.root = Path(models_dir)
        self.private = private

    def models(self) -> list[ModelEntry]:
        found: list[ModelEntry] = []
        if not self.root.is_dir():
            return found
        for dirpath, dirnames, filenames in os.walk(self.root):
            here = Path(dirpath)
            rel = here.relative_to(self.root)
            if rel != Path(".") and "model_index.json" in filenames:
                found.append(ModelEntry(rel.as_posix(), here, ModelFormat.DIFFUSERS))
                dirnames.clear()
                continue
            for f in filenames:
                if f.endswith(".safetensors") and not f.startswith("."):
                    name = (rel / f.removesuffix(".safetensors")).as_posix()
                    found.append(ModelEntry(name, here / f, ModelFormat.SINGLE_FILE))
            depth = len(rel.parts) if rel != Path(".") else 0
            dirnames[:] = sorted(
                d
                for d in dirnames
                if not d.startswith(".") and depth < MAX_DEPTH and not (depth == 0 and d in _RESERVED)
            )
        return sorted(found, key=lambda e: e.name)

    def model(self, name: str) -> ModelEntry:
        """Resolve a model name (also accepting A1111 titles: ``name.safetensors [hash]``)."""
        clean = _A1111_HASH_SUFFIX.sub("", name.strip()).removesuffix(".safetensors").removesuffix(".ckpt")
        _check_relative("sd_model_checkpoint", name, clean)
        folder = self.root / clean
        if (folder / "model_index.json").is_file() and clean.split("/")[0] not in _RESERVED:
            return ModelEntry(clean, folder, ModelFormat.DIFFUSERS)
        single = self.root / f"{clean}.safetensors"
        if single.is_file() and clean.split("/")[0] not in _RESERVED:
            return ModelEntry(clean, single, ModelFormat.SINGLE_FILE)
        raise ModelNotFound(name, [e.name for e in self.models()])

    def loras(self) -> list[LoraEntry]:
        folder = self.root / LORAS_DIR
        if not folder.is_dir():
            return []
        return sorted(
            (LoraEntry(p.relative_to(folder).as_posix().removesuffix(".safetensors"), p)
             for p in folder.rglob("*.safetensors")),
            key=lambda e: e.name,
        )  # fmt: skip

    def lora(self, name: str, *, allow_private: bool = False) -> LoraEntry:
        """A public adapter; with ``allow_private`` a scoped ``<tenant>/<name>`` private one first."""
        if allow_private and self.private is not None:
            found = self.private.find(name)
            if found is not None:
                return LoraEntry(name, found, private=True)
        _check_relative("loras.name", name, name)
        path = self.root / LORAS_DIR / f"{name}.safetensors"
        if not path.is_file():
            raise LoraNotFound(name, [e.name for e in self.loras()])
        return LoraEntry(name, path)

    def controlnets(self) -> list[FileEntry]:
        folder = self.root / CONTROLNET_DIR
        if not folder.is_dir():
            return []
        return sorted(
            (
                FileEntry(p.parent.relative_to(folder).as_posix(), p.parent)
                for p in folder.rglob("config.json")
            ),
            key=lambda e: e.name,
        )

    def controlnet(self, name: str, field: str) -> FileEntry:
        """A ControlNet by name; A1111 clients send ``name [hash]``: the hash is ignored, as for models."""
        clean = _A1111_HASH_SUFFIX.sub("", name.strip())
        _check_relative(field, name, clean)
        folder = self.root / CONTROLNET_DIR / clean
        if not (folder / "config.json").is_file():
            known = ", ".join(e.name for e in self.controlnets()) or "none"
            raise RequestError(field, name, f"no such ControlNet model; available: {known}")
        return FileEntry(clean, folder)

    def upscalers(self) -> list[FileEntry]:
        folder = self.root / UPSCALERS_DIR
        if not folder.is_dir():
            return []
        return sorted(
            (FileEntry(p.relative_to(folder).as_posix().rsplit(".", 1)[0], p)
             for p in folder.rglob("*") if p.suffix in UPSCALER_SUFFIXES and p.is_file()),
            key=lambda e: e.name,
        )  # fmt: skip

    def single_file_config(self, name: str) -> Path | None:
        """The diffusers config folder for a single-file checkpoint: its own, else the store's default."""
        for candidate in (self.root / CONFIGS_DIR / name, self.root / CONFIGS_DIR / "default"):
            if (candidate / "model_index.json").is_file():
                return candidate
        return None


def _check_relative(field: str, raw: str, name: str) -> None:
    parts = Path(name).parts
    if not name or Path(name).is_absolute() or ".." in parts or "\\" in name:
        raise RequestError(field, raw, "must be a name relative to the model store")
