"""How an infilled variable is written: the input's encoding, less what infilling breaks.

Packed data (integers with ``scale_factor``/``add_offset``, as in ERA5 files) can only
hold values inside the range its packing was chosen for; an infilled value outside it
would wrap around when written (-7.99 K stored as +5.32 K). So an infilled variable
whose input was stored as integers is written as float32, which holds every value the
network produces and every value the packing could hold.
"""

from __future__ import annotations

import warnings
from collections.abc import Hashable, Mapping
from typing import Any

import numpy as np

from xcrai.callsite import user_stacklevel

#: encoding keys that only make sense for integer storage
PACKING_KEYS = ("scale_factor", "add_offset", "_Unsigned")
#: encoding keys dropped when they hold integers (fill values in packed units)
INTEGER_FILL_KEYS = ("_FillValue", "missing_value")


def float_encoding(
    encoding: Mapping[str, Any], name: Hashable | None = None
) -> tuple[dict[str, Any], str | None]:
    """The encoding for an infilled variable, and what changed for the history line.

    An input stored as integers (packed with ``scale_factor``/``add_offset`` or a plain
    integer ``dtype``) is written as float32: ``dtype`` becomes float32, and the
    packing keys and integer ``_FillValue``/``missing_value`` are dropped. Chunking and
    compression settings are kept. One UserWarning says so, pointing at the caller's
    line. Any other encoding is returned unchanged, with no note.

    Parameters
    ----------
    encoding : mapping
        The input variable's ``.encoding``.
    name : hashable, optional
        The variable's name, for the warning.

    Returns
    -------
    encoding : dict
        The encoding to give the infilled variable.
    note : str or None
        E.g. "written as float32 (input was packed as int16)", or None when the
        encoding was kept.

    Examples
    --------
    >>> enc = {"dtype": np.dtype("int16"), "scale_factor": 0.01, "zlib": True}
    >>> float_encoding(enc, "t2m")  # doctest: +SKIP
    ({'dtype': dtype('float32'), 'zlib': True}, 'written as float32 (input was packed as int16)')
    """
    stored = np.dtype(encoding["dtype"]) if "dtype" in encoding else None
    packed = any(key in encoding for key in PACKING_KEYS)
    integer = stored is not None and np.issubdtype(stored, np.integer)
    if not (packed or integer):
        return dict(encoding), None
    kept = {
        key: value
        for key, value in encoding.items()
        if key != "dtype" and key not in PACKING_KEYS and not _integer_fill(key, value)
    }
    kept["dtype"] = np.dtype(np.float32)
    how = "packed" if packed else "stored"
    note = f"written as float32 (input was {how}{'' if stored is None else f' as {stored}'})"
    warnings.warn(
        f"{name or 'data'}: {note}: infilled values may fall outside the range the input's "
        "packing can hold, where they would wrap around; pass an encoding to to_netcdf to "
        "pack the result yourself",
        UserWarning,
        stacklevel=user_stacklevel(),
    )
    return kept, note


def _integer_fill(key: str, value: Any) -> bool:
    return key in INTEGER_FILL_KEYS and np.issubdtype(np.asarray(value).dtype, np.integer)
