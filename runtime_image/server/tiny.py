"""Tiny random-weight models of every architecture the runtime serves, built entirely on this machine.

The model has the real SD 1.x architecture and file layout (UNet2DConditionModel, AutoencoderKL with the usual
8x latent downscale, CLIPTextModel, a CLIP byte-level BPE tokenizer from a generated ``vocab.json`` and
``merges.txt``, a PNDM scheduler config and ``model_index.json``), only with very few channels, so the
runtime loads it through its normal loading code and generates a 64x64 image in milliseconds on a CPU.
Weights are random (seeded): the images are noise, but deterministic noise.

:func:`make_tiny` builds one architecture by name (:data:`TINY_ARCHS`): SD 1.x (``sd15``), SD 1.x inpainting
(9-channel UNet), SDXL base (two text encoders, size/crop conditioning), SDXL inpainting, the SDXL refiner
(second encoder only, aesthetic-score conditioning), ControlNets for SD 1.x and SDXL (written with random
instead of zero output convolutions, so a unit visibly changes the image) and an ESRGAN-family upscaler.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import torch

# Words that get their own BPE merges, so ordinary prompts tokenize into word tokens like the real CLIP.
_WORDS = (
    "a an the of in on at with and or to by for from photo painting portrait landscape cat dog house tree "
    "city sky sun moon night day red blue green black white light dark man woman girl boy car mountain "
    "river sea forest flower art style oil water snow fire cozy cabin high quality detailed"
)

TINY_UNET: dict[str, Any] = {
    "sample_size": 8,
    "in_channels": 4,
    "out_channels": 4,
    "layers_per_block": 1,
    "block_out_channels": (32, 64),
    "down_block_types": ("DownBlock2D", "CrossAttnDownBlock2D"),
    "up_block_types": ("CrossAttnUpBlock2D", "UpBlock2D"),
    "cross_attention_dim": 32,
    "attention_head_dim": 4,
    "norm_num_groups": 8,
}
TINY_VAE: dict[str, Any] = {
    "in_channels": 3,
    "out_channels": 3,
    # Four blocks give the 8x latent downscale of the real SD VAE.
    "block_out_channels": (8, 16, 16, 16),
    "down_block_types": ("DownEncoderBlock2D",) * 4,
    "up_block_types": ("UpDecoderBlock2D",) * 4,
    "latent_channels": 4,
    "layers_per_block": 1,
    "norm_num_groups": 4,
    "sample_size": 64,
}
TINY_SCHEDULER: dict[str, Any] = {
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "num_train_timesteps": 1000,
    "skip_prk_steps": True,
    "set_alpha_to_one": False,
    "steps_offset": 1,
}
# SDXL at tiny size: the two-stage layout of the diffusers SDXL tests (linear projections, 2 transformer
# layers in the attention stage, text_time additional embeddings).
TEXT_HIDDEN = 32
SDXL_TIME_EMBED = 8
TINY_SDXL_UNET: dict[str, Any] = {
    "sample_size": 8,
    "out_channels": 4,
    "layers_per_block": 1,
    "block_out_channels": (32, 64),
    "down_block_types": ("DownBlock2D", "CrossAttnDownBlock2D"),
    "up_block_types": ("CrossAttnUpBlock2D", "UpBlock2D"),
    "attention_head_dim": (2, 4),
    "use_linear_projection": True,
    "addition_embed_type": "text_time",
    "addition_time_embed_dim": SDXL_TIME_EMBED,
    "transformer_layers_per_block": (1, 2),
    "norm_num_groups": 8,
}
TINY_SDXL_SCHEDULER: dict[str, Any] = {
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "num_train_timesteps": 1000,
    "steps_offset": 1,
    "timestep_spacing": "leading",
}
LORA_TARGETS = ["to_q", "to_k", "to_v", "to_out.0"]
TEXT_LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "out_proj"]
BOS, EOS = "<|startoftext|>", "<|endoftext|>"


def _bytes_to_unicode() -> list[str]:
    """CLIP's reversible byte -> printable character table (the base alphabet of its byte-level BPE)."""
    printable = [
        *range(ord("!"), ord("~") + 1),
        *range(ord("¡"), ord("¬") + 1),
        *range(ord("®"), ord("ÿ") + 1),
    ]
    extra = [b for b in range(256) if b not in printable]
    return [chr(b) for b in printable] + [chr(256 + i) for i in range(len(extra))]


