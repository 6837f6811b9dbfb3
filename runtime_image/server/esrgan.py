"""ESRGAN-family upscalers (RRDBNet, the Real-ESRGAN / BasicSR key layout) without spandrel.

spandrel would load many more architectures, but it imports torchvision at import time, and every torchvision
wheel that matches the runtime's torch pin is missing from the CPU index: installing it would replace torch.
RRDBNet covers ESRGAN 4x, RealESRGAN_x4plus, x2plus and the community "4x-..." models saved in this layout.
The architecture is read from the weights themselves (scale from the input convolution, depth from the body).
"""

from __future__ import annotations

import re
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F


class _DenseBlock(nn.Module):
    """Five 3x3 convolutions, each seeing the block input and every earlier output (residual scaled 0.2)."""

    def __init__(self, num_feat: int, num_grow_ch: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(num_feat, num_grow_ch, 3, 1, 1)
        self.conv2 = nn.Conv2d(num_feat + num_grow_ch, num_grow_ch, 3, 1, 1)
        self.conv3 = nn.Conv2d(num_feat + 2 * num_grow_ch, num_grow_ch, 3, 1, 1)
        self.conv4 = nn.Conv2d(num_feat + 3 * num_grow_ch, num_grow_ch, 3, 1, 1)
        self.conv5 = nn.Conv2d(num_feat + 4 * num_grow_ch, num_feat, 3, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = [x]
        for conv in (self.conv1, self.conv2, self.conv3, self.conv4):
            feats.append(F.leaky_relu(conv(torch.cat(feats, 1)), 0.2))
        return x + 0.2 * self.conv5(torch.cat(feats, 1))


class _RRDB(nn.Module):
    def __init__(self, num_feat: int, num_grow_ch: int) -> None:
        super().__init__()
        self.rdb1 = _DenseBlock(num_feat, num_grow_ch)
        self.rdb2 = _DenseBlock(num_feat, num_grow_ch)
        self.rdb3 = _DenseBlock(num_feat, num_grow_ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + 0.2 * self.rdb3(self.rdb2(self.rdb1(x)))


class RRDBNet(nn.Module):
    """Residual-in-residual dense network; x2 and x1 models see a pixel-unshuffled input (as Real-ESRGAN)."""

    def __init__(
        self, *, scale: int = 4, num_feat: int = 64, num_block: int = 23, num_grow_ch: int = 32
    ) -> None:
        super().__init__()
        if scale not in (1, 2, 4):
            raise ValueError(f"scale={scale}: RRDBNet supports 1, 2 or 4")
        self.scale = scale
        in_ch = 3 * {4: 1, 2: 4, 1: 16}[scale]
        self.conv_first = nn.Conv2d(in_ch, num_feat, 3, 1, 1)
        self.body = nn.Sequential(*(_RRDB(num_feat, num_grow_ch) for _ in range(num_block)))
        self.conv_body = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.conv_up1 = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.conv_up2 = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.conv_hr = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.conv_last = nn.Conv2d(num_feat, 3, 3, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.scale == 2:
            x = F.pixel_unshuffle(x, 2)
        elif self.scale == 1:
            x = F.pixel_unshuffle(x, 4)
        feat = self.conv_first(x)
        feat = feat + self.conv_body(self.body(feat))
        for conv in (self.conv_up1, self.conv_up2):
            feat = F.leaky_relu(conv(F.interpolate(feat, scale_factor=2, mode="nearest")), 0.2)
        return self.conv_last(F.leaky_relu(self.conv_hr(feat), 0.2))


class UnsupportedUpscaler(ValueError):
    """The weights are not in the RRDBNet layout this module reads."""


def from_state_dict(state: dict[str, torch.Tensor]) -> RRDBNet:
    """Build the RRDBNet the weights describe and load them (strict: every key must fit)."""
    for prefix in ("params_ema", "params"):
        # BasicSR training checkpoints wrap the weights in one of these.
        nested = state.get(prefix)
        if isinstance(nested, dict):
            state = nested
    if "conv_first.weight" not in state:
        raise UnsupportedUpscaler("not an RRDBNet (Real-ESRGAN layout) state dict: no conv_first.weight")
    first = state["conv_first.weight"]
    scale = {3: 4, 12: 2, 48: 1}.get(int(first.shape[1]))
    if scale is None:
        raise UnsupportedUpscaler(f"conv_first takes {first.shape[1]} channels: not 3, 12 or 48")
    blocks = {int(m[1]) for k in state if (m := re.match(r"body\.(\d+)\.", k))}
    net = RRDBNet(
        scale=scale,
        num_feat=int(first.shape[0]),
        num_block=len(blocks),
        num_grow_ch=int(state["body.0.rdb1.conv1.weight"].shape[0]),
    )
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise UnsupportedUpscaler(f"weights do not fit RRDBNet: {str(exc)[:200]}") from None
    return net.eval()


def load_file(path: Path) -> RRDBNet:
    """An upscaler from ``.safetensors`` or ``.pth`` (``weights_only``: never runs pickled code)."""
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file as load_safetensors

        return from_state_dict(load_safetensors(str(path)))
    loaded = torch.load(str(path), map_location="cpu", weights_only=True)
    if not isinstance(loaded, dict):
        raise UnsupportedUpscaler("a .pth upscaler must hold a state dict")
    return from_state_dict(loaded)


def upscale(net: RRDBNet, image: torch.Tensor, *, tile: int = 256) -> torch.Tensor:
    """``image`` (1, 3, H, W) in [0, 1] -> (1, 3, H*s, W*s); tiles bound the memory of large inputs."""
    _, _, h, w = image.shape
    s = net.scale
    if h <= tile and w <= tile:
        return net(image).clamp(0, 1)
    out = torch.zeros((1, 3, h * s, w * s), dtype=image.dtype, device=image.device)
    # Tiles overlap by a margin that is cropped away, so the seams do not show.
    pad = 16
    for y in range(0, h, tile):
        for x in range(0, w, tile):
            y0, x0 = max(y - pad, 0), max(x - pad, 0)
            y1, x1 = min(y + tile + pad, h), min(x + tile + pad, w)
            part = net(image[:, :, y0:y1, x0:x1]).clamp(0, 1)
            ty, tx = (y - y0) * s, (x - x0) * s
            th, tw = (min(y + tile, h) - y) * s, (min(x + tile, w) - x) * s
            out[:, :, y * s : y * s + th, x * s : x * s + tw] = part[:, :, ty : ty + th, tx : tx + tw]
    return out
