"""CRAI's partial-convolution U-Net, built from a plain configuration."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import nn

from xcrai.nn.pconv import (
    NORMALIZATIONS,
    Activation,
    Normalization,
    Padding,
    PartialConv2d,
    masked_features,
    memory_format,
    wider_empty,
    wrap_longitude,
    write_wrapped,
)
from xcrai.rules import boolean, choice, integer, record, sequence

#: a layer's record in a model file (``LayerConfig`` as a dict)
LAYER_RECORD = record(
    {"in_channels": integer(1), "out_channels": integer(1), "kernel_size": integer(1, odd=True),
     "batch_norm": boolean, "bias": boolean},
    required=("in_channels", "out_channels", "kernel_size", "batch_norm"),
)  # fmt: skip
LAYERS_RECORD = sequence(LAYER_RECORD, least=1)
#: the U-Net's record in a model file (:meth:`UNetConfig.to_dict`)
RECORD = record(
    {"encoder": LAYERS_RECORD, "decoder": LAYERS_RECORD, "normalization": choice(NORMALIZATIONS)},
    required=("encoder", "decoder"),
)

#: a U-Net layer's parameter in a CRAI state dict: part, index, and the rest of the name
_LAYER_KEY = re.compile(r"^(encoder|decoder)\.(\d+)\.partial_conv\.(.+)$")


@dataclass(frozen=True)
class LayerConfig:
    """One partial-convolution layer: its channels, kernel, and what follows it."""

    in_channels: int
    out_channels: int
    kernel_size: int
    batch_norm: bool
    bias: bool = False


@dataclass(frozen=True)
class UNetConfig:
    """Architecture of a partial-convolution U-Net.

    Encoder layers have stride 2 and ReLU; decoder layers (mirroring them, the
    last one producing the output channels) have stride 1 and LeakyReLU(0.01),
    except the last, which has no activation.

    Parameters
    ----------
    encoder, decoder : tuple of LayerConfig
        Layers in order of application; ``len(decoder) == len(encoder)``.
    normalization : {"crai", "window"}
        How partial convolutions rescale by the count of valid inputs.
    """

    encoder: tuple[LayerConfig, ...]
    decoder: tuple[LayerConfig, ...]
    normalization: Normalization = "crai"

    def __post_init__(self) -> None:
        if len(self.encoder) != len(self.decoder) or not self.encoder:
            raise ValueError(
                "architecture: expected as many decoder as encoder layers (at least one), "
                f"got {len(self.encoder)} and {len(self.decoder)}"
            )
        if self.normalization not in NORMALIZATIONS:
            raise ValueError(
                f"normalization: expected one of {NORMALIZATIONS}, got {self.normalization!r}"
            )

    @property
    def in_channels(self) -> int:
        return self.encoder[0].in_channels

    @property
    def out_channels(self) -> int:
        return self.decoder[-1].out_channels

    @property
    def depth(self) -> int:
        return len(self.encoder)

    @classmethod
    def from_n_filters(
        cls,
        n_filters: int = 18,
        depth: int = 3,
        *,
        in_channels: int = 1,
        out_channels: int = 1,
        normalization: Normalization = "crai",
    ) -> UNetConfig:
        """CRAI's "n_filters" family (its demo model): kernels 7, 5, 5, 3, ...;
        channels nf, 2nf, 4nf, 8nf, 8nf, ...; no batch norm in the first layer."""
        channels = [n_filters * 2 ** min(i, 3) for i in range(depth)]
        kernels = [7, 5, 5, 3, 3, 3, 3, 3][:depth] + [3] * max(0, depth - 8)
        encoder = []
        for i in range(depth):
            cin = in_channels if i == 0 else channels[i - 1]
            encoder.append(LayerConfig(cin, channels[i], kernels[i], batch_norm=i > 0))
        decoder = []
        for j in range(depth):
            level = depth - 1 - j
            skip = in_channels if level == 0 else channels[level - 1]
            cout = out_channels if level == 0 else channels[level - 1]
            last = level == 0
            decoder.append(
                LayerConfig(channels[level] + skip, cout, 3, batch_norm=not last, bias=last)
            )
        return cls(tuple(encoder), tuple(decoder), normalization)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["encoder"] = [dict(layer) for layer in d["encoder"]]
        d["decoder"] = [dict(layer) for layer in d["decoder"]]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> UNetConfig:
        return cls(
            encoder=tuple(LayerConfig(**layer) for layer in d["encoder"]),
            decoder=tuple(LayerConfig(**layer) for layer in d["decoder"]),
            normalization=d.get("normalization", "crai"),
        )


class Block(nn.Module):
    """One U-Net layer; the ``partial_conv`` attribute gives CRAI's state-dict key names."""

    def __init__(
        self, layer: LayerConfig, normalization: Normalization, stride: int, activation: Activation
    ) -> None:
        super().__init__()
        self.partial_conv = PartialConv2d(
            layer.in_channels,
            layer.out_channels,
            layer.kernel_size,
            stride=stride,
            bias=layer.bias,
            batch_norm=layer.batch_norm,
            activation=activation,
            normalization=normalization,
        )


