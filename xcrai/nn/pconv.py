"""The partial convolution, computed the way CRAI computes it.

A partial convolution sees only valid inputs. For a window with ``msum`` valid
inputs (counted over every input channel) it returns ``conv(X * M) / msum + b``
(CRAI's form) or ``conv(X * M) * window / msum + b`` (Liu et al. 2018, NVIDIA's
form), and marks the output valid; a window with no valid input gives 0 and an
invalid output.

Every input channel of a layer shares its mask except at the network input, so
the mask convolution (all-ones weights of shape ``Cout x Cin x k x k`` in the
textbook form) reduces to one box sum over the channel-summed mask. Layers
therefore take a *count map* of shape ``(N, 1, H, W)``: the number of valid
input channels at each point.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from xcrai.choices import NORMALIZATIONS as NORMALIZATIONS

Padding = Literal["zeros", "global"]
Normalization = Literal["crai", "window"]
Activation = Literal["relu", "leaky_relu", "none"]

PADDINGS: tuple[str, ...] = ("zeros", "global")


def wrap_longitude(x: torch.Tensor, width: int) -> torch.Tensor:
    """Extend the last dimension circularly by ``width`` on both sides."""
    if width == 0:
        return x
    size = x.shape[-1]
    if width > size:  # tiny grids deep in the U-Net: wrap more than once
        index = torch.arange(-width, size + width, device=x.device) % size
        return x.index_select(-1, index)
    if x.requires_grad:  # cat's backward is cheaper than that of slice assignments
        return torch.cat([x[..., -width:], x, x[..., :width]], dim=-1)
    out = wider_empty(x, x.shape[1], width, x.dtype)  # without autograd, faster than cat
    return write_wrapped(out, x, width)


def wider_empty(
    like: torch.Tensor,
    channels: int,
    width: int,
    dtype: torch.dtype,
    size: tuple[int, int] | None = None,
) -> torch.Tensor:
    """An uninitialised (N, channels, H, W + 2 width) tensor in the layout of ``like``;
    (H, W) is ``size``, by default that of ``like``."""
    n, _, h, w = like.shape
    h, w = size or (h, w)
    return torch.empty(
        (n, channels, h, w + 2 * width), dtype=dtype, device=like.device,
        memory_format=memory_format(like),
    )  # fmt: skip


def write_wrapped(out: torch.Tensor, x: torch.Tensor, width: int) -> torch.Tensor:
    """Write ``x`` (N, C, H, W) into ``out`` (N, C, H, W + 2 width) extended circularly by
    ``width`` columns on each side; returns ``out``.

    The margins are copied from ``x``, not from ``out``: a read of ``out`` after writing it
    would keep ``torch.compile`` from fusing the three copies into one kernel.
    """
    size = x.shape[-1]
    out[..., width : width + size] = x
    if width:
        out[..., :width] = x[..., size - width :]
        out[..., width + size :] = x[..., :width]
    return out


def masked_features(h: torch.Tensor, m: torch.Tensor, width: int = 0) -> torch.Tensor:
    """``h * m`` extended circularly by ``width`` columns on each side, written in place
    (no separate copy for the wrap); ``width=0`` is the plain product."""
    size = h.shape[-1]
    if width == 0 or width > size or h.requires_grad:
        return wrap_longitude(h * m, width)
    out = wider_empty(h, h.shape[1], width, torch.promote_types(h.dtype, m.dtype))
    torch.mul(h, m, out=out[..., width : width + size])
    torch.mul(h[..., size - width :], m[..., size - width :], out=out[..., :width])
    torch.mul(h[..., :width], m[..., :width], out=out[..., width + size :])
    return out


def memory_format(x: torch.Tensor) -> torch.memory_format:
    """``channels_last`` for an NHWC tensor with more than one channel, else NCHW."""
    if x.shape[1] > 1 and x.is_contiguous(memory_format=torch.channels_last):
        return torch.channels_last
    return torch.contiguous_format


class PartialConv2d(nn.Module):
    """Partial convolution followed by optional batch norm and activation.

    Parameter names match CRAI's state dicts (``input_conv``, ``bn``) so that
    CRAI weights load directly.

    Parameters
    ----------
    in_channels, out_channels : int
        Channels of the features.
    kernel_size : int
        Odd kernel size; inputs are padded by ``kernel_size // 2``.
    stride : int
        1 or 2.
    bias : bool
        Whether the convolution has a bias (added after the normalisation).
    batch_norm : bool
        Batch normalisation after the convolution (eps 1e-5, as CRAI).
    activation : {"relu", "leaky_relu", "none"}
        Applied last.
    normalization : {"crai", "window"}
        ``"crai"`` divides by the count of valid inputs; ``"window"`` scales by
        window size over that count (Liu et al. 2018).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        *,
        bias: bool = False,
        batch_norm: bool = False,
        activation: Activation = "none",
        normalization: Normalization = "crai",
    ) -> None:
        super().__init__()
        self.input_conv = nn.Conv2d(
            in_channels, out_channels, kernel_size, stride=stride, padding=0, bias=bias
        )
        self.bn = nn.BatchNorm2d(out_channels, eps=1e-5) if batch_norm else None
        self.activation = activation
        self.normalization = normalization
        self.kernel_size = kernel_size
        self.stride = stride
        self.window = float(in_channels * kernel_size * kernel_size)

    def forward(
        self, x: torch.Tensor, count: torch.Tensor, padding: Padding = "zeros", wrapped: int = 0
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Convolve masked features.

        Parameters
        ----------
        x : Tensor (N, Cin, H, W)
            Features, already multiplied by their mask.
        count : Tensor (N, 1, H, W)
            Number of valid input channels at each point.
        padding : {"zeros", "global"}
        wrapped : int
            0, or (global padding only) ``kernel_size // 2`` when ``x`` is already
            extended circularly by that many columns on each side (W + 2 wrapped).

        Returns
        -------
        out : Tensor (N, Cout, H', W')
        mask : Tensor (N, 1, H', W')
            1.0 where the window saw at least one valid input, else 0.0.
        """
        p = self.kernel_size // 2
        k = self.kernel_size
        if wrapped and (padding != "global" or wrapped != p):
            raise ValueError(f"wrapped: expected 0 or {p} with global padding, got {wrapped}")
        if padding == "global":  # wrap longitude here; the convolution pads latitude
            x = x if wrapped else wrap_longitude(x, p)
            count, lon_pad = wrap_longitude(count, p), 0
        elif padding == "zeros":
            lon_pad = p
        else:
            raise ValueError(f"padding: expected 'zeros' or 'global', got {padding!r}")
        raw = F.conv2d(x, self.input_conv.weight, None, self.stride, (p, lon_pad))
        if count.dtype in (torch.float16, torch.bfloat16):  # keep counts exact integers
            count = count.float()
        msum = F.avg_pool2d(count, k, self.stride, (p, lon_pad), divisor_override=1)
        mask = (msum > 0).to(msum.dtype)
        if self.normalization == "crai":
            out = raw / msum.clamp(min=1.0)
        else:
            out = raw * (self.window / msum.clamp(min=1.0))
        if self.input_conv.bias is not None:
            out = out + self.input_conv.bias.view(1, -1, 1, 1)
        out = out * mask.to(out.dtype)
        if self.bn is not None:
            out = self.bn(out)
        if self.activation == "relu":
            out = F.relu(out)
        elif self.activation == "leaky_relu":
            out = F.leaky_relu(out, 0.01)
        return out, mask
