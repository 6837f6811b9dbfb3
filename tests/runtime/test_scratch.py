"""The runtime's own scratch directory (private LoRAs when none is configured) is gone after shutdown."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from runtime_image.server.settings import RuntimeSettings


def test_the_private_lora_scratch_dir_is_removed_at_shutdown(make_server: Any, tiny_store: Path) -> None:
    server = make_server(tiny_store)
    scratch = server.runner.private.root
    (scratch / "acme").mkdir(parents=True, exist_ok=True)
    (scratch / "acme" / "mine.safetensors").write_bytes(b"tenant adapter")
    server.stop()  # uvicorn's lifespan shutdown: what SIGTERM does to `easel runtime serve`
    assert not scratch.exists()


def test_a_configured_private_lora_dir_is_kept(tiny_store: Path, tmp_path: Path) -> None:
    from runtime_image.server.runner import Runner

    kept = tmp_path / "private"
    runner = Runner(RuntimeSettings(models_dir=tiny_store, private_loras_dir=kept))
    kept.mkdir(parents=True, exist_ok=True)
    runner.close()
    assert kept.exists()
