"""xcrai.plot and ``.crai.plot()``: panels, axes, holes in grey, laziness, labels (Agg)."""

from __future__ import annotations

import re
import sys

import dask.array as dsa
import numpy as np
import pytest
import xarray as xr

pytest.importorskip("matplotlib")
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.collections import QuadMesh

from xcrai.plot import COVERAGE, HOLE_COLOUR, is_anomaly, plot_infilled, value_label

LABELS = [label for label, _ in COVERAGE]


@pytest.fixture(scope="module")
def pair(hadcrut, demo_model):
    """The HadCRUT4 sample and its infilled version."""
    return hadcrut.tas, hadcrut.tas.crai.infill(demo_model)


def meshes(ax):
    return [c for c in ax.collections if isinstance(c, QuadMesh)]


def test_a_new_figure_is_returned_closed_so_jupyter_shows_it_once(pair):
    before = plt.get_fignums()
    fig = pair[1].crai.plot(original=pair[0])
    assert isinstance(fig, matplotlib.figure.Figure)
    assert plt.get_fignums() == before  # not in pyplot's state: no second display
    data_axes = [ax for ax in fig.axes if ax.get_title()]  # not the colour bars
    assert len(data_axes) == 2 * 3  # two steps, original | infilled | coverage
    fig.canvas.draw()  # renders without pyplot


def test_jupyter_shows_the_figure_once_assigned_or_not():
    """In a real kernel (nbclient, the inline backend): ``fig = da.crai.plot()`` and a bare
    ``da.crai.plot()`` each give one image, and ``fig`` alone in a later cell shows it again;
    no warning points at a library's file (tqdm's "IProgress not found", as pooch imports
    ``tqdm.auto``, was one)."""
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    cells = [
        "import xarray as xr, xcrai\n"
        "ds = xr.open_dataset(xcrai.data.hadcrut4_sample()).load()\n"
        "filled = ds.tas.crai.infill(xcrai.data.demo_model(), progress=False)",
        "fig = filled.crai.plot(original=ds.tas)",
        "filled.crai.plot(original=ds.tas)",
        "fig",
    ]
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    nbclient.NotebookClient(nb, timeout=300, kernel_name="python3").execute()
    images = [sum("image/png" in out.get("data", {}) for out in cell.outputs) for cell in nb.cells]
    assert images == [0, 1, 1, 1]
    stderr = "".join(out.get("text", "") for cell in nb.cells for out in cell.outputs
                     if out.output_type == "stream" and out.name == "stderr")  # fmt: skip
    # warnings point at the user's line (the cell's file), never at a library's file
    sources = re.findall(r"^(\S+?):\d+: \w*Warning", stderr, flags=re.M)
    assert all("ipykernel_" in source for source in sources), stderr
    assert "UnreachableWarning" in stderr  # the demo's 10 unreachable holes: warnings are read


def test_holes_are_grey_not_white(pair):
    fig = plot_infilled(pair[0], pair[1], time="1877-09", panels=["original"])
    (mesh,) = meshes(fig.axes[0])
    grey = matplotlib.colors.to_rgba(HOLE_COLOUR)
    assert mesh.get_cmap().get_bad() == pytest.approx(grey)
    holes = int(pair[0].sel(time="1877-09").isnull().sum())
    assert np.ma.count_masked(mesh.get_array()) == holes > 0


def test_coverage_panel_counts_observed_infilled_and_empty(pair):
    original, filled = pair
    filled = filled.copy()
    filled[0, 0, :3] = np.nan  # a few points left without a value
    fig = plot_infilled(original, filled, time="1877-09", panels=["coverage"])
    ax = fig.axes[0]
    categories = np.asarray(meshes(ax)[0].get_array()).reshape(72, 72)
    observed = np.isfinite(original.isel(time=0).values)
    np.testing.assert_array_equal(categories == LABELS.index("observed"), observed)
    assert (categories == LABELS.index("no value")).sum() == 3
    share = 100 * observed.mean()
    assert ax.get_title() == f"coverage 1877-09: {share:.0f}% observed"
    assert [t.get_text() for t in ax.get_legend().get_texts()] == [
        "observed",
        "infilled",
        "no value",
    ]


def test_flags_mark_unreachable_holes_and_the_legend_stays_off_the_data(hadcrut, demo_model):
    """With the result's flags, the demo's holes beyond the network's reach (which hold
    CRAI's fill value, and look infilled) get a colour and a legend entry of their own; the
    legend sits beside the map; the axes are in degrees."""
    out = hadcrut.crai.infill(demo_model, variables="tas", return_output=True, progress=False)
    fig = out.tas.crai.plot(original=hadcrut.tas, flags=out.tas_flag, time="1877-09",
                            panels=["coverage"])  # fmt: skip
    ax = fig.axes[0]
    categories = np.asarray(meshes(ax)[0].get_array()).reshape(72, 72)
    unreachable = out.tas_flag.sel(time="1877-09").squeeze().values == -1
    assert unreachable.sum() > 0
    np.testing.assert_array_equal(categories == LABELS.index("beyond the network's reach"),
                                  unreachable)  # fmt: skip
    legend = ax.get_legend()
    assert "beyond the network's reach" in [t.get_text() for t in legend.get_texts()]
    fig.canvas.draw()
    box, frame = legend.get_window_extent(), ax.get_window_extent()
    assert box.x0 >= frame.x1  # beside the map, off the data
    assert ax.get_xlabel() == "lon (degrees east)" and ax.get_ylabel() == "lat (degrees north)"


