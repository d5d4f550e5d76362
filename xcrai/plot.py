"""Pictures of infilled fields: the original with its holes, the infilled map, the coverage.

Needs matplotlib (``pip install "xcrai[plot]"``); map projections and coastlines need
cartopy, and are skipped with a warning without it.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import xarray as xr

from xcrai.callsite import user_stacklevel
from xcrai.grid import find_grid

PANELS: tuple[str, ...] = ("original", "infilled", "coverage")
#: colour of points without a value (holes, and points the network could not reach): grey
#: rather than white, which in a diverging map reads as a near-zero anomaly
HOLE_COLOUR = "0.6"
#: attributes whose presence says the values are departures from a reference period
_ANOMALY_ATTRS = ("reference_period", "climatology_period", "baseline_period", "base_period")
_MAX_STEPS = 6


def require_matplotlib(what: str = "xcrai.plot") -> Any:
    """The ``matplotlib`` module, or an ImportError saying how to install it.

    Examples
    --------
    >>> plt = require_matplotlib("xcrai demo")  # doctest: +SKIP
    """
    try:
        import matplotlib
    except ImportError as error:
        raise ImportError(
            f"{what} needs matplotlib, which is not installed; install it with "
            f'pip install "xcrai[plot]" (or pip install matplotlib)'
        ) from error
    return matplotlib


def is_anomaly(da: xr.DataArray) -> bool:
    """Whether ``da``'s attributes say it holds anomalies (departures from a reference).

    True when ``long_name``, ``standard_name``, ``units`` or the name mention an anomaly,
    or a reference period is recorded (``reference_period``, ``climatology_period``, ...).
    """
    text = " ".join(
        str(v)
        for v in (da.name, *(da.attrs.get(k) for k in ("long_name", "standard_name", "units")))
    ).lower()
    return "anomal" in text or any(key in da.attrs for key in _ANOMALY_ATTRS)


def value_label(da: xr.DataArray) -> str:
    """Colour-bar label: long name (marked as an anomaly where it is one) and units."""
    name = str(da.attrs.get("long_name") or da.attrs.get("standard_name") or da.name or "value")
    if is_anomaly(da) and "anomal" not in name.lower():
        name += " anomaly"
    reference = next((da.attrs[k] for k in _ANOMALY_ATTRS if k in da.attrs), None)
    details = [str(da.attrs["units"])] if da.attrs.get("units") else []
    if reference is not None and np.size(reference) == 2:
        first, last = np.ravel(reference)
        details.append(f"against {first}-{last}")
    # on two lines: one long line runs past a row's height into the neighbouring panels
    return f"{name}\n({', '.join(details)})" if details else name


def plot_infilled(
    original: xr.DataArray | None,
    infilled: xr.DataArray,
    *,
    flags: xr.DataArray | None = None,
    time: Any = None,
    panels: Sequence[str] | None = None,
    ax: Any = None,
    projection: Any = None,
    cmap: str | None = None,
    robust_limit: float | None = None,
) -> Any:
    """Plot original (holes grey) beside infilled and the coverage, one row per time step.

    Only the time steps shown are read (and computed, for dask-backed data).

    Parameters
    ----------
    original : DataArray or None
        The field before infilling. Without it, only what the infilled field shows can be
        drawn: the "infilled" panel, and "coverage" when ``flags`` are given.
    infilled : DataArray
        The field after infilling.
    flags : DataArray, optional
        The result's flags (``<name>_flag`` of ``return_output=True`` or ``flags=True``): the
        coverage panel then tells holes beyond the network's reach (flag -1, holding CRAI's
        fill value) and steady points (-2) from the infilled ones.
    time : label or list of labels, optional
        Time steps to show (``.sel(time=..., method="nearest")``); by default the first
        (at most 6).
    panels : sequence of {"original", "infilled", "coverage"}, optional
        What each row shows; "coverage" marks the points that were observed, infilled,
        beyond the network's reach (with ``flags``) or left without a value (grey). By
        default every panel that the fields given can draw.
    ax : matplotlib Axes or sequence of Axes, optional
        Draw into these (as many as time steps times panels, row by row) instead of a
        new figure.
    projection : cartopy CRS or its name (e.g. ``"Robinson"``), optional
        Draw maps in this projection, with coastlines; needs cartopy (without it, plain
        longitude-latitude axes and a warning). With ``ax``, give map axes instead.
    cmap : str, optional
        Colormap; by default "RdBu_r" (with limits symmetric about 0) for anomalies and
        "viridis" for other fields.
    robust_limit : float, optional
        Symmetric colour limit for anomalies; by default the 98th percentile of
        |infilled| over the steps shown.

    Returns
    -------
    matplotlib.figure.Figure or None
        The new figure (in a script, ``fig.savefig`` writes it; it is not left open in
        pyplot). Jupyter shows it once, whether the call is the cell's last line or
        assigned (``fig = ...``); the figure alone as a later cell's result shows it
        again. None when drawing into ``ax``.

    Examples
    --------
    >>> fig = plot_infilled(ds.tas, filled, time="1877-09")  # doctest: +SKIP
    >>> fig.savefig("infilled.png")  # doctest: +SKIP
    >>> fig, axes = plt.subplots(1, 2)  # doctest: +SKIP
    >>> plot_infilled(ds.tas, filled, time="1877-09", panels=["infilled", "coverage"],
    ...               ax=axes)  # doctest: +SKIP
    """
    require_matplotlib()
    import matplotlib.pyplot as plt

    drawable = tuple(
        p for p in PANELS
        if original is not None or p == "infilled" or (p == "coverage" and flags is not None)
    )  # fmt: skip
    panels = drawable if panels is None else _check_panels(panels)
    missing = [p for p in panels if p not in drawable]
    if missing:
        raise ValueError(
            f"panels: {missing} need the field before infilling: give original= (the "
            "coverage panel also draws from flags=, the result's <name>_flag)"
        )
    reference = infilled if original is None else original
    grid = find_grid(reference, "original" if original is not None else "infilled")
    if grid.time is not None:
        if time is not None:
            chosen = reference.sel({grid.time: np.atleast_1d(time)}, method="nearest")
        else:
            chosen = reference.isel({grid.time: slice(0, min(reference.sizes[grid.time],
                                                             _MAX_STEPS))})  # fmt: skip
        labels = {grid.time: chosen[grid.time].values}
        infilled = infilled.sel(labels)
        original = None if original is None else original.sel(labels)
        flags = None if flags is None else flags.sel(labels)
    # select first, compute second: a lazy record is read only for the steps shown
    infilled = infilled.compute()
    original = infilled if original is None else original.compute()
    flags = None if flags is None else flags.compute()
    steps_shown = [None] if grid.time is None else list(range(original.sizes[grid.time]))
    shape = (len(steps_shown), len(panels))

    if ax is not None and projection is not None:
        raise ValueError(
            "projection: with ax=, create the axes in the projection instead "
            "(plt.subplots(subplot_kw={'projection': crs})) and leave projection out"
        )
    crs = _projection(projection)
    if ax is None:
        fig = plt.figure(
            figsize=(5.5 * len(panels), 3.6 * len(steps_shown)), layout="constrained",
            FigureClass=_figure_class(),
        )  # fmt: skip
        axes = np.asarray(
            fig.subplots(
                *shape, squeeze=False, subplot_kw={} if crs is None else {"projection": crs}
            )
        )
        plt.close(fig)  # returned, not left in pyplot's state: Jupyter shows it once
        _show_once(fig)
    else:
        axes = _check_axes(ax, shape)
        fig = None

    anomaly = is_anomaly(original)
    values = infilled.values
    if anomaly:
        limit = robust_limit or float(np.nanpercentile(np.abs(values), 98)) or 1.0
        vmin, vmax = -limit, limit
    else:
        vmin, vmax = (float(v) for v in np.nanpercentile(values, [2, 98]))
    colours = _with_hole_colour(cmap or ("RdBu_r" if anomaly else "viridis"))
    label = value_label(original)
    # a loop of our own rather than xarray's faceting: a row holds different kinds of panel
    # (two colour maps and a categorical coverage map), on axes a caller may give, in a
    # projection; a FacetGrid facets one variable over a dimension on axes it makes itself
    for row, step in enumerate(steps_shown):
        before, after = (
            (original, infilled)
            if step is None
            else (original.isel({grid.time: step}), infilled.isel({grid.time: step}))
        )
        when = "" if step is None else f" {str(before[grid.time].values)[:7]}"
        images = []
        for col, panel in enumerate(panels):
            target = axes[row, col]
            field = before if panel == "original" else after
            lon, lat, grid_values = _plane(field, grid.lat, grid.lon)
            if panel == "coverage":
                flagged = None
                if flags is not None:
                    flagged = _plane(flags if step is None else flags.isel({grid.time: step}),
                                     grid.lat, grid.lon)[2]  # fmt: skip
                _draw_coverage(target, lon, lat, _plane(before, grid.lat, grid.lon)[2],
                               grid_values, when, flagged)  # fmt: skip
                _decorate(target, grid.lon, grid.lat)
                continue
            image = target.pcolormesh(
                lon, lat, np.ma.masked_invalid(grid_values), cmap=colours, vmin=vmin, vmax=vmax,
                shading="auto", **_transform(target),
            )  # fmt: skip
            images.append((target, image))
            title = "original (holes grey)" if panel == "original" else "infilled"
            target.set_title(f"{original.name or ''} {title}{when}".strip())
            _decorate(target, grid.lon, grid.lat)
        if images:
            figure = images[0][0].figure
            figure.colorbar(images[0][1], ax=[a for a, _ in images], shrink=0.9, label=label)
    return fig


_FIGURE_CLASS: Any = None


def _figure_class() -> Any:
    """The class of the figures :func:`plot_infilled` makes (matplotlib is imported on the
    first plot): a Figure that shows itself in Jupyter as a PNG (:func:`_show_once`)."""
    global _FIGURE_CLASS
    if _FIGURE_CLASS is None:
        from matplotlib.figure import Figure

        class InfilledFigure(Figure):
            #: to be shown when the cell that made it ends (unless shown before)
            pending = False

            def _ipython_display_(self) -> None:
                import io

                from IPython.display import Image, display

                self.pending = False
                buffer = io.BytesIO()
                self.savefig(buffer, format="png", bbox_inches="tight")
                display(Image(buffer.getvalue()))

        _FIGURE_CLASS = InfilledFigure
    return _FIGURE_CLASS


def _show_once(fig: Any) -> None:
    """In a Jupyter kernel, show ``fig`` once: as the cell's result when the call is its last
    line, else when the cell ends (``fig = da.crai.plot()``). The figure is not left to
    pyplot, whose inline backend would show it a second time beside the cell's result."""
    import sys

    if "IPython" not in sys.modules:  # not in IPython: nothing to show it in
        return
    from IPython import get_ipython

    shell = get_ipython()
    if shell is None or not hasattr(shell, "kernel"):  # a terminal: pictures go to files
        return
    fig.pending = True

    def flush(*_: Any) -> None:
        shell.events.unregister("post_execute", flush)
        if fig.pending:
            fig._ipython_display_()

    shell.events.register("post_execute", flush)


