"""What every field of an xcrai model file's configuration may hold, checked at load.

A model file is plain data (``ModelConfig.to_dict``); a damaged or hand-edited one could
hold a NaN mean, a σ scale of 0, a grid shape of one number or a format version that is a
string, which would give NaN or negative σ, or a traceback far from the file. The rules
are data (:data:`CONFIG_FIELDS`, one check per :class:`~xcrai.model.ModelConfig` field,
nested records for the architecture, grid, steady mask and provenance), not branches.

Every check raises ``ValueError("its <field>: expected ..., got ...")`` (``KeyError`` with
the field's name for a required one that is missing), which the loader prefixes with the
file's name.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from xcrai.bounds import check_bounds
from xcrai.firstguess import KINDS as FIRST_GUESS_KINDS
from xcrai.model import PADDING_CHOICES
from xcrai.nn.pconv import NORMALIZATIONS

#: a check of one value; the second argument names the field (``grid.shape``)
Check = Callable[[Any, str], None]


def _fail(where: str, expected: str, value: Any) -> ValueError:
    shown = repr(value)
    shown = shown if len(shown) <= 60 else shown[:57] + "..."
    return ValueError(f"its {where}: expected {expected}, got {shown}")


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def _is_number(value: Any) -> bool:
    return _is_int(value) or isinstance(value, (float, np.floating))


def integer(low: int, odd: bool = False) -> Check:
    """An integer >= ``low`` (and odd, with ``odd``)."""
    expected = f"{'an odd' if odd else 'an'} integer >= {low}"

    def check(value: Any, where: str) -> None:
        if not _is_int(value) or value < low or (odd and value % 2 == 0):
            raise _fail(where, expected, value)

    return check


def number(positive: bool = False, low: float = -math.inf, high: float = math.inf) -> Check:
    """A finite number (> 0 with ``positive``) in [low, high]."""
    expected = "a finite number" + (" > 0" if positive else "")
    if math.isfinite(low) or math.isfinite(high):
        expected += f" in [{low:g}, {high:g}]"

    def check(value: Any, where: str) -> None:
        ok = _is_number(value) and math.isfinite(value) and low <= value <= high
        if not ok or (positive and value <= 0):
            raise _fail(where, expected, value)

    return check


def boolean(value: Any, where: str) -> None:
    """True or False."""
    if not isinstance(value, (bool, np.bool_)):
        raise _fail(where, "True or False", value)


def text(value: Any, where: str) -> None:
    """A string."""
    if not isinstance(value, str):
        raise _fail(where, "a string", value)


def choice(options: tuple[Any, ...]) -> Check:
    """One of ``options``."""

    def check(value: Any, where: str) -> None:
        if not isinstance(value, str) or value not in options:
            raise _fail(where, f"one of {options}", value)

    return check


def optional(inner: Check) -> Check:
    """None, or what ``inner`` accepts."""

    def check(value: Any, where: str) -> None:
        if value is not None:
            inner(value, where)

    return check


def sequence(
    item: Check, length: int | None = None, least: int = 0, distinct: bool = False
) -> Check:
    """A list (or tuple) of items ``item`` accepts: ``length`` of them, or ``least``."""
    if length is not None:
        expected = f"a list of {length}"
    else:
        expected = f"a list of at least {least}" if least else "a list"

    def check(value: Any, where: str) -> None:
        if not isinstance(value, (list, tuple)):
            raise _fail(where, expected, value)
        if (length is not None and len(value) != length) or len(value) < least:
            raise _fail(where, expected, value)
        for i, one in enumerate(value):
            item(one, f"{where}[{i}]")
        if distinct and len(set(value)) != len(value):
            raise _fail(where, "distinct items", value)

    return check


def record(fields: Mapping[str, Check], required: tuple[str, ...] = (),
           others: bool = False) -> Check:  # fmt: skip
    """A dict of string keys: each of ``fields`` that is present passes its check, every
    one of ``required`` is present, and (unless ``others``) no other key is."""

    def check(value: Any, where: str) -> None:
        if not isinstance(value, Mapping):
            raise _fail(where, "a dict", value)
        prefix = f"{where}." if where else ""
        for key in required:
            if key not in value:
                raise KeyError(f"{prefix}{key}")
        unknown = [key for key in value if key not in fields]
        if unknown and not others:
            raise _fail(where or "configuration", f"only the keys {sorted(fields)}",
                        sorted(map(str, unknown)))  # fmt: skip
        for key, one in fields.items():
            if key in value:
                one(value[key], f"{prefix}{key}")

    return check


def hex_text(value: Any, where: str) -> None:
    """A string of hexadecimal digits, two a byte."""
    if not isinstance(value, str) or len(value) % 2:
        raise _fail(where, "hexadecimal digits, two a byte", value)
    try:
        bytes.fromhex(value)
    except ValueError:
        raise _fail(where, "hexadecimal digits, two a byte", value) from None


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
    """A U-Net's (:class:`~xcrai.nn.UNetConfig`) or a CraiNet's (``"kind": "crainet"``)."""
    if not isinstance(value, Mapping):
        raise _fail(where, "a dict", value)
    kind = value.get("kind")
    if kind not in (None, "crainet"):
        raise _fail(f"{where}.kind", "'crainet', or no kind (a U-Net)", kind)
    (CRAINET if kind == "crainet" else UNET)(value, where)


def bounds(value: Any, where: str) -> None:
    """What :func:`xcrai.bounds.check_bounds` accepts."""
    check_bounds(value, f"its {where}")


SHAPE = sequence(integer(1), length=2)
LAYER = record(
    {"in_channels": integer(1), "out_channels": integer(1), "kernel_size": integer(1, odd=True),
     "batch_norm": boolean, "bias": boolean},
    required=("in_channels", "out_channels", "kernel_size", "batch_norm"),
)  # fmt: skip
LAYERS = sequence(LAYER, least=1)
UNET = record(
    {"encoder": LAYERS, "decoder": LAYERS, "normalization": choice(NORMALIZATIONS)},
    required=("encoder", "decoder"),
)
MEMORY = record(
    {"channels": integer(1), "kernel_size": integer(1, odd=True),
     "size": optional(SHAPE), "links": integer(0), "flow_channels": integer(0),
     "flow_kernel": integer(0)},
    required=("channels", "kernel_size"),
)  # fmt: skip
ATTENTION = record(
    {"layer": LAYER, "hidden": integer(1), "spatial_kernel": integer(1, odd=True)},
    required=("layer", "hidden"),
)
CRAINET = record(
    {"kind": choice(("crainet",)), "variables": integer(1),
     "steps": sequence(integer(0), length=2), "sequence": boolean, "encoder": LAYERS,
     "decoder": LAYERS, "recurrent": optional(choice(("lstm", "gru"))),
     "encoder_memory": sequence(MEMORY), "decoder_memory": sequence(MEMORY),
     "attention": sequence(ATTENTION)},
    required=("variables", "steps", "sequence", "encoder", "decoder"),
)  # fmt: skip
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
        raise _fail(f"{where}.months", "1 or 12", value["months"])
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
        raise _fail("ensemble.labels", f"one label per member ({len(entry['members'])})",
                    entry["labels"])  # fmt: skip


def check_format(value: Any) -> None:
    """Check a file's ``xcrai_format`` (the version of the format): an integer >= 1."""
    integer(1)(value, "xcrai_format")


__all__ = ["CONFIG_FIELDS", "check_config", "check_ensemble", "check_format"]
