"""What every field of an xcrai model file's configuration may hold, checked at load.

A model file is plain data (``ModelConfig.to_dict``); a damaged or hand-edited one could
hold a NaN mean, a σ scale of 0, a grid shape of one number or a format version that is a
string, which would give NaN or negative σ, or a traceback far from the file. The rules
are data (:data:`CONFIG_FIELDS`, one check per :class:`~xcrai.model.ModelConfig` field,
nested records for the architecture (each network's own, :attr:`xcrai.nn.Network.schema`),
grid, steady mask and provenance), not branches; the checks are :mod:`xcrai.rules`'s.

Every check raises ``ValueError("its <field>: expected ..., got ...")`` (``KeyError`` with
the field's name for a required one that is missing), which the loader prefixes with the
file's name.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from xcrai.bounds import check_bounds
from xcrai.choices import PADDING_CHOICES
from xcrai.firstguess import KINDS as FIRST_GUESS_KINDS
from xcrai.nn import NETWORKS
from xcrai.rules import (
    SHAPE,
    Check,
    boolean,
    choice,
    fail,
    hex_text,
    integer,
    number,
    optional,
    record,
    sequence,
    text,
)


def steady_mask(value: Any, where: str) -> None:
    """:func:`xcrai.model.pack_mask`'s ``{"shape": [H, W], "bits": hex}``, of H * W bits."""
    record({"shape": SHAPE, "bits": hex_text}, ("shape", "bits"))(value, where)
    height, width = value["shape"]
    if len(value["bits"]) != 2 * math.ceil(height * width / 8):
        raise ValueError(
            f"its {where}.bits: expected {math.ceil(height * width / 8)} bytes (a {height}x"
            f"{width} mask), got {len(value['bits']) // 2}"
        )


def stats_pair(value: Any, where: str) -> None:
    """A variable's ``[mean, std]``: finite, std > 0."""
    sequence(number(), length=2)(value, where)
    number(positive=True)(value[1], f"{where}[1]")


def architecture(value: Any, where: str) -> None:
    """A network's configuration, as its entry of :data:`xcrai.nn.NETWORKS` records it
    (``"kind"`` names the network; the U-Net's files, which predate the field, leave it
    out)."""
    if not isinstance(value, Mapping):
        raise fail(where, "a dict", value)
    kind = value.get("kind")
    named = tuple(k for k in NETWORKS if k != "unet")
    if kind is not None and kind not in named:
        raise fail(f"{where}.kind", f"{' or '.join(map(repr, named))}, or no kind (a U-Net)",
                    kind)  # fmt: skip
    NETWORKS["unet" if kind is None else kind].schema(value, where)


def bounds(value: Any, where: str) -> None:
    """What :func:`xcrai.bounds.check_bounds` accepts."""
    check_bounds(value, f"its {where}")


GRID = record(
    {"shape": SHAPE, "lat": optional(sequence(number(low=-90, high=90), length=2)),
     "lon": optional(sequence(number(), length=2)), "periodic": boolean,
     "lat_ascending": optional(boolean)},
    others=True,
)  # fmt: skip
NAMES = sequence(text, least=1, distinct=True)
FIRST_GUESS = record(
    {"kind": choice(FIRST_GUESS_KINDS), "shape": SHAPE, "months": integer(1),
     "eofs": integer(0), "base": hex_text, "patterns": hex_text,
     "weight": number(low=0, high=1)},
    required=("kind", "shape", "months", "eofs", "base", "patterns"),
)  # fmt: skip


def first_guess(value: Any, where: str) -> None:
    """:meth:`xcrai.firstguess.FirstGuess.to_dict`'s record: a base of 1 or 12 fields and
    as many EOFs as it says, every array of the size its shape gives."""
    FIRST_GUESS(value, where)
    if value["months"] not in (1, 12):
        raise fail(f"{where}.months", "1 or 12", value["months"])
    height, width = value["shape"]
    for name, count in (("base", value["months"]), ("patterns", value["eofs"])):
        if len(value[name]) != 8 * count * height * width:
            raise ValueError(
                f"its {where}.{name}: expected {count} float32 field(s) of {height}x{width}, "
                f"got {len(value[name]) // 2} bytes"
            )


PROVENANCE = record(
    {"source": text, "file": text, "sha256": optional(text), "xcrai_version": text,
     "label": optional(text), "n_iter": optional(integer(0)), "iterations": optional(integer(0)),
     "seed": optional(integer(0)), "data_dims": sequence(text),
     "history": sequence(record({}, others=True)), "train_config": record({}, others=True)},
    others=True,
)  # fmt: skip

#: the check of each :class:`~xcrai.model.ModelConfig` field, as ``to_dict`` writes it
CONFIG_FIELDS: dict[str, Check] = {
    "architecture": architecture,
    "padding": choice(PADDING_CHOICES),
    "time_context": optional(sequence(integer(0), length=2)),
    "mean": optional(number()),
    "std": optional(number(positive=True)),
    "variable": optional(text),
    "units": optional(text),
    "grid": optional(GRID),
    "provenance": optional(PROVENANCE),
    "steady_mask": optional(steady_mask),
    "inputs": optional(NAMES),
    "target": optional(text),
    "stats": optional(sequence(stats_pair, least=1)),
    "bounds": optional(bounds),
    "sigma_scale": number(positive=True),
    "first_guess": optional(first_guess),
}
#: an xcrai model file's configuration: every field checked; keys xcrai does not know
#: (from a later xcrai of the same format) are left alone, as ``from_dict`` leaves them
CONFIG = record(CONFIG_FIELDS, required=("architecture",), others=True)
#: the ``ensemble`` entry of an xcrai ensemble file
ENSEMBLE = record(
    {"labels": sequence(text, least=1, distinct=True),
     "members": sequence(record({"config": record({}, others=True),
                                 "state_dict": record({}, others=True)},
                                required=("config", "state_dict")), least=1)},
    required=("labels", "members"),
)  # fmt: skip


def check_config(config: Any) -> None:
    """Check every field of a model file's configuration.

    Parameters
    ----------
    config : dict
        What :meth:`xcrai.model.ModelConfig.to_dict` wrote.

    Raises
    ------
    ValueError
        ``"its <field>: expected ..., got ..."`` for the first field that is wrong.
    KeyError
        The name of a required field that is missing.

    Examples
    --------
    >>> check_config({"architecture": {"encoder": [], "decoder": []}})
    Traceback (most recent call last):
    ...
    ValueError: its architecture.encoder: expected a list of at least 1, got []
    """
    CONFIG(config, "")


def check_ensemble(entry: Any) -> None:
    """Check an ensemble file's ``ensemble`` entry: distinct labels, one per member, each
    member a ``config`` and a ``state_dict``; errors as :func:`check_config`'s."""
    ENSEMBLE(entry, "ensemble")
    if len(entry["labels"]) != len(entry["members"]):
        raise fail("ensemble.labels", f"one label per member ({len(entry['members'])})",
                    entry["labels"])  # fmt: skip


def check_format(value: Any) -> None:
    """Check a file's ``xcrai_format`` (the version of the format): an integer >= 1."""
    integer(1)(value, "xcrai_format")


__all__ = ["CONFIG_FIELDS", "check_config", "check_ensemble", "check_format"]
