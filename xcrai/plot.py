"""Pictures of infilled fields: the original with its holes beside the infilled map."""

from __future__ import annotations

from typing import Any

import numpy as np
import xarray as xr

from xcrai.grid import find_grid


def plot_infilled(
    original: xr.DataArray,
    infilled: xr.DataArray,
    *,
    time: Any = None,
    cmap: str = "RdBu_r",
    robust_limit: float | None = None,
) -> Any:
    """Plot original (holes blank) beside infilled, one row per time step.

    Parameters
    ----------
    original, infilled : DataArray
        The same field before and after infilling.
    time : label or list of labels, optional
        Time steps to show (``.sel(time=..., method="nearest")``); all when omitted
        (at most 6).
    cmap : str
        A diverging colormap suits anomalies.
    robust_limit : float, optional
        Symmetric colour limit; by default the 98th percentile of |infilled|.

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> fig = plot_infilled(ds.tas, filled, time="1877-09")  # doctest: +SKIP
    >>> fig.savefig("infilled.png")  # doctest: +SKIP
    """
    import matplotlib.pyplot as plt

    grid = find_grid(original, "original")
    if grid.time is not None:
        if time is not None:
            labels = np.atleast_1d(time)
            original = original.sel({grid.time: labels}, method="nearest")
            infilled = infilled.sel({grid.time: labels}, method="nearest")
        steps = list(range(min(original.sizes[grid.time], 6)))
    else:
        steps = [None]
    limit = robust_limit or float(np.nanpercentile(np.abs(infilled.values), 98)) or 1.0
    fig, axes = plt.subplots(
        len(steps), 2, figsize=(11, 3.6 * len(steps)), squeeze=False, layout="constrained"
    )
    units = original.attrs.get("units", "")
    for row, step in enumerate(steps):
        pair = (
            (original, infilled)
            if step is None
            else (original.isel({grid.time: step}), infilled.isel({grid.time: step}))
        )
        for col, (field, title) in enumerate(
            zip(pair, ("original (holes blank)", "infilled"), strict=True)
        ):
            ax = axes[row, col]
            image = field.transpose(grid.lat, grid.lon).plot.pcolormesh(
                ax=ax, x=grid.lon, y=grid.lat, cmap=cmap, vmin=-limit, vmax=limit,
                add_colorbar=False,
            )  # fmt: skip
            when = "" if step is None else f" {str(field[grid.time].values)[:7]}"
            ax.set_title(f"{original.name or ''} {title}{when}")
        fig.colorbar(image, ax=axes[row, :].tolist(), shrink=0.9, label=units)
    return fig
