"""Write a diffusers SD 1.x folder as one original-layout (``model.diffusion_model.*``...) ``.safetensors``.

Single-file checkpoints in the store use the original Stable Diffusion key layout, the one diffusers'
``from_single_file`` converts from. This is the inverse mapping, so the tiny model can exist as a single file
too and the single-file loading path is tested end to end; it also lets operators export a diffusers folder.
Covered: UNet2DConditionModel with down/up/mid blocks of any depth, AutoencoderKL, CLIPTextModel.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

_RESNET = (
    ("norm1", "in_layers.0"),
    ("conv1", "in_layers.2"),
    ("norm2", "out_layers.0"),
    ("conv2", "out_layers.3"),
    ("time_emb_proj", "emb_layers.1"),
    ("conv_shortcut", "skip_connection"),
)
_UNET_TOP = {
    "time_embedding.linear_1": "time_embed.0",
    "time_embedding.linear_2": "time_embed.2",
    "conv_in": "input_blocks.0.0",
    "conv_norm_out": "out.0",
    "conv_out": "out.2",
}
_VAE_ATTENTION = (
    ("group_norm", "norm"),
    ("to_q", "q"),
    ("to_k", "k"),
    ("to_v", "v"),
    ("to_out.0", "proj_out"),
)


def _resnet(rest: str) -> str:
    for new, old in _RESNET:
        if rest.startswith(new + "."):
            return old + rest[len(new) :]
    return rest


def unet_key(key: str, layers_per_block: int, attention_up_blocks: set[int]) -> str:
    """A diffusers UNet key -> its original-layout key (without the ``model.diffusion_model.`` prefix)."""
    per_block = layers_per_block + 1
    for new, old in _UNET_TOP.items():
        if key.startswith(new + "."):
            return old + key[len(new) :]
    if m := re.match(r"down_blocks\.(\d+)\.(resnets|attentions)\.(\d+)\.(.*)", key):
        block, kind, layer, rest = int(m[1]), m[2], int(m[3]), m[4]
        index = 1 + block * per_block + layer
        return (
            f"input_blocks.{index}.0.{_resnet(rest)}"
            if kind == "resnets"
            else f"input_blocks.{index}.1.{rest}"
        )
    if m := re.match(r"down_blocks\.(\d+)\.downsamplers\.0\.conv\.(.*)", key):
        return f"input_blocks.{1 + int(m[1]) * per_block + layers_per_block}.0.op.{m[2]}"
    if m := re.match(r"mid_block\.resnets\.(\d+)\.(.*)", key):
        return f"middle_block.{2 * int(m[1])}.{_resnet(m[2])}"
    if m := re.match(r"mid_block\.attentions\.0\.(.*)", key):
        return f"middle_block.1.{m[1]}"
    if m := re.match(r"up_blocks\.(\d+)\.(resnets|attentions)\.(\d+)\.(.*)", key):
        block, kind, layer, rest = int(m[1]), m[2], int(m[3]), m[4]
        index = block * per_block + layer
        return (
            f"output_blocks.{index}.0.{_resnet(rest)}"
            if kind == "resnets"
            else f"output_blocks.{index}.1.{rest}"
        )
    if m := re.match(r"up_blocks\.(\d+)\.upsamplers\.0\.conv\.(.*)", key):
        block = int(m[1])
        slot = 2 if block in attention_up_blocks else 1
        return f"output_blocks.{block * per_block + layers_per_block}.{slot}.conv.{m[2]}"
    raise ValueError(f"unet key {key!r}: no original-layout equivalent")


def vae_key(key: str, num_up_blocks: int) -> str:
    """A diffusers AutoencoderKL key -> its original-layout key (without ``first_stage_model.``)."""
    key = key.replace("conv_norm_out", "norm_out")
    if m := re.match(r"(encoder|decoder)\.mid_block\.resnets\.(\d+)\.(.*)", key):
        return f"{m[1]}.mid.block_{int(m[2]) + 1}.{m[3].replace('conv_shortcut', 'nin_shortcut')}"
    if m := re.match(r"(encoder|decoder)\.mid_block\.attentions\.0\.(.*)", key):
        rest = m[2]
        for new, old in _VAE_ATTENTION:
            if rest.startswith(new + "."):
                rest = old + rest[len(new) :]
        return f"{m[1]}.mid.attn_1.{rest}"
    if m := re.match(r"encoder\.down_blocks\.(\d+)\.resnets\.(\d+)\.(.*)", key):
        return f"encoder.down.{m[1]}.block.{m[2]}.{m[3].replace('conv_shortcut', 'nin_shortcut')}"
    if m := re.match(r"encoder\.down_blocks\.(\d+)\.downsamplers\.0\.conv\.(.*)", key):
        return f"encoder.down.{m[1]}.downsample.conv.{m[2]}"
    # The original decoder numbers its up blocks from the lowest resolution.
    if m := re.match(r"decoder\.up_blocks\.(\d+)\.resnets\.(\d+)\.(.*)", key):
        block = num_up_blocks - 1 - int(m[1])
        return f"decoder.up.{block}.block.{m[2]}.{m[3].replace('conv_shortcut', 'nin_shortcut')}"
    if m := re.match(r"decoder\.up_blocks\.(\d+)\.upsamplers\.0\.conv\.(.*)", key):
        return f"decoder.up.{num_up_blocks - 1 - int(m[1])}.upsample.conv.{m[2]}"
    if re.match(r"(encoder|decoder)\.(conv_in|conv_out|norm_out)\.|(post_)?quant_conv\.", key):
        return key
    raise ValueError(f"vae key {key!r}: no original-layout equivalent")


def to_original_layout(model_dir: Path) -> dict[str, torch.Tensor]:
    model_dir = Path(model_dir)
    unet_cfg = json.loads((model_dir / "unet" / "config.json").read_text())
    vae_cfg = json.loads((model_dir / "vae" / "config.json").read_text())
    attention_up = {i for i, t in enumerate(unet_cfg["up_block_types"]) if "CrossAttn" in t}
    out: dict[str, torch.Tensor] = {}
    for key, tensor in load_file(model_dir / "unet" / "diffusion_pytorch_model.safetensors").items():
        out["model.diffusion_model." + unet_key(key, unet_cfg["layers_per_block"], attention_up)] = tensor
    num_up = len(vae_cfg["up_block_types"])
    for key, tensor in load_file(model_dir / "vae" / "diffusion_pytorch_model.safetensors").items():
        ldm = vae_key(key, num_up)
        # The original VAE attention projections are 1x1 convolutions.
        is_projection = ".mid.attn_1." in ldm and ldm.endswith(
            ("q.weight", "k.weight", "v.weight", "proj_out.weight")
        )
        out["first_stage_model." + ldm] = tensor[:, :, None, None] if is_projection else tensor
    for key, tensor in load_file(model_dir / "text_encoder" / "model.safetensors").items():
        # transformers 5 saves CLIPTextModel keys without the "text_model." level the original layout has.
        inner = key if key.startswith("text_model.") else "text_model." + key
        out["cond_stage_model.transformer." + inner] = tensor
    return out


def write_single_file(model_dir: Path, dest_file: Path) -> Path:
    """Export ``model_dir`` (a diffusers SD 1.x folder) to ``dest_file`` in the original layout."""
    dest_file = Path(dest_file)
    dest_file.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.contiguous() for k, v in to_original_layout(model_dir).items()}
    save_file(tensors, str(dest_file), metadata={"format": "pt"})
    return dest_file
