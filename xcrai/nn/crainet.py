"""CRAI's recurrent (ConvLSTM, TrajGRU) and attention networks, read from its checkpoints.

CRAI's ``CRAINet`` extends the partial-convolution U-Net of :mod:`xcrai.nn.unet` with

- *recurrent memory* (``--lstm-steps P,F`` or ``--gru-steps P,F``): the P + F + 1 time steps
  t - P .. t + F go through the network as a sequence; every encoder block runs a ConvLSTM
  or TrajGRU over the sequence after its partial convolution, and every decoder block runs
  one before its upsampling, starting from the final state of the matching encoder block;
- *channel steps* (``--channel-steps P,F``): the time steps are stacked as channels instead
  (variable-major: for each variable, its steps t - P .. t + F);
- *attention* (``--attention``): the first variable (with its steps, if any) is the main
  input; the others go through their own partial-convolution encoder, whose outputs are
  weighted by a channel attention (from their own pooled features) and a spatial attention
  (from the main encoder's features) and joined to the skip connections.

:class:`CraiNetConfig` reads all of that from a state dict; :class:`CraiNet` is the
network, with CRAI's parameter names, called like
:meth:`xcrai.nn.unet.PartialConvUNet.forward`. Recurrent memory together with attention
is not supported (CRAI joins the recurrent states of both paths; no reference exists).
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, replace
from typing import Any, Literal, cast

import torch
import torch.nn.functional as F
from torch import nn

from xcrai.nn.pconv import Padding, PartialConv2d
from xcrai.nn.unet import LAYER_RECORD, LAYERS_RECORD, LayerConfig
from xcrai.rules import SHAPE, boolean, choice, integer, optional, record, sequence

Recurrent = Literal["lstm", "gru"]

_BLOCK = re.compile(r"^(encoder|decoder|attention_module)\.(\d+)\.")

MEMORY_RECORD = record(
    {"channels": integer(1), "kernel_size": integer(1, odd=True),
     "size": optional(SHAPE), "links": integer(0), "flow_channels": integer(0),
     "flow_kernel": integer(0)},
    required=("channels", "kernel_size"),
)  # fmt: skip
ATTENTION_RECORD = record(
    {"layer": LAYER_RECORD, "hidden": integer(1), "spatial_kernel": integer(1, odd=True)},
    required=("layer", "hidden"),
)
#: a CraiNet's record in a model file (:meth:`CraiNetConfig.to_dict`)
RECORD = record(
    {"kind": choice(("crainet",)), "variables": integer(1),
     "steps": sequence(integer(0), length=2), "sequence": boolean, "encoder": LAYERS_RECORD,
     "decoder": LAYERS_RECORD, "recurrent": optional(choice(("lstm", "gru"))),
     "encoder_memory": sequence(MEMORY_RECORD), "decoder_memory": sequence(MEMORY_RECORD),
     "attention": sequence(ATTENTION_RECORD)},
    required=("variables", "steps", "sequence", "encoder", "decoder"),
)  # fmt: skip


@dataclass(frozen=True)
class MemoryConfig:
    """The recurrent memory of one U-Net block (a ConvLSTM or a TrajGRU).

    Parameters
    ----------
    channels : int
        Channels of the input and of the hidden state (CRAI uses the same number).
    kernel_size : int
        Kernel of the ConvLSTM gate convolution, or of the TrajGRU input-to-state
        convolution (``i2h``); padded by ``kernel_size // 2``.
    size : tuple of int, optional
        ConvLSTM only: the (rows, columns) of its peephole weights, which fixes the grid
        the block runs on.
    links : int
        TrajGRU only: the number of flow fields (CRAI's ``L``, 5).
    flow_channels : int
        TrajGRU only: hidden channels of its flow generator (32 in CRAI).
    flow_kernel : int
        TrajGRU only: kernel of the flow generator's convolutions (5 in CRAI).
    """

    channels: int
    kernel_size: int
    size: tuple[int, int] | None = None
    links: int = 0
    flow_channels: int = 0
    flow_kernel: int = 0

    def to_dict(self) -> dict[str, Any]:
        """A plain dict (lists, not tuples)."""
        d = asdict(self)
        d["size"] = None if self.size is None else list(self.size)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> MemoryConfig:
        """The inverse of :meth:`to_dict`."""
        size = d.get("size")
        return cls(**{**d, "size": None if size is None else (int(size[0]), int(size[1]))})


@dataclass(frozen=True)
class AttentionConfig:
    """One attention layer of CRAI's ``--attention``.

    Parameters
    ----------
    layer : LayerConfig
        The partial convolution (stride 2, ReLU) that encodes the fusion variables.
    hidden : int
        Hidden size of the channel attention's two-layer perceptron (the layer's output
        channels divided by CRAI's ``--channel-reduction-rate``).
    spatial_kernel : int
        Kernel of the spatial attention's convolution (7 in CRAI).
    """

    layer: LayerConfig
    hidden: int
    spatial_kernel: int = 7

    def to_dict(self) -> dict[str, Any]:
        """A plain dict."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> AttentionConfig:
        """The inverse of :meth:`to_dict`."""
        return cls(LayerConfig(**d["layer"]), int(d["hidden"]), int(d.get("spatial_kernel", 7)))


@dataclass(frozen=True)
class CraiNetConfig:
    """Architecture of a CRAI network with recurrent memory, channel steps or attention.

    Build it from a checkpoint with :meth:`from_state_dict`. The constructor checks that the
    layers fit together and raises a ValueError starting ``"model: "`` where they do not.

    Parameters
    ----------
    variables : int
        Number of input variables (the first one is the main variable).
    steps : tuple of int
        (P, F): past and future time steps around the current step t.
    sequence : bool
        True when the P + F + 1 steps are fed as a sequence (recurrent memory), False
        when they are stacked as channels (or there is one step).
    encoder, decoder : tuple of LayerConfig
        The partial convolutions of the main U-Net path, in order of application.
        Decoder input channels include the skip connections (and attention features).
    recurrent : {"lstm", "gru"} or None
        The recurrent memory of every block, if any.
    encoder_memory, decoder_memory : tuple of MemoryConfig
        One per encoder/decoder layer with recurrent memory, else empty.
    attention : tuple of AttentionConfig
        One per encoder layer with ``--attention``, else empty.

    Examples
    --------
    >>> import torch
    >>> path = "/work/shared/data/crai/ext/conv-lstm/model.pth"  # doctest: +SKIP
    >>> ckpt = torch.load(path, map_location="cpu", weights_only=True)  # doctest: +SKIP
    >>> state = ckpt[ckpt["labels"][-1]]["model"]  # doctest: +SKIP
    >>> config = CraiNetConfig.from_state_dict(state, variables=1, steps=(3, 1))  # doctest: +SKIP
    >>> config.in_channels, config.recurrent  # doctest: +SKIP
    (5, 'lstm')
    """

    variables: int
    steps: tuple[int, int]
    sequence: bool
    encoder: tuple[LayerConfig, ...]
    decoder: tuple[LayerConfig, ...]
    recurrent: Recurrent | None = None
    encoder_memory: tuple[MemoryConfig, ...] = ()
    decoder_memory: tuple[MemoryConfig, ...] = ()
    attention: tuple[AttentionConfig, ...] = ()

    def __post_init__(self) -> None:
        self._check()

    # -- derived sizes -------------------------------------------------------------------
    @property
    def n_steps(self) -> int:
        """P + F + 1."""
        return self.steps[0] + self.steps[1] + 1

    @property
    def in_channels(self) -> int:
        """Channels the caller feeds: ``variables * (P + F + 1)``, variable-major."""
        return self.variables * self.n_steps

    @property
    def out_channels(self) -> int:
        """Channels of the output."""
        return self.decoder[-1].out_channels

    @property
    def depth(self) -> int:
        """Number of encoder (and decoder) layers."""
        return len(self.encoder)

    @property
    def normalization(self) -> Literal["crai"]:
        """How the partial convolutions rescale: always CRAI's (by the valid count)."""
        return "crai"

    @property
    def main_channels(self) -> int:
        """Channels per sequence step that enter the main encoder's first layer."""
        per_step = self.variables if self.sequence else self.in_channels
        if not self.attention:
            return per_step
        return per_step // self.variables

    @property
    def fusion_channels(self) -> int:
        """Channels per sequence step of the attention (fusion) encoder's input; 0 without."""
        if not self.attention:
            return 0
        per_step = self.variables if self.sequence else self.in_channels
        return per_step - self.main_channels

    def skip_channels(self) -> list[int]:
        """Channels of the encoder states the decoder reads: index 0 is the input, index
        i + 1 the output of encoder layer i (with the attention features joined)."""
        skips = [self.main_channels + self.fusion_channels]
        for i, layer in enumerate(self.encoder):
            extra = self.attention[i].layer.out_channels if self.attention else 0
            skips.append(layer.out_channels + extra)
        return skips

    # -- validation ----------------------------------------------------------------------
    def _check(self) -> None:
        p, f = self.steps
        if self.variables < 1 or p < 0 or f < 0:
            raise ValueError(
                f"model: expected variables >= 1 and steps (P, F) >= 0, got "
                f"variables={self.variables}, steps={self.steps}"
            )
        if not self.encoder or len(self.encoder) != len(self.decoder):
            raise ValueError(
                "model: expected as many decoder as encoder layers (at least one), got "
                f"{len(self.encoder)} and {len(self.decoder)}"
            )
        if self.recurrent not in (None, "lstm", "gru"):
            raise ValueError(f"model: expected recurrent 'lstm', 'gru' or None, got "
                             f"{self.recurrent!r}")  # fmt: skip
        if self.sequence != (self.recurrent is not None):
            raise ValueError("model: time steps come as a sequence exactly when the model has "
                             f"recurrent memory; got sequence={self.sequence} with recurrent="
                             f"{self.recurrent!r}")  # fmt: skip
        if self.recurrent is not None:
            if p + f == 0:
                flag = "--lstm-steps" if self.recurrent == "lstm" else "--gru-steps"
                raise ValueError(
                    f"model: a recurrent ({self.recurrent}) checkpoint needs steps (P, F) with "
                    f"P + F >= 1 (CRAI's {flag}), got {self.steps}"
                )
            if len(self.encoder_memory) != self.depth or len(self.decoder_memory) != self.depth:
                raise ValueError("model: expected recurrent memory in every encoder and "
                                 "decoder layer")  # fmt: skip
            if self.attention:
                raise ValueError("model: recurrent memory together with attention is not "
                                 "supported")  # fmt: skip
        elif self.encoder_memory or self.decoder_memory:
            raise ValueError("model: recurrent memory given without a recurrent kind")
        if self.attention:
            if len(self.attention) != self.depth:
                raise ValueError(
                    f"model: expected one attention layer per encoder layer ({self.depth}), "
                    f"got {len(self.attention)}"
                )
            if self.variables < 2:
                raise ValueError("model: an attention checkpoint needs at least 2 variables "
                                 f"(the first is the main one), got {self.variables}")  # fmt: skip
        self._check_channels()

    def _check_channels(self) -> None:
        enc = self.encoder
        got = enc[0].in_channels
        if got != self.main_channels:
            per = "per sequence step" if self.sequence else "in all"
            hint = ""
            if not self.sequence and not self.attention and got % self.variables == 0:
                hint = (f"; with {self.variables} variable(s) it fits steps (P, F) with P + F = "
                        f"{got // self.variables - 1}")  # fmt: skip
            if not self.sequence and self.attention:
                hint = f"; it fits steps (P, F) with P + F = {got - 1}"
            raise ValueError(
                f"model: expected encoder layer 0 to take {self.main_channels} input channels "
                f"({per}) for variables={self.variables}, steps={self.steps}"
                f"{' with attention' if self.attention else ''}, but the checkpoint's takes "
                f"{got}{hint}"
            )
        for i in range(1, self.depth):
            if enc[i].in_channels != enc[i - 1].out_channels:
                raise ValueError(
                    f"model: expected encoder layer {i} to take {enc[i - 1].out_channels} input "
                    f"channels (encoder layer {i - 1}'s output), got {enc[i].in_channels}"
                )
        for i, att in enumerate(self.attention):
            want = self.fusion_channels if i == 0 else self.attention[i - 1].layer.out_channels
            if att.layer.in_channels != want:
                raise ValueError(
                    f"model: expected attention layer {i} to take {want} input channels, got "
                    f"{att.layer.in_channels} (check variables={self.variables} and "
                    f"steps={self.steps})"
                )
        skips = self.skip_channels()
        below = skips[-1]
        for j, layer in enumerate(self.decoder):
            skip = skips[self.depth - 1 - j]
            if self.decoder_memory and self.decoder_memory[j].channels != below:
                raise ValueError(
                    f"model: expected decoder layer {j}'s memory to have {below} channels, got "
                    f"{self.decoder_memory[j].channels}"
                )
            if layer.in_channels != below + skip:
                raise ValueError(
                    f"model: expected decoder layer {j} to take {below + skip} input channels "
                    f"({below} from below, {skip} skipped), got {layer.in_channels}"
                )
            below = layer.out_channels
        for i, mem in enumerate(self.encoder_memory):
            if mem.channels != enc[i].out_channels:
                raise ValueError(
                    f"model: expected encoder layer {i}'s memory to have {enc[i].out_channels} "
                    f"channels, got {mem.channels}"
                )

    # -- plain data ----------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """Plain dicts and lists, with ``"kind": "crainet"``."""
        return {
            "kind": "crainet",
            "variables": self.variables,
            "steps": list(self.steps),
            "sequence": self.sequence,
            "encoder": [asdict(layer) for layer in self.encoder],
            "decoder": [asdict(layer) for layer in self.decoder],
            "recurrent": self.recurrent,
            "encoder_memory": [m.to_dict() for m in self.encoder_memory],
            "decoder_memory": [m.to_dict() for m in self.decoder_memory],
            "attention": [a.to_dict() for a in self.attention],
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CraiNetConfig:
        """The inverse of :meth:`to_dict`."""
        if d.get("kind", "crainet") != "crainet":
            raise ValueError(f"model: expected a config of kind 'crainet', got {d['kind']!r}")
        return cls(
            variables=int(d["variables"]),
            steps=(int(d["steps"][0]), int(d["steps"][1])),
            sequence=bool(d["sequence"]),
            encoder=tuple(LayerConfig(**layer) for layer in d["encoder"]),
            decoder=tuple(LayerConfig(**layer) for layer in d["decoder"]),
            recurrent=d.get("recurrent"),
            encoder_memory=tuple(MemoryConfig.from_dict(m) for m in d.get("encoder_memory", [])),
            decoder_memory=tuple(MemoryConfig.from_dict(m) for m in d.get("decoder_memory", [])),
            attention=tuple(AttentionConfig.from_dict(a) for a in d.get("attention", [])),
        )

    # -- from a checkpoint ---------------------------------------------------------------
    @classmethod
    def from_state_dict(
        cls, state: dict[str, torch.Tensor], *, variables: int, steps: tuple[int, int]
    ) -> CraiNetConfig:
        """Read the architecture from a CRAI state dict.

        Parameters
        ----------
        state : dict
            CRAI's ``model`` state dict, a leading ``"module."`` already stripped from
            its keys (inner names such as ``attention_module.0...`` intact); the
            ``mask_conv`` weights may be present or not.
        variables : int
            Number of input variables (CRAI's ``--data-types`` less targets).
        steps : tuple of int
            (P, F): CRAI's ``--lstm-steps`` or ``--gru-steps`` for recurrent models, its
            ``--channel-steps`` otherwise ((0, 0) for neither). Not stored in checkpoints.

        Returns
        -------
        CraiNetConfig

        Raises
        ------
        ValueError
            ``"model: ..."`` for a state dict this class cannot interpret, naming what it
            expected (for instance other ``steps``).
        """
        if len(steps) != 2:
            raise ValueError(f"steps: expected (P, F), got {steps!r}")
        steps = (int(steps[0]), int(steps[1]))
        state = {k: v for k, v in state.items() if ".mask_conv." not in k}
        blocks: dict[tuple[str, int], dict[str, torch.Tensor]] = {}
        unknown = []
        for key, tensor in state.items():
            match = _BLOCK.match(key)
            if match is None:
                unknown.append(key)
                continue
            blocks.setdefault((match[1], int(match[2])), {})[key[match.end() :]] = tensor
        if unknown:
            raise ValueError(f"model: unexpected keys in the state dict: {unknown[:4]}")

        def count(part: str) -> int:
            return 1 + max((i for p, i in blocks if p == part), default=-1)

        def pconv(part: str, i: int, prefix: str = "partial_conv.") -> LayerConfig:
            params = blocks.get((part, i), {})
            weight = params.get(prefix + "input_conv.weight")
            if weight is None or weight.ndim != 4:
                raise ValueError(f"model: {part} layer {i} has no partial-convolution weight")
            cout, cin, kh, kw = weight.shape
            if kh != kw or kh % 2 == 0:
                raise ValueError(f"model: {part} layer {i} has a {kh}x{kw} kernel (expected "
                                 "an odd square one)")  # fmt: skip
            return LayerConfig(
                int(cin),
                int(cout),
                int(kh),
                batch_norm=prefix + "bn.weight" in params,
                bias=prefix + "input_conv.bias" in params,
            )

        depth = count("encoder")
        encoder = tuple(pconv("encoder", i) for i in range(depth))
        decoder = tuple(pconv("decoder", i) for i in range(count("decoder")))
        keys = [k for (p, _), params in blocks.items() for k in params if p != "attention_module"]
        lstm = any(k.startswith("recurrent_conv.lstm_conv.") for k in keys)
        gru = any(k.startswith("recurrent_conv.i2h.") for k in keys)
        if lstm and gru:
            raise ValueError("model: the state dict holds both ConvLSTM and TrajGRU layers")
        recurrent: Recurrent | None = "lstm" if lstm else "gru" if gru else None
        if any(
            k.startswith("partial_conv_enc.recurrent_conv.")
            for (p, _), params in blocks.items()
            if p == "attention_module"
            for k in params
        ):
            raise ValueError("model: recurrent memory together with attention is not supported")

        def memory(part: str, i: int) -> MemoryConfig:
            params = blocks.get((part, i), {})
            if recurrent == "lstm":
                conv, peep = (
                    params.get("recurrent_conv.lstm_conv.weight"),
                    params.get("recurrent_conv.Wci"),
                )
                if conv is None or peep is None or peep.ndim != 4:
                    raise ValueError(f"model: expected a ConvLSTM in {part} layer {i}")
                return MemoryConfig(
                    int(peep.shape[1]),
                    int(conv.shape[-1]),
                    size=(int(peep.shape[2]), int(peep.shape[3])),
                )
            i2h, flows = (
                params.get("recurrent_conv.i2h.weight"),
                params.get("recurrent_conv.flows_conv.weight"),
            )
            ret = params.get("recurrent_conv.ret.weight")
            if i2h is None or flows is None or ret is None:
                raise ValueError(f"model: expected a TrajGRU in {part} layer {i}")
            return MemoryConfig(
                int(i2h.shape[1]),
                int(i2h.shape[-1]),
                links=int(flows.shape[0]) // 2,
                flow_channels=int(flows.shape[1]),
                flow_kernel=int(flows.shape[-1]),
            )

        enc_mem: tuple[MemoryConfig, ...] = ()
        dec_mem: tuple[MemoryConfig, ...] = ()
        if recurrent is not None:
            enc_mem = tuple(memory("encoder", i) for i in range(depth))
            dec_mem = tuple(memory("decoder", i) for i in range(len(decoder)))

        attention = []
        for i in range(count("attention_module")):
            params = blocks.get(("attention_module", i), {})
            layer = pconv("attention_module", i, "partial_conv_enc.partial_conv.")
            hidden = params.get("channel_attention_block.1.weight")
            spatial = params.get("spatial_attention_block.0.weight")
            if hidden is None or spatial is None:
                raise ValueError(f"model: attention layer {i} lacks its channel or spatial "
                                 "attention weights")  # fmt: skip
            attention.append(AttentionConfig(layer, int(hidden.shape[0]), int(spatial.shape[-1])))

        config = cls(
            variables=int(variables),
            steps=steps,
            sequence=recurrent is not None,
            encoder=encoder,
            decoder=decoder,
            recurrent=recurrent,
            encoder_memory=enc_mem,
            decoder_memory=dec_mem,
            attention=tuple(attention),
        )
        # every tensor must have its place, with its shape
        expected = {
            k: tuple(v.shape) for k, v in CraiNet(config, device="meta").state_dict().items()
        }
        missing = sorted(set(expected) - set(state))
        extra = sorted(set(state) - set(expected))
        if missing or extra:
            raise ValueError(
                f"model: the state dict does not fit a CRAI network: missing {missing[:4]}, "
                f"unexpected {extra[:4]}"
            )
        for key, shape in expected.items():
            if tuple(state[key].shape) != shape:
                raise ValueError(f"model: expected {key} of shape {shape}, got "
                                 f"{tuple(state[key].shape)}")  # fmt: skip
        return config



#: what CRAI's trainer fixes for a TrajGRU: the kernel of every memory's input-to-state
#: convolution, the flow fields, and the flow generator's channels and kernel
TRAJGRU_KERNEL, TRAJGRU_LINKS, TRAJGRU_FLOW_CHANNELS, TRAJGRU_FLOW_KERNEL = 3, 5, 32, 5
#: CRAI's spatial attention kernel; its channel attention keeps the layer's width (its
#: ``--channel-reduction-rate`` 1)
SPATIAL_KERNEL = 7


def design(
    memory: Literal["lstm", "gru", "attention"],
    main: tuple[LayerConfig, ...],
    *,
    variables: int,
    steps: tuple[int, int],
    out_channels: int,
    shape: tuple[int, int],
) -> CraiNetConfig:
    """A fresh CRAI network around the encoder layers ``main`` of a U-Net, as CRAI's
    trainer lays it out.

    Parameters
    ----------
    memory : {"lstm", "gru", "attention"}
        ConvLSTM or TrajGRU memory in every block (the ``steps`` run as a sequence), or an
        attention encoder for the variables after the first (the steps stacked as
        channels).
    main : tuple of LayerConfig
        The main path's encoder layers, as :meth:`xcrai.nn.unet.UNetConfig.from_n_filters`
        lays them out; the first one's input channels are replaced by what this network
        feeds it. The decoder mirrors the skip connections (with the attention features
        joined to them).
    variables : int
        Input variables (with attention, the first is the main one).
    steps : tuple of int
        (P, F): past and future steps around the current one.
    out_channels : int
        Output channels (2 with ``uncertainty``).
    shape : tuple of int
        (rows, columns) of the fields: a ConvLSTM's peephole weights fix the grid of each
        block.

    Raises
    ------
    ValueError
        ``"network: ..."`` where the memory does not fit the input: a recurrent network
        without past or future steps, attention with one variable.
    """
    recurrent = memory if memory != "attention" else None
    n_steps = steps[0] + steps[1] + 1
    if recurrent is not None and n_steps == 1:
        flag = "--lstm-steps" if recurrent == "lstm" else "--gru-steps"
        raise ValueError(
            f"network: a {'ConvLSTM' if recurrent == 'lstm' else 'TrajGRU'} network runs over "
            f"a sequence of time steps; give time_context=(P, F) with P + F >= 1 (CRAI's "
            f"{flag}), e.g. (2, 2)"
        )
    if memory == "attention" and variables < 2:
        raise ValueError(
            "network: an attention network weighs further input variables against the first; "
            f"give at least 2 inputs (a Dataset with inputs=[...]), got {variables}"
        )
    first = variables if recurrent else n_steps if memory == "attention" else variables * n_steps
    encoder = [replace(main[0], in_channels=first), *main[1:]]
    attention: list[AttentionConfig] = []
    if memory == "attention":
        width = (variables - 1) * n_steps
        for layer in encoder:
            att = LayerConfig(width, layer.out_channels, min(layer.kernel_size, 5), True)
            attention.append(AttentionConfig(att, att.out_channels, SPATIAL_KERNEL))
            width = att.out_channels
    skips = [first + (variables - 1) * n_steps if attention else first]
    for i, layer in enumerate(encoder):
        skips.append(layer.out_channels + (attention[i].layer.out_channels if attention else 0))
    depth = len(encoder)
    decoder = []
    below = skips[-1]
    for j in range(depth):
        level = depth - 1 - j
        last = level == 0
        cout = out_channels if last else skips[level]
        decoder.append(LayerConfig(below + skips[level], cout, 3, not last, last))
        below = cout
    sizes = [shape]
    for _ in encoder:  # a stride-2 convolution with odd kernel k and padding k // 2
        sizes.append(((sizes[-1][0] - 1) // 2 + 1, (sizes[-1][1] - 1) // 2 + 1))

    def mem(channels: int, kernel: int, size: tuple[int, int]) -> MemoryConfig:
        if recurrent == "lstm":
            return MemoryConfig(channels, kernel, size=size)
        return MemoryConfig(
            channels, TRAJGRU_KERNEL, links=TRAJGRU_LINKS, flow_channels=TRAJGRU_FLOW_CHANNELS,
            flow_kernel=TRAJGRU_FLOW_KERNEL,
        )  # fmt: skip

    enc_mem: tuple[MemoryConfig, ...] = ()
    dec_mem: tuple[MemoryConfig, ...] = ()
    if recurrent is not None:
        enc_mem = tuple(
            mem(layer.out_channels, layer.kernel_size, sizes[i + 1])
            for i, layer in enumerate(encoder)
        )
        dec_mem = tuple(
            mem(decoder[j].in_channels - skips[depth - 1 - j], 3, sizes[depth - j])
            for j in range(depth)
        )
    return CraiNetConfig(
        variables=variables,
        steps=steps,
        sequence=recurrent is not None,
        encoder=tuple(encoder),
        decoder=tuple(decoder),
        recurrent=recurrent,
        encoder_memory=enc_mem,
        decoder_memory=dec_mem,
        attention=tuple(attention),
    )

# ---------------------------------------------------------------------------------------
# recurrent memory


class ConvLSTM(nn.Module):
    """CRAI's ConvLSTM with peephole weights over a fixed grid.

    Parameters
    ----------
    config : MemoryConfig
        ``size`` must be given.
    """

    def __init__(self, config: MemoryConfig, device: torch.device | str | None = None) -> None:
        super().__init__()
        if config.size is None:
            raise ValueError("model: a ConvLSTM needs the size of its peephole weights")
        c, k = config.channels, config.kernel_size
        self.channels = c
        self.size = config.size
        self.lstm_conv = nn.Conv2d(2 * c, 4 * c, k, padding=k // 2, bias=True, device=device)
        self.Wci = nn.Parameter(torch.zeros(1, c, *config.size, device=device))
        self.Wcf = nn.Parameter(torch.zeros(1, c, *config.size, device=device))
        self.Wco = nn.Parameter(torch.zeros(1, c, *config.size, device=device))

    def forward(
        self, seq: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor] | None = None
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """Run over a sequence.

        Parameters
        ----------
        seq : Tensor (N, T, C, H, W)
        state : (h, c), optional
            Initial hidden state and memory cell, each (N, C, H, W); zeros by default.

        Returns
        -------
        out : Tensor (N, T, C, H, W)
            The hidden state after each step.
        state : (h, c)
            The final hidden state and memory cell.
        """
        n, steps, _, rows, cols = seq.shape
        if (rows, cols) != tuple(self.size):
            raise ValueError(
                f"x: this model's ConvLSTM layers need a grid whose size here is "
                f"{self.size[0]}x{self.size[1]}, got {rows}x{cols}"
            )
        if state is None:
            zeros = seq.new_zeros(n, self.channels, rows, cols)
            h, cell = zeros, zeros
        else:
            h, cell = state
        outs = []
        for t in range(steps):
            gates = self.lstm_conv(torch.cat([seq[:, t], h], dim=1))
            i, f, g, o = torch.split(gates, self.channels, dim=1)
            i = torch.sigmoid(i + self.Wci * cell)
            f = torch.sigmoid(f + self.Wcf * cell)
            cell = f * cell + i * torch.tanh(g)
            o = torch.sigmoid(o + self.Wco * cell)
            h = o * torch.tanh(cell)
            outs.append(h)
        return torch.stack(outs, dim=1), (h, cell)


def warp(x: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """Sample ``x`` (N, C, H, W) bilinearly at each point displaced by ``flow`` (N, 2, H, W)
    (x then y, in grid points), zeros outside, as CRAI's TrajGRU does.

    Like CRAI, positions are scaled to [-1, 1] by ``size - 1`` while ``grid_sample`` uses
    ``align_corners=False`` (its default): a displacement of 0 samples slightly off the
    grid points. Kept so as to reproduce CRAI's numbers.
    """
    _, _, rows, cols = x.shape
    xs = torch.arange(cols, device=x.device, dtype=flow.dtype).view(1, 1, cols)
    ys = torch.arange(rows, device=x.device, dtype=flow.dtype).view(1, rows, 1)
    gx = 2.0 * (xs + flow[:, 0]) / max(cols - 1, 1) - 1.0
    gy = 2.0 * (ys + flow[:, 1]) / max(rows - 1, 1) - 1.0
    grid = torch.stack([gx, gy], dim=-1)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


class TrajGRU(nn.Module):
    """CRAI's TrajGRU (Shi et al. 2017): a GRU whose state-to-state connections follow
    learnt flow fields.

    Parameters
    ----------
    config : MemoryConfig
        ``links`` flows, ``flow_channels`` and ``flow_kernel`` must be given.
    crai_batch_order : bool
        False (default): each sample's input-to-state term comes from that sample. True:
        reproduce CRAI, which computes the input-to-state convolution for all
        (sample, step) pairs in sample-major order and then reshapes the result as
        (step, sample): for a batch of N > 1 sequences, step t of sample n receives the
        term of another sample and step. The output then depends on which sequences share
        the batch and in what order; use it only to reproduce numbers CRAI computed with
        the same batch (CRAI's evaluation puts all of a file's steps in one batch).
    """

    def __init__(
        self,
        config: MemoryConfig,
        *,
        crai_batch_order: bool = False,
        device: torch.device | str | None = None,
    ) -> None:
        super().__init__()
        c, k, links = config.channels, config.kernel_size, config.links
        fc, fk = config.flow_channels, config.flow_kernel
        if links < 1 or fc < 1 or fk < 1:
            raise ValueError("model: a TrajGRU needs links, flow_channels and flow_kernel")
        self.channels = c
        self.links = links
        self.crai_batch_order = crai_batch_order
        self.i2h = nn.Conv2d(c, 3 * c, k, padding=k // 2, device=device)
        self.i2f_conv1 = nn.Conv2d(c, fc, fk, padding=fk // 2, device=device)
        self.h2f_conv1 = nn.Conv2d(c, fc, fk, padding=fk // 2, device=device)
        self.flows_conv = nn.Conv2d(fc, 2 * links, fk, padding=fk // 2, device=device)
        self.ret = nn.Conv2d(c * links, 3 * c, 1, device=device)

    def forward(
        self, seq: torch.Tensor, state: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Run over a sequence.

        Parameters
        ----------
        seq : Tensor (N, T, C, H, W)
        state : Tensor (N, C, H, W), optional
            Initial hidden state; zeros by default.

        Returns
        -------
        out : Tensor (N, T, C, H, W)
            The hidden state after each step.
        state : Tensor (N, C, H, W)
            The final hidden state.
        """
        n, steps, c, rows, cols = seq.shape
        i2h = self.i2h(seq.reshape(n * steps, c, rows, cols))
        if self.crai_batch_order:  # CRAI's reshape: (sample, step) read as (step, sample)
            i2h_steps = list(i2h.reshape(steps, n, *i2h.shape[1:]).unbind(0))
        else:
            i2h_steps = list(i2h.reshape(n, steps, *i2h.shape[1:]).unbind(1))
        h = seq.new_zeros(n, self.channels, rows, cols) if state is None else state
        outs = []
        for t in range(steps):
            hidden = torch.tanh(self.i2f_conv1(seq[:, t]) + self.h2f_conv1(h))
            flows = torch.split(self.flows_conv(hidden), 2, dim=1)
            warped = torch.cat([warp(h, -flow) for flow in flows], dim=1)
            h2h_r, h2h_u, h2h_m = torch.split(self.ret(warped), self.channels, dim=1)
            i2h_r, i2h_u, i2h_m = torch.split(i2h_steps[t], self.channels, dim=1)
            reset = torch.sigmoid(i2h_r + h2h_r)
            update = torch.sigmoid(i2h_u + h2h_u)
            new = torch.tanh(i2h_m + reset * h2h_m)
            h = update * h + (1 - update) * new
            outs.append(h)
        return torch.stack(outs, dim=1), h


# ---------------------------------------------------------------------------------------
# blocks


class CraiBlock(nn.Module):
    """A U-Net layer: ``partial_conv`` and, with recurrent memory, ``recurrent_conv``."""

    def __init__(
        self,
        layer: LayerConfig,
        stride: int,
        activation: Literal["relu", "leaky_relu", "none"],
        memory: MemoryConfig | None = None,
        recurrent: Recurrent | None = None,
        *,
        crai_batch_order: bool = False,
        device: torch.device | str | None = None,
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
            normalization="crai",
        ).to(device)
        self.recurrent_conv: ConvLSTM | TrajGRU | None = None
        if memory is not None and recurrent == "lstm":
            self.recurrent_conv = ConvLSTM(memory, device=device)
        elif memory is not None and recurrent == "gru":
            self.recurrent_conv = TrajGRU(memory, crai_batch_order=crai_batch_order, device=device)


class AttentionBlock(nn.Module):
    """One attention layer: a partial-convolution encoder block for the fusion variables
    (``partial_conv_enc``) and CRAI's channel and spatial attention."""

    def __init__(self, config: AttentionConfig, device: torch.device | str | None = None) -> None:
        super().__init__()
        c, k = config.layer.out_channels, config.spatial_kernel
        self.partial_conv_enc = CraiBlock(config.layer, 2, "relu", device=device)
        self.channel_attention_block = nn.Sequential(
            nn.Flatten(),
            nn.Linear(c, config.hidden, device=device),
            nn.ReLU(),
            nn.Linear(config.hidden, c, device=device),
        )
        self.spatial_attention_block = nn.Sequential(
            nn.Conv2d(2, 1, k, padding=k // 2, device=device), nn.Sigmoid()
        )

    def forward(self, fusion: torch.Tensor, main: torch.Tensor) -> torch.Tensor:
        """The attention-weighted fusion features.

        Parameters
        ----------
        fusion : Tensor (B, Cf, H, W)
            Output of ``partial_conv_enc`` (not multiplied by its mask).
        main : Tensor (B, C, H, W)
            Output of the main encoder layer at the same depth.

        Returns
        -------
        Tensor (B, Cf, H, W)
        """
        rows, cols = fusion.shape[-2:]
        # as CRAI: pooling windows of rows x rows (the whole grid when it is square)
        if cols < rows or cols >= 2 * rows:
            raise ValueError(
                f"x: CRAI's channel attention pools {rows}x{rows} windows; a {rows}x{cols} "
                "grid at this depth does not give exactly one"
            )
        pooled_max = F.max_pool2d(fusion, rows)
        pooled_avg = F.avg_pool2d(fusion, rows)
        mlp = self.channel_attention_block
        weights = torch.sigmoid(mlp(pooled_max) + mlp(pooled_avg))
        channel = fusion * weights[:, :, None, None]
        summary = torch.cat(
            [main.max(dim=1, keepdim=True)[0], main.mean(dim=1, keepdim=True)], dim=1
        )
        return channel * self.spatial_attention_block(summary)


# ---------------------------------------------------------------------------------------
# the network


class CraiNet(nn.Module):
    """CRAI's ``CRAINet`` with recurrent memory, channel steps or attention.

    Parameter names equal CRAI's state-dict keys, less the ``mask_conv`` weights (all ones;
    drop them and load with ``strict=True``).

    Parameters
    ----------
    config : CraiNetConfig
    crai_batch_order : bool
        TrajGRU models only: reproduce CRAI's mixing of the samples of a batch (see
        :class:`TrajGRU`). Default False: every sample is computed on its own.
    device : torch.device or str, optional
        Where to create the parameters.

    Examples
    --------
    >>> import torch
    >>> path = "/work/shared/data/crai/ext/traj-gru/model.pth"  # doctest: +SKIP
    >>> ckpt = torch.load(path, map_location="cpu", weights_only=True)  # doctest: +SKIP
    >>> state = ckpt[ckpt["labels"][-1]]["model"]  # doctest: +SKIP
    >>> state = {k: v for k, v in state.items() if "mask_conv" not in k}  # doctest: +SKIP
    >>> config = CraiNetConfig.from_state_dict(state, variables=1, steps=(2, 2))  # doctest: +SKIP
    >>> net = CraiNet(config).eval()  # doctest: +SKIP
    >>> _ = net.load_state_dict(state, strict=True)  # doctest: +SKIP
    >>> x = torch.zeros(1, 5, 72, 72); m = torch.ones_like(x)  # doctest: +SKIP
    >>> out, reach = net(x, m)  # doctest: +SKIP
    """

    def __init__(
        self,
        config: CraiNetConfig,
        *,
        crai_batch_order: bool = False,
        device: torch.device | str | None = None,
    ) -> None:
        super().__init__()
        self.config = config
        depth = config.depth
        rec = config.recurrent
        enc_mem = config.encoder_memory or (None,) * depth
        dec_mem = config.decoder_memory or (None,) * depth
        self.encoder = nn.ModuleList(
            CraiBlock(layer, 2, "relu", mem, rec, crai_batch_order=crai_batch_order, device=device)
            for layer, mem in zip(config.encoder, enc_mem, strict=True)
        )
        self.decoder = nn.ModuleList(
            CraiBlock(
                layer,
                1,
                "none" if j == depth - 1 else "leaky_relu",
                mem,
                rec,
                crai_batch_order=crai_batch_order,
                device=device,
            )
            for j, (layer, mem) in enumerate(zip(config.decoder, dec_mem, strict=True))
        )
        if config.attention:
            self.attention_module = nn.ModuleList(
                AttentionBlock(a, device=device) for a in config.attention
            )

    def blocks(self) -> tuple[list[CraiBlock], list[CraiBlock], list[AttentionBlock]]:
        """The encoder's, decoder's and attention layers, typed."""
        attention = getattr(self, "attention_module", [])
        return (
            cast(list[CraiBlock], list(self.encoder)),
            cast(list[CraiBlock], list(self.decoder)),
            cast(list[AttentionBlock], list(attention)),
        )

    def forward(
        self, x: torch.Tensor, mask: torch.Tensor, padding: Padding = "zeros"
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Run the network for the current step t.

        Parameters
        ----------
        x : Tensor (N, variables * (P + F + 1), H, W)
            Input fields, variable-major: for each variable, its steps t - P .. t + F.
            Values under ``mask == 0`` are ignored (but must be finite).
        mask : Tensor, same shape
            1 where valid, 0 in holes.
        padding : {"zeros", "global"}
            ``"global"``: zeros in latitude and circular in longitude (CRAI's
            ``--global-padding``), for the partial convolutions only.

        Returns
        -------
        out : Tensor (N, out_channels, H, W)
            The raw output for step t (CRAI's output at sequence index P for recurrent
            models).
        reach : Tensor (N, 1, H, W)
            1 where the last partial convolution's mask is 1 (at step t), else 0.
        """
        cfg = self.config
        if x.ndim != 4 or x.shape[1] != cfg.in_channels or mask.shape != x.shape:
            raise ValueError(
                f"x: expected x and mask of shape (N, {cfg.in_channels}, H, W) "
                f"({cfg.variables} variable(s) x {cfg.n_steps} step(s)), got "
                f"{tuple(x.shape)} and {tuple(mask.shape)}"
            )
        if padding not in ("zeros", "global"):
            raise ValueError(f"padding: expected 'zeros' or 'global', got {padding!r}")
        n, _, rows, cols = x.shape
        mask = mask.to(x.dtype)
        steps = cfg.n_steps if cfg.sequence else 1
        # (N * T, C, H, W), sample-major, as CRAI's (N, T, C, H, W) flattened
        if cfg.sequence:
            shape = (n, cfg.variables, steps, rows, cols)
            x = x.reshape(shape).transpose(1, 2).reshape(n * steps, cfg.variables, rows, cols)
            mask = mask.reshape(shape).transpose(1, 2).reshape(n * steps, -1, rows, cols)
        encoder, decoder, attention = self.blocks()
        split = cfg.main_channels
        hs = [(x[:, :split], mask[:, :split])]
        fusion, fusion_mask = x[:, split:], mask[:, split:]
        states: list[Any] = []
        joined: list[tuple[torch.Tensor, torch.Tensor]] = []
        for i, block in enumerate(encoder):
            h, m = self._pconv(block, *hs[i], padding)
            state = None
            if block.recurrent_conv is not None:
                seq, state = block.recurrent_conv(h.reshape(n, steps, *h.shape[1:]))
                h = seq.reshape(h.shape)
            if attention:
                fusion, fusion_mask = self._pconv(
                    attention[i].partial_conv_enc, fusion, fusion_mask, padding
                )
                joined.append((attention[i](fusion, h), fusion_mask))
            hs.append((h, m))
            states.append(state)
        if attention:
            hs[0] = (
                torch.cat([hs[0][0], x[:, split:]], 1),
                torch.cat([hs[0][1], mask[:, split:]], 1),
            )
            for i, (a, am) in enumerate(joined):
                h, m = hs[i + 1]
                hs[i + 1] = (torch.cat([h, a], 1), torch.cat([m, am], 1))
        h, m = hs[-1]
        for j, block in enumerate(decoder):
            if block.recurrent_conv is not None:
                seq, _ = block.recurrent_conv(
                    h.reshape(n, steps, *h.shape[1:]), states[cfg.depth - 1 - j]
                )
                h = seq.reshape(h.shape)
            skip, skip_mask = hs[cfg.depth - 1 - j]
            size = skip.shape[-2:]
            h = torch.cat([F.interpolate(h, size=size, mode="nearest"), skip], 1)
            m = torch.cat([F.interpolate(m, size=size, mode="nearest"), skip_mask], 1)
            h, m = self._pconv(block, h, m, padding)
        index = cfg.steps[0] if cfg.sequence else 0
        out = h.reshape(n, steps, *h.shape[1:])[:, index]
        reach = m.reshape(n, steps, *m.shape[1:])[:, index, :1]
        return out, reach

    @staticmethod
    def _pconv(
        block: CraiBlock, h: torch.Tensor, m: torch.Tensor, padding: Padding
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """A block's partial convolution of raw features ``h`` under per-channel masks
        ``m``; returns the raw output and its mask expanded to the output's channels."""
        out, new = block.partial_conv(h * m, m.sum(dim=1, keepdim=True), padding)
        return out, new.expand(-1, out.shape[1], -1, -1)


#: a parameter that only CRAI's recurrent or attention networks have
_CRAINET_KEY = re.compile(r"^(attention_module\.|(encoder|decoder)\.\d+\.recurrent_conv\.)")


def holds_crainet(state: dict[str, torch.Tensor]) -> bool:
    """Whether a CRAI state dict holds recurrent memory or attention modules."""
    return any(_CRAINET_KEY.match(key) for key in state)


def from_crai(
    state: dict[str, torch.Tensor], variables: int, steps: tuple[int, int] | None
) -> CraiNetConfig:
    """The architecture of a CRAI checkpoint with recurrent memory or attention; ``steps``
    the user's ``time_context`` (already checked), which CRAI's files do not record."""
    recurrent = any(".recurrent_conv." in key for key in state)
    if steps is None:
        first = state.get("encoder.0.partial_conv.input_conv.weight")
        if recurrent or first is None or first.shape[1] != 1:
            raise ValueError(
                "time_context: this CRAI checkpoint "
                + ("has recurrent memory (CRAI's --lstm-steps or --gru-steps)" if recurrent
                   else "reads a window of time steps (CRAI's --channel-steps)")
                + ", whose past and future steps it does not record; pass "
                "time_context=(P, F) as CRAI's options said, e.g. (3, 1)"
            )  # fmt: skip
        steps = (0, 0)
    return CraiNetConfig.from_state_dict(state, variables=variables, steps=steps)
