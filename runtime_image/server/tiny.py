"""A tiny random-weight Stable Diffusion model (and LoRA) built entirely on this machine.

The model has the real SD 1.x architecture and file layout (UNet2DConditionModel, AutoencoderKL with the usual
8x latent downscale, CLIPTextModel, a CLIP byte-level BPE tokenizer from a generated ``vocab.json`` and
``merges.txt``, a PNDM scheduler config and ``model_index.json``), only with very few channels, so the
runtime loads it through its normal loading code and generates a 64x64 image in milliseconds on a CPU.
Weights are random (seeded): the images are noise, but deterministic noise.
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


def make_tiny_model(dest: Path, *, seed: int = 0) -> Path:
    """Write a complete random-weight StableDiffusionPipeline folder to ``dest`` and return ``dest``."""
    from diffusers import AutoencoderKL, PNDMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTokenizer

    dest = Path(dest)
    tok_dir = dest / "tokenizer"
    vocab_size = _write_tokenizer(tok_dir)
    tokenizer = CLIPTokenizer.from_pretrained(str(tok_dir))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        unet = UNet2DConditionModel(**TINY_UNET)
        vae = AutoencoderKL(**TINY_VAE)
        text_encoder = CLIPTextModel(_text_config(vocab_size, tokenizer.bos_token_id, tokenizer.eos_token_id))
    pipe: Any = StableDiffusionPipeline(
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