def test_without_the_original_the_plot_says_it_shows_infilled_data(pair):
    fig = pair[1].crai.plot(time="1877-09")
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert titles == ["tas infilled 1877-09"]  # not "original (holes grey)", no coverage
    with pytest.raises(ValueError, match="original="):
        pair[1].crai.plot(panels=["original"])
    with pytest.raises(ValueError, match="original="):
        pair[1].crai.plot(panels=["coverage"])


def test_draws_into_given_axes_and_returns_none(pair):
    _, axes = plt.subplots(2, 2)
    try:
        result = pair[1].crai.plot(original=pair[0], panels=("infilled", "coverage"), ax=axes)
        assert result is None
        assert all(meshes(ax) for ax in axes.ravel())
        _, ax = plt.subplots()
        assert pair[1].crai.plot(pair[0], time="1893-08", panels="infilled", ax=ax) is None
        assert "1893-08" in ax.get_title()
        with pytest.raises(ValueError, match=r"ax: expected 6 matplotlib Axes .* got 4"):
            pair[1].crai.plot(original=pair[0], ax=axes)
        with pytest.raises(ValueError, match="panels: expected"):
            pair[1].crai.plot(original=pair[0], panels=["map"])
        with pytest.raises(ValueError, match="projection: with ax="):
            pair[1].crai.plot(
                pair[0], panels="infilled", time="1893-08", ax=ax, projection="Robinson"
            )
    finally:
        plt.close("all")


def test_only_the_steps_shown_are_computed(hadcrut):
    """A lazy record of 40 steps: the plot reads the blocks of the 6 steps it shows."""
    field = hadcrut.tas.isel(time=0).values
    read: list[int] = []

    def block(block_info=None):
        step = block_info[None]["chunk-location"][0]
        read.append(step)
        return field[None] + step

    data = dsa.map_blocks(block, chunks=((1,) * 40, (72,), (72,)), dtype=field.dtype)
    times = xr.date_range("1900-01-01", periods=40, freq="MS", use_cftime=False)
    lazy = xr.DataArray(
        data,
        dims=("time", "lat", "lon"),
        attrs=hadcrut.tas.attrs,
        name="tas",
        coords={"time": times, "lat": hadcrut.lat, "lon": hadcrut.lon},
    )
    plot_infilled(lazy, lazy.fillna(0.0), panels=["original"])
    assert sorted(set(read)) == list(range(6))
    read.clear()
    plot_infilled(lazy, lazy.fillna(0.0), time=["1902-03", "1901-01"], panels=["infilled"])
    assert sorted(set(read)) == [12, 26]


def test_anomalies_are_labelled_and_drawn_diverging(pair):
    original = pair[0]
    assert is_anomaly(original)  # HadCRUT4 records its reference period
    assert value_label(original) == "Near-Surface Air Temperature anomaly\n(K, against 1961-1990)"
    fig = plot_infilled(original, pair[1], time="1877-09", panels=["infilled"])
    (mesh,) = meshes(fig.axes[0])
    assert mesh.get_cmap().name.startswith("RdBu_r") and mesh.norm.vmin == -mesh.norm.vmax
    assert "anomaly" in fig.axes[-1].get_ylabel()  # the colour bar

    absolute = original.copy(data=original.values + 288.0)
    absolute.attrs = {"long_name": "air temperature", "units": "K"}
    assert not is_anomaly(absolute)
    assert value_label(absolute) == "air temperature\n(K)"
    fig = plot_infilled(absolute, absolute.fillna(288.0), time="1877-09", panels=["infilled"])
    (mesh,) = meshes(fig.axes[0])
    assert mesh.get_cmap().name.startswith("viridis") and mesh.norm.vmin > 250
    assert is_anomaly(xr.DataArray([1.0], dims="x", attrs={"long_name": "SST anomalies"}))


def test_a_projection_without_cartopy_falls_back_to_plain_axes(pair, monkeypatch):
    monkeypatch.setitem(sys.modules, "cartopy", None)
    monkeypatch.setitem(sys.modules, "cartopy.crs", None)
    with pytest.warns(UserWarning, match="cartopy is not installed") as record:
        fig = pair[1].crai.plot(pair[0], time="1877-09", projection="Robinson")
    assert record[0].filename == __file__
    assert fig is not None and not hasattr(fig.axes[0], "coastlines")


def test_a_projection_with_cartopy_draws_maps(pair):
    pytest.importorskip("cartopy")
    fig = pair[1].crai.plot(pair[0], time="1877-09", projection="Robinson", panels="infilled")
    assert hasattr(fig.axes[0], "coastlines")


def test_without_matplotlib_the_error_says_how_to_install_it(pair, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(ImportError, match=r"xcrai.plot needs matplotlib.*xcrai\[plot\]"):
        pair[1].crai.plot(original=pair[0])
    from xcrai.cli import run_demo

    with pytest.raises(ImportError, match=r"xcrai demo needs matplotlib"):
        run_demo(__import__("pathlib").Path("unused"))