def _check_panels(panels: Sequence[str]) -> tuple[str, ...]:
    panels = (panels,) if isinstance(panels, str) else tuple(panels)
    if not panels or any(p not in PANELS for p in panels):
        raise ValueError(f"panels: expected a non-empty selection of {PANELS}, got {panels!r}")
    return panels


def _check_axes(ax: Any, shape: tuple[int, int]) -> np.ndarray:
    """``ax`` (one Axes or a sequence) as a (steps, panels) array, or a ValueError."""
    flat = [ax] if hasattr(ax, "pcolormesh") else list(np.ravel(np.asarray(ax, dtype=object)))
    if len(flat) != shape[0] * shape[1] or not all(hasattr(a, "pcolormesh") for a in flat):
        raise ValueError(
            f"ax: expected {shape[0] * shape[1]} matplotlib Axes ({shape[0]} time step(s) times "
            f"{shape[1]} panel(s)), got {len(flat)} object(s); choose the steps with time= "
            "and the panels with panels="
        )
    return np.asarray(flat, dtype=object).reshape(shape)


def _projection(projection: Any) -> Any:
    """The cartopy CRS for ``projection`` (a CRS or its class name), or None: without
    cartopy, plain axes and a warning."""
    if projection is None:
        return None
    try:
        import cartopy.crs as ccrs
    except ImportError:
        warnings.warn(
            "projection: cartopy is not installed, so the maps are drawn on plain "
            "longitude-latitude axes (pip install cartopy for projections and coastlines)",
            UserWarning,
            stacklevel=user_stacklevel(),
        )
        return None
    if isinstance(projection, str):
        if not isinstance(getattr(ccrs, projection, None), type):
            raise ValueError(
                f"projection: expected a cartopy CRS or the name of one (e.g. 'Robinson'), "
                f"got {projection!r}"
            )
        return getattr(ccrs, projection)()
    return projection


