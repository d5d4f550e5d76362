"""What a result keeps of its input's attributes, and the ``history`` line it gains."""

from __future__ import annotations

from typing import Any

import xarray as xr


def add_history(attrs: dict[str, Any], line: str) -> dict[str, Any]:
    """New attrs with ``line`` prepended to ``history`` (newest first, as NCO and CDO do)."""
    old = attrs.get("history")
    return {**attrs, "history": line if not old else f"{line}\n{old}"}


def keep_attrs() -> bool:
    """Whether results keep the input's attrs: yes, unless the user set
    ``xr.set_options(keep_attrs=False)`` (xarray's "default" keeps them here, as infilling
    does not change what a variable is)."""
    return xr.get_options()["keep_attrs"] is not False
