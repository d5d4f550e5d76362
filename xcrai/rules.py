"""Checks of plain data as data: small functions that each accept one kind of value, and
compose (a record of fields, a list of items), raising
``ValueError("its <field>: expected ..., got ...")`` (``KeyError`` with the field's name for
a required one that is missing). The model-file schema (:mod:`xcrai.schema`) and each
network's configuration record (:mod:`xcrai.nn`) are made of them."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

#: a check of one value; the second argument names the field (``grid.shape``)
Check = Callable[[Any, str], None]


def fail(where: str, expected: str, value: Any) -> ValueError:
    """The error of a value that fails its check, the value shown shortened."""
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
            raise fail(where, expected, value)

    return check


def number(positive: bool = False, low: float = -math.inf, high: float = math.inf) -> Check:
    """A finite number (> 0 with ``positive``) in [low, high]."""
    expected = "a finite number" + (" > 0" if positive else "")
    if math.isfinite(low) or math.isfinite(high):
        expected += f" in [{low:g}, {high:g}]"

    def check(value: Any, where: str) -> None:
        ok = _is_number(value) and math.isfinite(value) and low <= value <= high
        if not ok or (positive and value <= 0):
            raise fail(where, expected, value)

    return check


def boolean(value: Any, where: str) -> None:
    """True or False."""
    if not isinstance(value, (bool, np.bool_)):
        raise fail(where, "True or False", value)


def text(value: Any, where: str) -> None:
    """A string."""
    if not isinstance(value, str):
        raise fail(where, "a string", value)


def choice(options: tuple[Any, ...]) -> Check:
    """One of ``options``."""

    def check(value: Any, where: str) -> None:
        if not isinstance(value, str) or value not in options:
            raise fail(where, f"one of {options}", value)

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
            raise fail(where, expected, value)
        if (length is not None and len(value) != length) or len(value) < least:
            raise fail(where, expected, value)
        for i, one in enumerate(value):
            item(one, f"{where}[{i}]")
        if distinct and len(set(value)) != len(value):
            raise fail(where, "distinct items", value)

    return check


def record(fields: Mapping[str, Check], required: tuple[str, ...] = (),
           others: bool = False) -> Check:  # fmt: skip
    """A dict of string keys: each of ``fields`` that is present passes its check, every
    one of ``required`` is present, and (unless ``others``) no other key is."""

    def check(value: Any, where: str) -> None:
        if not isinstance(value, Mapping):
            raise fail(where, "a dict", value)
        prefix = f"{where}." if where else ""
        for key in required:
            if key not in value:
                raise KeyError(f"{prefix}{key}")
        unknown = [key for key in value if key not in fields]
        if unknown and not others:
            raise fail(where or "configuration", f"only the keys {sorted(fields)}",
                        sorted(map(str, unknown)))  # fmt: skip
        for key, one in fields.items():
            if key in value:
                one(value[key], f"{prefix}{key}")

    return check


def hex_text(value: Any, where: str) -> None:
    """A string of hexadecimal digits, two a byte."""
    if not isinstance(value, str) or len(value) % 2:
        raise fail(where, "hexadecimal digits, two a byte", value)
    try:
        bytes.fromhex(value)
    except ValueError:
        raise fail(where, "hexadecimal digits, two a byte", value) from None


#: (rows, columns)
SHAPE = sequence(integer(1), length=2)