def _apply_bpe(parts: list[str], ranks: dict[tuple[str, str], int]) -> list[str]:
    while len(parts) > 1:
        pairs = [(ranks.get((a, b)), i) for i, (a, b) in enumerate(itertools.pairwise(parts))]
        known = [(r, i) for r, i in pairs if r is not None]
        if not known:
            break
        _, i = min(known)
        parts = [*parts[:i], parts[i] + parts[i + 1], *parts[i + 2 :]]
    return parts


def build_vocab() -> tuple[dict[str, int], list[str]]:
    """A CLIP-style vocabulary: each byte symbol (inner and word-final), merges for common words, specials."""
    alphabet = _bytes_to_unicode()
    vocab: dict[str, int] = {}
    for symbol in [*alphabet, *(a + "</w>" for a in alphabet)]:
        vocab.setdefault(symbol, len(vocab))
    ranks: dict[tuple[str, str], int] = {}
    for word in _WORDS.split():
        # Learn merges the way BPE will apply them (lowest rank first), until the word is one symbol; rules
        # added later rank higher, so they never split a word learned earlier.
        parts = _apply_bpe([*word[:-1], word[-1] + "</w>"], ranks)
        while len(parts) > 1:
            ranks[(parts[0], parts[1])] = len(ranks)
            vocab.setdefault(parts[0] + parts[1], len(vocab))
            parts = _apply_bpe(parts, ranks)
    merges = [f"{a} {b}" for (a, b), _ in sorted(ranks.items(), key=lambda kv: kv[1])]
    vocab[BOS] = len(vocab)
    vocab[EOS] = len(vocab)
    return vocab, merges


