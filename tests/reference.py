"""A textbook partial-convolution U-Net, written independently of xcrai.nn from
CRAI_FORMAT.md, used as an oracle: per-channel masks, the full Cout x Cin mask
convolution with the checkpoint's own ``mask_conv`` weights, explicit padding."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def raw_state_dict(path) -> dict[str, torch.Tensor]:
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    entry = checkpoint[checkpoint["labels"][-1]] if "labels" in checkpoint else checkpoint
    return {k.removeprefix("module."): v for k, v in entry["model"].items()}


def textbook_pad(x: torch.Tensor, p: int, global_padding: bool) -> torch.Tensor:
    if global_padding:
        x = F.pad(x, (p, p, 0, 0), mode="circular")
        return F.pad(x, (0, 0, p, p), mode="constant", value=0.0)
    return F.pad(x, (p, p, p, p), mode="constant", value=0.0)


def textbook_layer(state, prefix, x, m, stride, global_padding, activation):
    weight = state[f"{prefix}.input_conv.weight"].double()
    mask_weight = state.get(f"{prefix}.mask_conv.weight")
    if mask_weight is None:
        mask_weight = torch.ones_like(weight)
    p = weight.shape[-1] // 2
    raw = F.conv2d(textbook_pad(x * m, p, global_padding), weight, stride=stride)
    msum = F.conv2d(textbook_pad(m, p, global_padding), mask_weight.double(), stride=stride)
    holes = msum == 0
    out = raw / msum.masked_fill(holes, 1.0)
    bias = state.get(f"{prefix}.input_conv.bias")
    if bias is not None:
        out = out + bias.double().view(1, -1, 1, 1)
    out = out.masked_fill(holes, 0.0)
    new_mask = (~holes).double()
    if f"{prefix}.bn.weight" in state:
        out = F.batch_norm(
            out,
            state[f"{prefix}.bn.running_mean"].double(),
            state[f"{prefix}.bn.running_var"].double(),
            state[f"{prefix}.bn.weight"].double(),
            state[f"{prefix}.bn.bias"].double(),
            training=False,
            eps=1e-5,
        )
    if activation == "relu":
        out = F.relu(out)
    elif activation == "leaky":
        out = F.leaky_relu(out, 0.01)
    return out, new_mask


def textbook_unet(state, x: np.ndarray, m: np.ndarray, global_padding: bool):
    """x, m: (N, C, H, W) arrays; returns (output (N, H, W), final mask (N, H, W)) in float64."""
    h = torch.from_numpy(np.where(m, x, 0.0)).double()
    mask = torch.from_numpy(m.astype(np.float64))
    n_enc = 1 + max(int(k.split(".")[1]) for k in state if k.startswith("encoder."))
    skips = [(h, mask)]
    for i in range(n_enc):
        h, mask = textbook_layer(
            state, f"encoder.{i}.partial_conv", h, mask, 2, global_padding, "relu"
        )
        skips.append((h, mask))
    skips.pop()
    for j in range(n_enc):
        skip_h, skip_m = skips.pop()
        size = skip_h.shape[-2:]
        h = torch.cat([F.interpolate(h, size=size, mode="nearest"), skip_h], 1)
        mask = torch.cat([F.interpolate(mask, size=size, mode="nearest"), skip_m], 1)
        last = j == n_enc - 1
        h, mask = textbook_layer(
            state, f"decoder.{j}.partial_conv", h, mask, 1, global_padding,
            "none" if last else "leaky",
        )  # fmt: skip
    return h[:, 0].numpy(), mask[:, 0].numpy() > 0
