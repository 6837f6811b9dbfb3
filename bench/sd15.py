"""An SD 1.5-size checkpoint with random weights, for the model-load bench. Nothing comes from the hub.

The UNet, VAE and text-encoder configs below are those of Stable Diffusion 1.5 (``unet/config.json``,
``vae/config.json``, ``text_encoder/config.json`` of the v1-5 release, written here as dicts), so the
tensors have the real shapes and sizes (about 1.07 G parameters, 4.3 GB in float32: the dtype the CPU runtime
loads, so the file bytes are exactly what the loader reads). The tokenizer and scheduler come from the
runtime's tiny-model builder (a small generated vocabulary: token ids stay inside the real 49408 embedding).
Generated on first use into ``<models_dir>/<name>`` and reused afterwards.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

SD15_UNET: dict[str, Any] = {
    "act_fn": "silu",
    "attention_head_dim": 8,
    "block_out_channels": [320, 640, 1280, 1280],
    "center_input_sample": False,
    "cross_attention_dim": 768,
    "down_block_types": [
        "CrossAttnDownBlock2D",
        "CrossAttnDownBlock2D",
        "CrossAttnDownBlock2D",
        "DownBlock2D",
    ],
    "downsample_padding": 1,
    "flip_sin_to_cos": True,
    "freq_shift": 0,
    "in_channels": 4,
    "layers_per_block": 2,
    "mid_block_scale_factor": 1,
    "norm_eps": 1e-05,
    "norm_num_groups": 32,
    "out_channels": 4,
    "sample_size": 64,
    "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
}
SD15_VAE: dict[str, Any] = {
    "act_fn": "silu",
    "block_out_channels": [128, 256, 512, 512],
    "down_block_types": ["DownEncoderBlock2D"] * 4,
    "in_channels": 3,
    "latent_channels": 4,
    "layers_per_block": 2,
    "norm_num_groups": 32,
    "out_channels": 3,
    "sample_size": 512,
    "up_block_types": ["UpDecoderBlock2D"] * 4,
}
SD15_TEXT_ENCODER: dict[str, Any] = {
    "hidden_act": "quick_gelu",
    "hidden_size": 768,
    "intermediate_size": 3072,
    "initializer_factor": 1.0,
    "layer_norm_eps": 1e-05,
    "max_position_embeddings": 77,
    "num_attention_heads": 12,
    "num_hidden_layers": 12,
    "projection_dim": 768,
    "vocab_size": 49408,
}
DONE_MARKER = ".complete"


def model_bytes(folder: Path) -> int:
    """Bytes of the weight files of a diffusers folder."""
    return sum(p.stat().st_size for p in folder.rglob("*.safetensors"))


def ensure_sd15_model(models_dir: Path, name: str = "sd15-random", *, seed: int = 0) -> Path:
    """The SD 1.5-size random model folder under ``models_dir``, generated (a minute or two) if missing."""
    dest = Path(models_dir) / name
    if (dest / DONE_MARKER).is_file():
        return dest
    import torch
    from diffusers import AutoencoderKL, PNDMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    from runtime_image.server.tiny import TINY_SCHEDULER, make_tiny_model

    if dest.exists():
        shutil.rmtree(dest)  # an interrupted generation
    with tempfile.TemporaryDirectory(prefix="easel-tok-") as tmp:
        tiny = make_tiny_model(Path(tmp) / "tiny")
        tokenizer = CLIPTokenizer.from_pretrained(str(tiny / "tokenizer"))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        text_config = CLIPTextConfig(
            **SD15_TEXT_ENCODER,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.eos_token_id,
        )
        pipe: Any = StableDiffusionPipeline(
            unet=UNet2DConditionModel(**SD15_UNET),
            vae=AutoencoderKL(**SD15_VAE),
            text_encoder=CLIPTextModel(text_config),
            tokenizer=tokenizer,
            scheduler=PNDMScheduler(**TINY_SCHEDULER),
            safety_checker=None,
            feature_extractor=None,
            requires_safety_checker=False,
        )
        pipe.save_pretrained(str(dest), safe_serialization=True)
    del pipe
    (dest / DONE_MARKER).write_text(json.dumps({"bytes": model_bytes(dest), "seed": seed}))
    return dest
