"""The networks xcrai knows, as data.

Each :class:`Network` says what the engine, the model files, tiling, the options and
training ask of one kind of network: how it is built from its configuration and read back
from a model file, how it is recognised in a CRAI checkpoint, whether it may run in tiles or
must run one field at a time, what its activations cost, and whether ``fit`` trains it.
Code outside :mod:`xcrai.nn` asks :func:`network` about a configuration instead of testing
its type, so that adding a network means adding its module and its entry in
:data:`NETWORKS`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, TypeGuard, cast

import torch

from xcrai.choices import NETWORK_CHOICES
from xcrai.nn import crainet, unet
from xcrai.nn.crainet import CraiNet, CraiNetConfig
from xcrai.nn.pconv import Normalization
from xcrai.nn.unet import PartialConvUNet, UNetConfig

#: a network's configuration (plain data, with ``to_dict``/``from_dict``)
Architecture = UNetConfig | CraiNetConfig


@dataclass(frozen=True)
class Network:
    """One kind of network.

    Attributes
    ----------
    kind : str
        Its name; model files record it as the configuration's ``"kind"`` (the U-Net's
        files, which predate the field, leave it out).
    config : type
        The class of its configuration.
    from_dict : callable
        ``from_dict(d)``: the configuration that its ``to_dict`` wrote.
    build : callable
        ``build(config)``: the network, freshly initialised.
    from_crai : callable
        ``from_crai(state, variables, steps, source)``: its configuration read from a CRAI
        state dict, given the number of input variables and the time context the user named
        (None when not named; CRAI's files do not record it); ``source`` names the file for
        errors.
    recognises : callable
        ``recognises(state)``: whether a CRAI state dict holds this network. Entries are
        asked in order; the last one (the U-Net) reads any partial-convolution layers and
        names the keys it cannot.
    tiles : bool
        Whether it may run in spatial tiles with halos (its output at a point depends on
        the inputs within its receptive field only).
    per_field : bool
        Whether it must run one field at a time: its rounding changes with the batch's
        size, and a field must not depend on which others share its batch.
    check : callable
        ``check(config)``: a ValueError naming the first layer that does not fit the
        layers around it (for configurations read from files).
    trainable : bool
        Whether ``fit`` trains it.
    memory_factor : callable
        ``memory_factor(config)``: activation memory per field as a multiple of a U-Net's
        with the same layers.
    extras : callable
        ``extras(config)``: what it adds to the U-Net, for model cards ("" for none).
    schema : callable
        ``schema(d, where)``: a ValueError naming the first field of ``to_dict``'s record
        that a model file holds wrong (:mod:`xcrai.rules`), before ``from_dict`` reads it.
    """

    kind: str
    config: type
    from_dict: Callable[[dict[str, Any]], Any]
    build: Callable[[Any], torch.nn.Module]
    from_crai: Callable[[dict[str, torch.Tensor], int, tuple[int, int] | None, str | None], Any]
    recognises: Callable[[dict[str, torch.Tensor]], bool]
    tiles: bool
    per_field: bool
    check: Callable[[Any], None]
    trainable: bool
    memory_factor: Callable[[Any], int]
    extras: Callable[[Any], str]
    schema: Callable[[Any, str], None]


def _crainet_extras(config: CraiNetConfig) -> str:
    parts = {"lstm": "ConvLSTM memory", "gru": "TrajGRU memory"}
    extras = [parts[config.recurrent]] if config.recurrent else []
    if config.attention:
        extras.append("attention")
    return f" with {' and '.join(extras)}" if extras else ""


#: every network, by kind, in the order a CRAI checkpoint is matched against them
NETWORKS: dict[str, Network] = {
    "crainet": Network(
        kind="crainet",
        config=CraiNetConfig,
        from_dict=CraiNetConfig.from_dict,
        build=CraiNet,
        from_crai=lambda state, variables, steps, source: crainet.from_crai(
            state, variables, steps
        ),
        recognises=crainet.holds_crainet,
        tiles=False,  # its memory and attention see the whole field
        per_field=True,
        check=lambda config: None,  # its constructor checks its layers
        trainable=True,
        memory_factor=lambda config: 3 * (config.n_steps if config.sequence else 1),
        extras=_crainet_extras,
        schema=crainet.RECORD,
    ),
    "unet": Network(
        kind="unet",
        config=UNetConfig,
        from_dict=UNetConfig.from_dict,
        build=PartialConvUNet,
        from_crai=lambda state, variables, steps, source: unet.infer_architecture(
            state, source
        ),
        recognises=lambda state: True,
        tiles=True,
        per_field=False,
        check=unet.check_channels,
        trainable=True,
        memory_factor=lambda config: 1,
        extras=lambda config: "",
        schema=unet.RECORD,
    ),
}


@dataclass(frozen=True)
class Design:
    """A network ``fit`` can build fresh (``fit(network=...)``, ``xcrai fit --network``).

    Attributes
    ----------
    name : str
        What the user names.
    summary : str
        One line for help texts.
    build : callable
        ``build(n_filters, depth, normalization, variables, steps, out_channels, shape)``:
        the configuration for ``variables`` inputs with ``steps`` (P, F) of time context,
        ``out_channels`` outputs and fields of ``shape``; a ValueError starting
        ``"network: "`` where the design does not fit the input.
    """

    name: str
    summary: str
    build: Callable[[int, int, str, int, tuple[int, int], int, tuple[int, int]], Architecture]


def _unet(
    n_filters: int, depth: int, normalization: str, variables: int, steps: tuple[int, int],
    out_channels: int, shape: tuple[int, int],
) -> Architecture:  # fmt: skip
    return UNetConfig.from_n_filters(
        n_filters, depth, in_channels=variables * (sum(steps) + 1), out_channels=out_channels,
        normalization=cast(Normalization, normalization),
    )  # fmt: skip


def _crainet(memory: Literal["lstm", "gru", "attention"]) -> Callable[..., Architecture]:
    def build(
        n_filters: int, depth: int, normalization: str, variables: int, steps: tuple[int, int],
        out_channels: int, shape: tuple[int, int],
    ) -> Architecture:  # fmt: skip
        if normalization != "crai":
            raise ValueError(
                f"architecture: CRAI's recurrent and attention networks rescale partial "
                f"convolutions as CRAI does; expected normalization 'crai', got {normalization!r}"
            )
        main = UNetConfig.from_n_filters(n_filters, depth).encoder
        return crainet.design(memory, main, variables=variables, steps=steps,
                              out_channels=out_channels, shape=shape)  # fmt: skip

    return build


#: what ``fit`` trains, by the name the user gives (:data:`xcrai.choices.NETWORK_CHOICES`,
#: whose first is the default)
DESIGNS: dict[str, Design] = {
    name: Design(name, NETWORK_CHOICES[name], build)
    for name, build in (
        ("unet", _unet),
        ("convlstm", _crainet("lstm")),
        ("trajgru", _crainet("gru")),
        ("attention", _crainet("attention")),
    )
}


def network(config: Any) -> Network:
    """The entry of ``config``'s kind; a TypeError for anything that is not a network's
    configuration."""
    for entry in NETWORKS.values():
        if type(config) is entry.config:
            return entry
    raise TypeError(f"expected a network configuration, got {type(config).__name__}")


def is_architecture(value: Any) -> TypeGuard[Architecture]:
    """Whether ``value`` is the configuration of one of :data:`NETWORKS`."""
    return any(type(value) is entry.config for entry in NETWORKS.values())


def architecture_from_dict(d: dict[str, Any]) -> Architecture:
    """The configuration that its ``to_dict`` wrote (no ``"kind"``: a U-Net)."""
    kind = d.get("kind", "unet")
    if kind not in NETWORKS:
        raise ValueError(f"architecture: expected a kind among {sorted(NETWORKS)}, got {kind!r}")
    config: Architecture = NETWORKS[kind].from_dict(d)
    return config


def architecture_from_crai(
    state: dict[str, torch.Tensor],
    variables: int,
    steps: tuple[int, int] | None,
    source: str | None = None,
) -> Architecture:
    """The configuration of the network a CRAI state dict holds (see
    :attr:`Network.from_crai`)."""
    entry = next(e for e in NETWORKS.values() if e.recognises(state))
    config: Architecture = entry.from_crai(state, variables, steps, source)
    return config


def build_network(config: Architecture) -> torch.nn.Module:
    """The network of ``config``, freshly initialised."""
    return network(config).build(config)


def bytes_per_field(config: Architecture, shape: tuple[int, int]) -> int:
    """Rough activation memory of one field of ``shape`` through the network, in bytes
    (float32 inputs, masks and the features of every layer)."""
    h, w = shape
    total = 2 * config.in_channels * h * w
    size = [(h, w)]
    for layer in config.encoder:
        hh, ww = size[-1]
        size.append(((hh + 1) // 2, (ww + 1) // 2))
        total += 3 * layer.out_channels * size[-1][0] * size[-1][1]
    for layer, (hh, ww) in zip(config.decoder, reversed(size[:-1]), strict=True):
        total += 3 * (layer.in_channels + layer.out_channels) * hh * ww
    return 4 * total * network(config).memory_factor(config)