def _write_tokenizer(dest: Path) -> int:
    from transformers import CLIPTokenizer

    dest.mkdir(parents=True, exist_ok=True)
    vocab, merges = build_vocab()
    (dest / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    (dest / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8")
    # Round-trip through transformers so the folder also gets tokenizer_config.json (and tokenizer.json).
    tokenizer = CLIPTokenizer.from_pretrained(str(dest), model_max_length=77)
    tokenizer.save_pretrained(str(dest))
    return len(vocab)


def _text_config(vocab_size: int, bos_id: int, eos_id: int) -> Any:
    from transformers import CLIPTextConfig

    return CLIPTextConfig(
        vocab_size=vocab_size,
        hidden_size=32,
        intermediate_size=37,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=77,
        projection_dim=32,
        bos_token_id=bos_id,
        eos_token_id=eos_id,
        # SD 1.x pads with the end-of-text token.
        pad_token_id=eos_id,
    )


def make_tiny_model(dest: Path, *, seed: int = 0, inpainting: bool = False) -> Path:
    """Write a complete random-weight SD 1.x pipeline folder to ``dest`` and return ``dest``.

    ``inpainting``: a StableDiffusionInpaintPipeline; its UNet takes 9 channels (latents, mask, masked image).
    """
    from diffusers import (
        AutoencoderKL,
        PNDMScheduler,
        StableDiffusionInpaintPipeline,
        StableDiffusionPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextModel, CLIPTokenizer

    dest = Path(dest)
    tok_dir = dest / "tokenizer"
    vocab_size = _write_tokenizer(tok_dir)
    tokenizer = CLIPTokenizer.from_pretrained(str(tok_dir))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        unet = UNet2DConditionModel(**{**TINY_UNET, "in_channels": 9 if inpainting else 4})
        vae = AutoencoderKL(**TINY_VAE)
        text_encoder = CLIPTextModel(_text_config(vocab_size, tokenizer.bos_token_id, tokenizer.eos_token_id))
    cls = StableDiffusionInpaintPipeline if inpainting else StableDiffusionPipeline
    pipe: Any = cls(
        unet=unet,
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        scheduler=PNDMScheduler(**TINY_SCHEDULER),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.save_pretrained(str(dest))
    return dest


def _sdxl_unet(*, in_channels: int = 4, refiner: bool = False, seed: int = 0) -> Any:
    from diffusers import UNet2DConditionModel

    # SDXL conditions on (original size, crop top-left, target size) = 6 numbers (the refiner: 5, with the
    # aesthetic score instead of the target size), each embedded in addition_time_embed_dim, plus the
    # pooled output of the second text encoder.
    time_ids = 5 if refiner else 6
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return UNet2DConditionModel(**{**TINY_SDXL_UNET, "in_channels": in_channels,
            "cross_attention_dim": TEXT_HIDDEN if refiner else 2 * TEXT_HIDDEN,
            "projection_class_embeddings_input_dim": time_ids * SDXL_TIME_EMBED + TEXT_HIDDEN})  # fmt: skip


def make_tiny_sdxl(dest: Path, *, seed: int = 0, inpainting: bool = False, refiner: bool = False) -> Path:
    """A random-weight SDXL pipeline folder (base, inpainting or refiner) at ``dest``."""
    from diffusers import (
        AutoencoderKL,
        EulerDiscreteScheduler,
        StableDiffusionXLImg2ImgPipeline,
        StableDiffusionXLInpaintPipeline,
        StableDiffusionXLPipeline,
    )
    from transformers import CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

    dest = Path(dest)
    vocab_size = _write_tokenizer(dest / "tokenizer")
    tokenizer = CLIPTokenizer.from_pretrained(str(dest / "tokenizer"))
    # The second SDXL tokenizer pads with "!" (OpenCLIP), not with the end-of-text token.
    tokenizer_2 = CLIPTokenizer.from_pretrained(str(dest / "tokenizer"), pad_token="!")  # noqa: S106 - a token, not a password
    config = _text_config(vocab_size, tokenizer.bos_token_id, tokenizer.eos_token_id)
    unet = _sdxl_unet(in_channels=9 if inpainting else 4, refiner=refiner, seed=seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed + 1)
        # The SDXL VAE overflows in fp16: its config asks pipelines to decode in fp32 (force_upcast).
        vae = AutoencoderKL(**{**TINY_VAE, "force_upcast": True, "scaling_factor": 0.13025})
        text_encoder = None if refiner else CLIPTextModel(config)
        text_encoder_2 = CLIPTextModelWithProjection(config)
    components: dict[str, Any] = {
        "unet": unet,
        "vae": vae,
        "text_encoder": text_encoder,
        "text_encoder_2": text_encoder_2,
        "tokenizer": None if refiner else tokenizer,
        "tokenizer_2": tokenizer_2,
        "scheduler": EulerDiscreteScheduler(**TINY_SDXL_SCHEDULER),
    }
    if refiner:
        pipe: Any = StableDiffusionXLImg2ImgPipeline(
            **components, requires_aesthetics_score=True, force_zeros_for_empty_prompt=False
        )
    elif inpainting:
        pipe = StableDiffusionXLInpaintPipeline(**components)
    else:
        pipe = StableDiffusionXLPipeline(**components)
    pipe.save_pretrained(str(dest))
    if refiner:
        import shutil

        shutil.rmtree(dest / "tokenizer", ignore_errors=True)
    return dest


def make_tiny_controlnet(dest: Path, *, sdxl: bool = False, seed: int = 0, scale: float = 0.5) -> Path:
    """A ControlNet matching the tiny SD 1.x (or SDXL) UNet, as a diffusers folder (config.json + weights).

    A trained ControlNet starts from zero output convolutions; random ones here (std ``scale``) make every
    unit change the tiny model's output, which is what tests need to see.
    """
    from diffusers import ControlNetModel, UNet2DConditionModel

    unet = _sdxl_unet(seed=seed) if sdxl else UNet2DConditionModel(**TINY_UNET)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        # Four stages, three of them stride 2: the control image enters at the latents' 1/8 scale.
        controlnet = ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=(8, 8, 8, 8))
        gen = torch.Generator().manual_seed(seed)
        zero_convs = [*controlnet.controlnet_down_blocks, controlnet.controlnet_mid_block]
        with torch.no_grad():
            for conv in zero_convs:
                conv.weight.copy_(torch.randn(conv.weight.shape, generator=gen) * scale)
            last = controlnet.controlnet_cond_embedding.conv_out
            last.weight.copy_(torch.randn(last.weight.shape, generator=gen) * scale)
    controlnet.save_pretrained(str(dest))
    return Path(dest)


def make_tiny_esrgan(dest_file: Path, *, scale: int = 4, seed: int = 0) -> Path:
    """An ESRGAN-family (RRDBNet, Real-ESRGAN key layout) upscaler with random weights, as .safetensors."""
    from safetensors.torch import save_file

    from runtime_image.server.esrgan import RRDBNet

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = RRDBNet(scale=scale, num_feat=8, num_block=1, num_grow_ch=4)
    dest_file = Path(dest_file)
    dest_file.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(dest_file))
    return dest_file


# ``easel models make-tiny --arch``: what each name writes (a folder, or a file for the upscaler).
TINY_ARCHS: tuple[str, ...] = (
    "sd15",
    "sd15-inpaint",
    "sdxl",
    "sdxl-inpaint",
    "sdxl-refiner",
    "controlnet-sd15",
    "controlnet-sdxl",
    "esrgan",
)


def make_tiny(dest: Path, arch: str = "sd15", *, seed: int = 0) -> Path:
    """Write a tiny model of ``arch`` (one of :data:`TINY_ARCHS`) at ``dest``."""
    builders: dict[str, Any] = {
        "sd15": lambda: make_tiny_model(dest, seed=seed),
        "sd15-inpaint": lambda: make_tiny_model(dest, seed=seed, inpainting=True),
        "sdxl": lambda: make_tiny_sdxl(dest, seed=seed),
        "sdxl-inpaint": lambda: make_tiny_sdxl(dest, seed=seed, inpainting=True),
        "sdxl-refiner": lambda: make_tiny_sdxl(dest, seed=seed, refiner=True),
        "controlnet-sd15": lambda: make_tiny_controlnet(dest, seed=seed),
        "controlnet-sdxl": lambda: make_tiny_controlnet(dest, seed=seed, sdxl=True),
        "esrgan": lambda: make_tiny_esrgan(Path(dest), seed=seed),
    }
    if arch not in builders:
        raise ValueError(f"arch={arch!r}: use one of {', '.join(TINY_ARCHS)}")
    result: Path = builders[arch]()
    return result


def make_tiny_lora(
    dest_file: Path,
    *,
    seed: int = 0,
    rank: int = 4,
    scale: float = 0.5,
    text_encoder: bool = False,
) -> Path:
    """Write a random LoRA for the tiny model (diffusers/peft key format) to ``dest_file`` (.safetensors).

    ``scale`` is the standard deviation of the random A/B matrices: large enough that the adapter visibly
    changes the tiny model's output.
    """
    from diffusers import StableDiffusionPipeline, UNet2DConditionModel
    from diffusers.utils import convert_state_dict_to_diffusers
    from peft import LoraConfig, get_peft_model_state_dict

    dest_file = Path(dest_file)
    if dest_file.suffix != ".safetensors":
        raise ValueError(f"dest_file={str(dest_file)!r}: must end with .safetensors")
    gen = torch.Generator().manual_seed(seed)

    def randomized(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {k: torch.randn(v.shape, generator=gen) * scale for k, v in sorted(state.items())}

    unet: Any = UNet2DConditionModel(**TINY_UNET)
    unet.add_adapter(LoraConfig(r=rank, lora_alpha=rank, target_modules=LORA_TARGETS))
    unet_layers = convert_state_dict_to_diffusers(randomized(get_peft_model_state_dict(unet)))
    text_layers = None
    if text_encoder:
        from peft import inject_adapter_in_model
        from transformers import CLIPTextModel

        vocab, _ = build_vocab()
        te = inject_adapter_in_model(
            LoraConfig(r=rank, lora_alpha=rank, target_modules=TEXT_LORA_TARGETS),
            CLIPTextModel(_text_config(len(vocab), vocab[BOS], vocab[EOS])),
        )
        text_layers = convert_state_dict_to_diffusers(randomized(get_peft_model_state_dict(te)))
    dest_file.parent.mkdir(parents=True, exist_ok=True)
    StableDiffusionPipeline.save_lora_weights(
        str(dest_file.parent),
        unet_lora_layers=unet_layers,
        text_encoder_lora_layers=text_layers,
        weight_name=dest_file.name,
    )
    return dest_file