class PartialConvUNet(nn.Module):
    """The U-Net of CRAI (Kadow et al. 2020), built from a :class:`UNetConfig`.

    Module names match CRAI's state dicts (``encoder.{i}.partial_conv...``).

    Examples
    --------
    >>> net = PartialConvUNet(UNetConfig.from_n_filters(18, 3))
    >>> x = torch.zeros(2, 1, 72, 72); m = torch.ones_like(x)
    >>> out, reach = net(x, m, padding="global")
    >>> out.shape, reach.shape
    (torch.Size([2, 1, 72, 72]), torch.Size([2, 1, 72, 72]))
    """

    def __init__(self, config: UNetConfig) -> None:
        super().__init__()
        self.config = config
        n = config.normalization
        self.encoder = nn.ModuleList(Block(layer, n, 2, "relu") for layer in config.encoder)
        self.decoder = nn.ModuleList(
            Block(layer, n, 1, "none" if j == config.depth - 1 else "leaky_relu")
            for j, layer in enumerate(config.decoder)
        )

    def blocks(self) -> tuple[list[Block], list[Block]]:
        """The encoder's and the decoder's layers, typed (a ModuleList yields Modules)."""
        return cast(list[Block], list(self.encoder)), cast(list[Block], list(self.decoder))

    def forward(
        self, x: torch.Tensor, mask: torch.Tensor, padding: Padding = "zeros"
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Run the network.

        Parameters
        ----------
        x : Tensor (N, Cin, H, W)
            Input fields; values under ``mask == 0`` are ignored (but must be
            finite).
        mask : Tensor (N, Cin, H, W)
            1 where valid, 0 in holes.
        padding : {"zeros", "global"}

        Returns
        -------
        out : Tensor (N, Cout, H, W)
            The raw network output.
        reach : Tensor (N, 1, H, W)
            1 where the output is backed by at least one valid input, 0 where
            no window ever reached valid data (the output is 0 there).
        """
        # Without autograd and with global padding, each layer's input is written already
        # extended by its kernel's half-width in longitude (no separate copy for the wrap).
        # (torch.compile fuses the wraps itself and does worse with the in-place writes)
        prewrap = (
            padding == "global"
            and not torch.is_grad_enabled()
            and not torch.compiler.is_compiling()
        )
        encoder, decoder = self.blocks()
        widths = [b.partial_conv.kernel_size // 2 if prewrap else 0 for b in encoder]
        # (features multiplied by their mask and extended by `width`, width, valid count)
        skips = [(masked_features(x, mask, widths[0]), widths[0], mask.sum(dim=1, keepdim=True))]
        for i, block in enumerate(encoder):
            masked, width, count = skips[-1]
            h, m = block.partial_conv(masked, count, padding, wrapped=width)
            width = widths[i + 1] if i + 1 < len(widths) else 0
            skips.append((masked_features(h, m.to(h.dtype), width), width, m * h.shape[1]))
        masked, _, count = skips.pop()
        for block in decoder:
            skip_masked, skip_width, skip_count = skips.pop()
            skip_masked = skip_masked[..., skip_width : skip_masked.shape[-1] - skip_width]
            size = skip_masked.shape[-2:]
            width = block.partial_conv.kernel_size // 2 if prewrap else 0
            if prewrap:
                masked = upsample_concat(masked, skip_masked, width)
            else:
                deep = F.interpolate(masked, size=size, mode="nearest")
                masked = concat_channels(deep, skip_masked)
            count = F.interpolate(count, size=size, mode="nearest") + skip_count
            h, m = block.partial_conv(masked, count, padding, wrapped=width)
            masked, count = h * m.to(h.dtype), m * h.shape[1]
        return h, m


def concat_channels(deep: torch.Tensor, skip: torch.Tensor, width: int = 0) -> torch.Tensor:
    """``torch.cat([deep, skip], 1)`` in the memory format of ``deep``, extended circularly
    by ``width`` columns on each side (as ``wrap_longitude`` would).

    A one-channel skip (the network input) is both NCHW- and NHWC-contiguous, and a plain
    ``cat`` then returns NCHW, which the next convolution would convert back at a cost.
    Without autograd the result is filled in place, which is faster than ``cat`` on CPUs;
    with it, ``cat`` is (its backward is cheaper than that of slice assignments).
    """
    fmt = memory_format(deep)
    size = deep.shape[-1]
    if deep.requires_grad or skip.requires_grad or width > size:
        return wrap_longitude(torch.cat([deep, skip], 1).contiguous(memory_format=fmt), width)
    c = deep.shape[1]
    dtype = torch.promote_types(deep.dtype, skip.dtype)
    out = wider_empty(deep, c + skip.shape[1], width, dtype)
    write_wrapped(out[:, :c], deep, width)
    write_wrapped(out[:, c:], skip, width)
    return out


def upsample_concat(small: torch.Tensor, skip: torch.Tensor, width: int = 0) -> torch.Tensor:
    """``concat_channels(F.interpolate(small, size=skip.shape[-2:], mode="nearest"), skip,
    width)`` without the upsampled intermediate (for inference).

    A stride-2 layer maps H points to ceil(H / 2), and nearest upsampling back to H takes
    row ``i // 2`` (and column ``j // 2``) for every H, odd or even: four strided copies
    write it straight into the concatenation. Other sizes fall back to ``F.interpolate``.
    """
    _, c, h, w = small.shape
    rows, cols = skip.shape[-2:]
    if (rows + 1) // 2 != h or (cols + 1) // 2 != w or width > cols or torch.is_grad_enabled():
        deep = F.interpolate(small, size=(rows, cols), mode="nearest")
        return concat_channels(deep, skip, width)
    dtype = torch.promote_types(small.dtype, skip.dtype)
    out = wider_empty(small, c + skip.shape[1], width, dtype, size=(rows, cols))
    middle = out[..., width : width + cols]
    for dy in (0, 1):
        for dx in (0, 1):
            middle[:, :c, dy::2, dx::2] = small[..., : (rows - dy + 1) // 2, : (cols - dx + 1) // 2]
    middle[:, c:] = skip
    if width:  # the margins, from the middle just written
        out[..., :width] = out[..., cols : cols + width]
        out[..., cols + width :] = out[..., width : 2 * width]
    return out


def infer_architecture(state: dict[str, torch.Tensor], source: str | None = None) -> UNetConfig:
    """Build the U-Net configuration from CRAI state-dict keys and shapes (``source``: the
    file they came from, for errors)."""
    layers: dict[tuple[str, int], dict[str, torch.Tensor]] = {}
    unknown = []
    for key, tensor in state.items():
        match = _LAYER_KEY.match(key)
        if match is None:
            unknown.append(key)
            continue
        layers.setdefault((match[1], int(match[2])), {})[match[3]] = tensor
    if unknown:
        where = "the checkpoint" if source is None else repr(source)
        raise ValueError(
            f"model: {where} holds weights of a network xcrai does not support: keys "
            f"{unknown[:4]} are neither CRAI's partial-convolution U-Net layers "
            "(encoder.N.partial_conv.*, decoder.N.partial_conv.*) nor its recurrent or "
            "attention modules; xcrai reads CRAI's checkpoints and its own model files"
        )

    def build(part: str) -> tuple[LayerConfig, ...]:
        n = 1 + max((i for p, i in layers if p == part), default=-1)
        out = []
        for i in range(n):
            params = layers.get((part, i), {})
            weight = params.get("input_conv.weight")
            if weight is None or weight.ndim != 4:
                raise ValueError(f"model: {part} layer {i} has no convolution weight")
            cout, cin, kh, kw = weight.shape
            if kh != kw or kh % 2 == 0:
                raise ValueError(
                    f"model: {part} layer {i} has a {kh}x{kw} kernel (need odd square)"
                )
            out.append(
                LayerConfig(
                    int(cin),
                    int(cout),
                    int(kh),
                    batch_norm="bn.weight" in params,
                    bias="input_conv.bias" in params,
                )
            )
        return tuple(out)

    config = UNetConfig(build("encoder"), build("decoder"), normalization="crai")
    check_channels(config)
    return config


def check_channels(config: UNetConfig) -> None:
    """A ValueError naming the first layer whose input channels do not match what feeds it.

    Encoder layer i takes encoder layer i - 1's output; decoder layer j takes the output
    of the layer below (the last encoder layer, or decoder layer j - 1) and the skip
    connection (encoder layer depth - 2 - j's output, or the network input for the last).

    Examples
    --------
    >>> check_channels(UNetConfig.from_n_filters(18, 3))
    """
    encoder, decoder = config.encoder, config.decoder
    for i in range(1, len(encoder)):
        if encoder[i].in_channels != encoder[i - 1].out_channels:
            raise ValueError(
                f"model: encoder layer {i} takes {encoder[i].in_channels} input channels, "
                f"but encoder layer {i - 1} gives {encoder[i - 1].out_channels}; the checkpoint "
                "is inconsistent (corrupt, or not a partial-convolution U-Net)"
            )
    skips = [layer.out_channels for layer in encoder[-2::-1]] + [config.in_channels]
    below = encoder[-1].out_channels
    for j, (layer, skip) in enumerate(zip(decoder, skips, strict=True)):
        if layer.in_channels != below + skip:
            raise ValueError(
                f"model: decoder layer {j} takes {layer.in_channels} input channels, but the "
                f"layer below gives {below} and the skip connection {skip} ({below + skip} in "
                "all); the checkpoint is inconsistent (corrupt, or not a partial-convolution "
                "U-Net)"
            )
        below = layer.out_channels