def _transform(ax: Any) -> dict[str, Any]:
    """``transform=PlateCarree()`` for cartopy map axes (data in longitude-latitude)."""
    if not hasattr(ax, "coastlines"):
        return {}
    import cartopy.crs as ccrs

    return {"transform": ccrs.PlateCarree()}


def _decorate(ax: Any, lon: str, lat: str) -> None:
    if hasattr(ax, "coastlines"):
        ax.coastlines(linewidth=0.5)
    else:
        ax.set_xlabel(f"{lon} (degrees east)")
        ax.set_ylabel(f"{lat} (degrees north)")


def _with_hole_colour(cmap: str) -> Any:
    import matplotlib

    return matplotlib.colormaps[cmap].with_extremes(bad=HOLE_COLOUR)


def _plane(field: xr.DataArray, lat: str, lon: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Longitudes, latitudes and the (lat, lon) values of one field."""
    extra = [d for d in field.dims if d not in (lat, lon)]
    if extra:
        raise ValueError(
            f"original: one field per time step is drawn, but it also has dimension(s) "
            f"{extra}; select one with .isel or .sel first"
        )
    field = field.transpose(lat, lon)
    return np.asarray(field[lon].values), np.asarray(field[lat].values), np.asarray(field.values)


#: the coverage panel's categories, in drawing order: (label, colour)
COVERAGE = (
    ("no value", HOLE_COLOUR),
    ("steady (never valid)", "0.85"),
    ("beyond the network's reach", "#b2182b"),
    ("infilled", "#fddbc7"),
    ("observed", "#2166ac"),
)


def _draw_coverage(
    ax: Any, lon: np.ndarray, lat: np.ndarray, before: np.ndarray, after: np.ndarray, when: str,
    flags: np.ndarray | None = None,
) -> None:  # fmt: skip
    """Observed (dark), infilled (light), beyond the network's reach (red, from ``flags``),
    steady (light grey, from ``flags``) and still without a value (grey) points; the
    legend beside the map, off the data."""
    from matplotlib.colors import BoundaryNorm, ListedColormap
    from matplotlib.patches import Patch

    if flags is None:
        observed = np.isfinite(before)
        category = np.where(observed, 4, np.where(np.isfinite(after), 3, 0))
    else:
        observed = flags == 1
        category = np.select(
            [flags == 1, flags == 0, flags == -1, flags == -2], [4, 3, 2, 1], default=0
        )
    shown = sorted(set(np.unique(category).tolist()) | {3, 4})
    colours = [colour for _, colour in COVERAGE]
    norm = BoundaryNorm(np.arange(len(COVERAGE) + 1) - 0.5, len(COVERAGE))
    ax.pcolormesh(lon, lat, category, cmap=ListedColormap(colours), norm=norm, shading="auto",
                  **_transform(ax))  # fmt: skip
    share = 100 * observed.mean()
    ax.set_title(f"coverage{when}: {share:.0f}% observed")
    handles = [Patch(color=COVERAGE[i][1], label=COVERAGE[i][0]) for i in reversed(shown)]
    ax.legend(handles=handles, loc="center left", bbox_to_anchor=(1.02, 0.5),
              fontsize="small", frameon=False)  # fmt: skip
