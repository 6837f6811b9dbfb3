"""An SDXL-size checkpoint with random weights, for the model-load bench. Nothing comes from the hub.

The configs below are those of the SDXL 1.0 base release (``unet/config.json``, ``vae/config.json``,
``text_encoder/config.json`` (CLIP ViT-L) and ``text_encoder_2/config.json`` (OpenCLIP ViT-bigG) of
stabilityai/stable-diffusion-xl-base-1.0, written here as dicts): 2.57 G UNet parameters, 3.47 G in all.

What is written is what SDXL users have: a diffusers folder (the store's default format) of float16
safetensors, one file per component, as the fp16 release ships (``unet`` 5.1 GB; 6.9 GB in all). The runtime
loads that folder with the device plan's dtype: float16 on a GPU (the bytes as they are), float32 on a CPU
(each weight converted on load, 13.9 GB in memory). The tokenizers and scheduler come from the runtime's
tiny SDXL builder (a small generated vocabulary: token ids stay inside the real 49408 embedding).

Generation never holds the model in memory: the modules are built on the meta device (shapes only), the
safetensors header is written from those shapes, then each tensor is drawn and appended one at a time, so the
peak is the largest single tensor (the 49408 x 1280 token embedding, 0.25 GB while drawn in float32).
Generated on first use into ``<models_dir>/<name>`` and reused afterwards.
"""

from __future__ import annotations

import json
import shutil
import struct
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch

from bench.sd15 import DONE_MARKER, SD15_VAE, model_bytes

SDXL_UNET: dict[str, Any] = {
    "act_fn": "silu",
    "addition_embed_type": "text_time",
    "addition_embed_type_num_heads": 64,
    "addition_time_embed_dim": 256,
    "attention_head_dim": [5, 10, 20],
    "block_out_channels": [320, 640, 1280],
    "center_input_sample": False,
    "cross_attention_dim": 2048,
    "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
    "downsample_padding": 1,
    "flip_sin_to_cos": True,
    "freq_shift": 0,
    "in_channels": 4,
    "layers_per_block": 2,
    "mid_block_scale_factor": 1,
    "norm_eps": 1e-05,
    "norm_num_groups": 32,
    "out_channels": 4,
    "projection_class_embeddings_input_dim": 2816,
    "sample_size": 128,
    "transformer_layers_per_block": [1, 2, 10],
    "up_block_types": ["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"],
    "use_linear_projection": True,
}
# The SD 1.5 VAE architecture; SDXL's differs in its scaling factor, and it overflows in fp16 (force_upcast).
SDXL_VAE: dict[str, Any] = {**SD15_VAE, "sample_size": 1024, "scaling_factor": 0.13025, "force_upcast": True}
SDXL_TEXT_ENCODER: dict[str, Any] = {  # CLIP ViT-L/14
    "hidden_act": "quick_gelu",
    "hidden_size": 768,
    "intermediate_size": 3072,
    "layer_norm_eps": 1e-05,
    "max_position_embeddings": 77,
    "num_attention_heads": 12,
    "num_hidden_layers": 12,
    "projection_dim": 768,
    "vocab_size": 49408,
}
SDXL_TEXT_ENCODER_2: dict[str, Any] = {  # OpenCLIP ViT-bigG/14, with its text projection
    "hidden_act": "gelu",
    "hidden_size": 1280,
    "intermediate_size": 5120,
    "layer_norm_eps": 1e-05,
    "max_position_embeddings": 77,
    "num_attention_heads": 20,
    "num_hidden_layers": 32,
    "projection_dim": 1280,
    "vocab_size": 49408,
}
SDXL_NAME = "sdxl-random"
_SAFETENSORS_DTYPE = {torch.float16: "F16", torch.bfloat16: "BF16", torch.float32: "F32"}
# Small weights keep a forward pass finite (the tests run one); the values matter to nothing else.
_WEIGHT_STD = 0.02


def write_safetensors(
    path: Path, shapes: dict[str, tuple[int, ...]], *, dtype: torch.dtype, generator: torch.Generator
) -> int:
    """Write a safetensors file of random ``shapes`` one tensor at a time (the format: an 8-byte header
    length, a JSON header of dtype/shape/offsets, then the raw little-endian bytes). Returns its size."""
    itemsize = torch.empty((), dtype=dtype).element_size()
    header: dict[str, Any] = {"__metadata__": {"format": "pt"}}
    offset = 0
    for name, shape in shapes.items():
        n = itemsize * _numel(shape)
        dtype_name = _SAFETENSORS_DTYPE[dtype]
        header[name] = {"dtype": dtype_name, "shape": list(shape), "data_offsets": [offset, offset + n]}
        offset += n
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)  # the data starts 8-byte aligned, as safetensors itself writes it
    with path.open("wb") as f:
        f.write(struct.pack("<Q", len(raw)))
        f.write(raw)
        for shape in shapes.values():
            tensor = torch.randn(shape, generator=generator).mul_(_WEIGHT_STD).to(dtype)
            f.write(tensor.reshape(-1).view(torch.uint8).numpy().data)
            del tensor
    return 8 + len(raw) + offset


