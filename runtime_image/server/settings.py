"""Runtime settings: built once by the CLI (flags, or their EASEL_* environment defaults) or by tests."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from runtime_image.server.device import DtypePreference

# Keep half the host's memory for everything else (the agent, decoding, the OS page cache of the store).
CACHE_FRACTION_OF_HOST = 0.5


def host_memory_bytes() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 8 * 1024**3


def default_cache_bytes() -> int:
    return int(host_memory_bytes() * CACHE_FRACTION_OF_HOST)


@dataclass(frozen=True)
class RuntimeSettings:
    models_dir: Path
    host: str = "127.0.0.1"
    port: int = 8080
    # Loaded before /health turns ready; without it the first sd_model_checkpoint (or override) loads one.
    preload_model: str | None = None
    cache_max_bytes: int = field(default_factory=default_cache_bytes)
    torch_compile: bool = False
    dtype: DtypePreference = DtypePreference.AUTO
    # Requests allowed to wait behind the running one; beyond that the server answers 503 busy.
    max_waiting: int = 4
    max_resident_loras: int = 8
    # CPU only: intra-op threads for torch (None: torch's default, one per core). Several processes sharing
    # a laptop, or a tiny model whose ops are too small to split, run faster with fewer.
    cpu_threads: int | None = None
    # Writable directory of tenant-scoped private LoRAs (PUT /easel/v1/loras/...); None: a fresh temp dir.
    private_loras_dir: Path | None = None
    # Largest private LoRA upload accepted (413 beyond).
    max_lora_upload_bytes: int = 512 * 1024**2

    def __post_init__(self) -> None:
        if self.max_lora_upload_bytes <= 0:
            raise ValueError(f"max_lora_upload_bytes={self.max_lora_upload_bytes}: must be > 0")
        if self.cache_max_bytes <= 0:
            raise ValueError(f"cache_max_bytes={self.cache_max_bytes}: must be > 0")
        if self.max_waiting < 0:
            raise ValueError(f"max_waiting={self.max_waiting}: must be >= 0")
        if self.cpu_threads is not None and self.cpu_threads < 1:
            raise ValueError(f"cpu_threads={self.cpu_threads}: must be >= 1")
        if not 1 <= self.port <= 65535 and self.port != 0:
            raise ValueError(f"port={self.port}: must be 0..65535")