def _numel(shape: Iterable[int]) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


def meta_shapes(module: torch.nn.Module) -> dict[str, tuple[int, ...]]:
    """The state dict of ``module`` under the names the SDXL release's files use, as names and shapes.

    transformers 5 names CLIPTextModel's tensors without the ``text_model.`` prefix the release (and every
    checkpoint written before it) carries; it loads both, and the release's is what users have."""
    from transformers import CLIPTextModel

    prefix = "text_model." if isinstance(module, CLIPTextModel) else ""
    return {
        name if name.startswith("text_model.") else prefix + name: tuple(t.shape)
        for name, t in module.state_dict().items()
    }


def build_meta_components(
    *,
    unet: dict[str, Any],
    vae: dict[str, Any],
    text_encoder: dict[str, Any],
    text_encoder_2: dict[str, Any],
    bos_id: int,
    eos_id: int,
) -> dict[str, Any]:
    """The four weighted SDXL components on the meta device: their classes, configs and shapes, no storage."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    # SD 1.x and CLIP-L pad with the end-of-text token; the second (OpenCLIP) tokenizer pads with "!", which
    # is a tokenizer setting: both encoder configs keep the release's ids.
    ids = {"bos_token_id": bos_id, "eos_token_id": eos_id, "pad_token_id": eos_id}
    with torch.device("meta"):
        return {
            "unet": UNet2DConditionModel(**unet),
            "vae": AutoencoderKL(**vae),
            "text_encoder": CLIPTextModel(CLIPTextConfig(**text_encoder, **ids)),
            "text_encoder_2": CLIPTextModelWithProjection(CLIPTextConfig(**text_encoder_2, **ids)),
        }


def write_sdxl_folder(
    dest: Path,
    *,
    unet: dict[str, Any] = SDXL_UNET,
    vae: dict[str, Any] = SDXL_VAE,
    text_encoder: dict[str, Any] = SDXL_TEXT_ENCODER,
    text_encoder_2: dict[str, Any] = SDXL_TEXT_ENCODER_2,
    dtype: torch.dtype = torch.float16,
    seed: int = 0,
) -> Path:
    """A diffusers SDXL folder at ``dest`` (which must not exist) with random ``dtype`` weights."""
    from runtime_image.server.tiny import make_tiny_sdxl

    dest = Path(dest)
    with tempfile.TemporaryDirectory(prefix="easel-sdxl-") as tmp:
        # model_index.json, both tokenizers and the scheduler as the runtime's own SDXL builder writes them.
        tiny = make_tiny_sdxl(Path(tmp) / "tiny")
        dest.mkdir(parents=True)
        shutil.copy2(tiny / "model_index.json", dest / "model_index.json")
        for part in ("tokenizer", "tokenizer_2", "scheduler"):
            shutil.copytree(tiny / part, dest / part)
    from transformers import CLIPTokenizer

    tokenizer = CLIPTokenizer.from_pretrained(str(dest / "tokenizer"))
    components = build_meta_components(
        unet=unet,
        vae=vae,
        text_encoder=text_encoder,
        text_encoder_2=text_encoder_2,
        bos_id=tokenizer.bos_token_id,
        eos_id=tokenizer.eos_token_id,
    )
    generator = torch.Generator().manual_seed(seed)
    for part, module in components.items():
        folder = dest / part
        folder.mkdir()
        if part.startswith("text_encoder"):
            module.config.architectures = [type(module).__name__]
            module.config.dtype = str(dtype).removeprefix("torch.")
            module.config.save_pretrained(str(folder))
            weights = folder / "model.safetensors"
        else:
            module.save_config(str(folder))
            weights = folder / "diffusion_pytorch_model.safetensors"
        write_safetensors(weights, meta_shapes(module), dtype=dtype, generator=generator)
    return dest


def ensure_sdxl_model(
    models_dir: Path, name: str = SDXL_NAME, *, seed: int = 0, configs: dict[str, Any] | None = None
) -> Path:
    """The SDXL-size random fp16 folder under ``models_dir``, generated (a few minutes) if missing.

    ``configs`` replaces some of the four component configs (``unet``, ``vae``, ``text_encoder``,
    ``text_encoder_2``): the tests write a scaled-down model through the same path."""
    dest = Path(models_dir) / name
    if (dest / DONE_MARKER).is_file():
        return dest
    if dest.exists():
        shutil.rmtree(dest)  # an interrupted generation
    write_sdxl_folder(dest, seed=seed, **(configs or {}))
    done = {"bytes": model_bytes(dest), "seed": seed, "dtype": "float16"}
    (dest / DONE_MARKER).write_text(json.dumps(done))
    return dest
