"""The infill contract: CRAI parity, the accessor on DataArrays and Datasets, dask."""

from __future__ import annotations

import logging
import warnings
from dataclasses import replace

import dask
import numpy as np
import pytest
import xarray as xr
from conftest import DATA
from reference import raw_state_dict, textbook_unet

import xcrai

pytestmark = pytest.mark.filterwarnings("ignore::xcrai.UnreachableWarning")


def _oracle(path, fields: np.ndarray, global_padding: bool) -> np.ndarray:
    """Infilled fields (T, H, W) by the textbook network of tests/reference.py."""
    valid = np.isfinite(fields)
    out, _ = textbook_unet(raw_state_dict(path), fields[:, None], valid[:, None], global_padding)
    return np.where(valid, fields, out)


# -- CRAI parity ---------------------------------------------------------------------------


def test_minimum_model_reproduces_crai_output(hadcrut, minimum_model):
    with xr.open_dataset(DATA / "minimum-1_infilled.nc") as ref:
        expected = ref.tas.values
    got = hadcrut.tas.crai.infill(minimum_model, padding="zeros", unreachable="crai")
    assert np.abs(got.values - expected).max() < 1e-5


def test_demo_model_global_padding_matches_textbook(hadcrut, demo_model):
    got = hadcrut.tas.crai.infill(demo_model, unreachable="crai")  # auto -> global here
    assert "padding global" in got.attrs["history"].splitlines()[0]
    want = _oracle(xcrai.data.demo_model(), hadcrut.tas.values, global_padding=True)
    np.testing.assert_allclose(got.values, want, atol=2e-5, rtol=0)
    zeros = hadcrut.tas.crai.infill(demo_model, padding="zeros", unreachable="crai")
    assert np.abs(zeros.values - got.values).max() > 0.01


def test_demo_model_zero_padding_on_odd_regional_crop(hadcrut, demo_model):
    crop = hadcrut.tas.isel(lat=slice(9, 62), lon=slice(3, 44))  # 53 x 41
    with pytest.warns(UserWarning, match="trained on a 72x72"):  # a crop of its grid
        got = crop.crai.infill(demo_model)  # regional: auto -> zeros
    assert "padding zeros" in got.attrs["history"].splitlines()[0]
    want = _oracle(xcrai.data.demo_model(), crop.values, global_padding=False)
    np.testing.assert_allclose(got.values, want, atol=2e-5, rtol=0)


def test_time_context_interior_matches_textbook_windows(hadcrut_series, memory_model):
    got = hadcrut_series.crai.infill(memory_model, padding="zeros", unreachable="crai")
    values = hadcrut_series.values
    steps = np.arange(3, 11)  # interior: t-3 .. t+1 inside the series
    windows = np.stack([values[t - 3 : t + 2] for t in steps])
    valid = np.isfinite(windows)
    out, _ = textbook_unet(raw_state_dict(DATA / "channel-memory.inp.pth"), windows, valid, False)
    want = np.where(np.isfinite(values[steps]), values[steps], out)
    np.testing.assert_allclose(got.values[steps], want, atol=2e-5, rtol=0)
    assert np.isfinite(got.values).all()  # every step infilled, edges included


def test_time_context_edges_use_clamped_windows(hadcrut_series, memory_model):
    got = hadcrut_series.crai.infill(memory_model, padding="zeros", unreachable="crai")
    values = hadcrut_series.values
    window = values[[0, 0, 0, 0, 1]][None]  # t=0: steps -3..1 clamped to 0..1
    out, _ = textbook_unet(
        raw_state_dict(DATA / "channel-memory.inp.pth"), window, np.isfinite(window), False
    )
    want = np.where(np.isfinite(values[0]), values[0], out[0])
    np.testing.assert_allclose(got.values[0], want, atol=2e-5, rtol=0)


def test_demo_model_on_a_series(hadcrut_series, demo_model):
    got = hadcrut_series.crai.infill(demo_model, unreachable="crai")
    want = _oracle(xcrai.data.demo_model(), hadcrut_series.values, global_padding=True)
    np.testing.assert_allclose(got.values, want, atol=2e-5, rtol=0)


# -- the accessor contract -----------------------------------------------------------------


def test_valid_points_bitwise_unchanged_and_holes_filled(hadcrut, demo_model):
    for dtype in (np.float32, np.float64):
        da = hadcrut.tas.astype(dtype)
        got = da.crai.infill(demo_model)
        valid = np.isfinite(da.values)
        assert got.dtype == dtype
        np.testing.assert_array_equal(got.values[valid], da.values[valid])
        assert np.isfinite(got.values).all()


def test_metadata_kept_and_history_gains_one_line(hadcrut, demo_model):
    da = hadcrut.tas
    got = da.crai.infill(demo_model)
    assert got.name == da.name and got.dims == da.dims
    xr.testing.assert_identical(got.coords.to_dataset(), da.coords.to_dataset())
    assert {k: v for k, v in got.attrs.items() if k != "history"} == {
        k: v for k, v in da.attrs.items() if k != "history"
    }
    old = da.attrs.get("history", "")
    new = got.attrs["history"].split("\n")
    assert "\n".join(new[1:]) == old
    line = new[0]
    fraction = 1 - np.isfinite(da.values).mean()
    assert f"xcrai {xcrai.__version__}" in line
    assert "20crtasgn72.pth" in line and demo_model.sha256 in line
    assert f"{fraction:.2%} of points infilled" in line


@pytest.mark.parametrize("order", [("lon", "lat", "time"), ("lat", "time", "lon")])
def test_any_dimension_order(hadcrut, demo_model, order):
    base = hadcrut.tas.crai.infill(demo_model)
    got = hadcrut.tas.transpose(*order).crai.infill(demo_model)
    assert got.dims == order
    np.testing.assert_array_equal(got.transpose(*base.dims).values, base.values)


def test_extra_dimensions_are_batched(hadcrut, demo_model):
    members = xr.concat(
        [hadcrut.tas, hadcrut.tas.roll(lon=11, roll_coords=False)], dim="member"
    ).transpose("time", "member", "lat", "lon")
    got = members.crai.infill(demo_model)
    assert got.dims == members.dims
    for i in range(2):
        alone = members.isel(member=i).crai.infill(demo_model)
        np.testing.assert_array_equal(got.isel(member=i).values, alone.values)


def test_a_single_field_without_time(hadcrut, demo_model):
    field = hadcrut.tas.isel(time=0)
    got = field.crai.infill(demo_model)
    np.testing.assert_array_equal(got.values, hadcrut.tas.crai.infill(demo_model)[0].values)


def test_return_output_dataset(hadcrut, demo_model):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ds = hadcrut.tas.crai.infill(demo_model, return_output=True)
    assert set(ds.data_vars) == {"tas", "tas_output", "tas_flag"}
    valid = np.isfinite(hadcrut.tas.values)
    flags = ds.tas_flag.values
    assert ds.tas_flag.dtype == np.int8
    np.testing.assert_array_equal(flags == 1, valid)
    holes = ~valid
    np.testing.assert_array_equal(ds.tas.values[holes], ds.tas_output.values[holes])
    # a few polar cells of 1877-09 are beyond the demo network's reach: CRAI's 0, flagged
    # (unreachable="poisson" fills them instead: tests below)
    unreachable = flags == -1
    assert 0 < unreachable.sum() < 50
    assert (ds.tas_output.values[unreachable] == 0).all()
    unreached = [w for w in caught if issubclass(w.category, xcrai.UnreachableWarning)]
    assert len(unreached) == 1 and unreached[0].filename == __file__
    assert f"tas: {unreachable.sum()} hole point(s)" in str(unreached[0].message)
    assert "flagged -1 in 'tas_flag'" in str(unreached[0].message)


def test_return_output_is_cf(hadcrut, demo_model):
    """Global attrs are only ``history`` (a DataArray does not know its file's); variable
    attrs stay on the variables; the flags are ``tas_flag``, CF-linked to ``tas``."""
    da = hadcrut.tas.assign_attrs(history="made by hand")
    ds = da.crai.infill(demo_model, return_output=True)
    assert list(ds.attrs) == ["history"]
    new, old = ds.attrs["history"].split("\n")
    assert "xcrai" in new and "infilled tas with" in new and old == "made by hand"
    kept = {k: v for k, v in da.attrs.items() if k != "history"}
    assert {k: v for k, v in ds.tas.attrs.items() if k != "ancillary_variables"} == kept
    assert ds.tas.attrs["ancillary_variables"] == "tas_flag"
    assert ds.tas_output.attrs["long_name"] == "raw network output"
    assert "history" not in ds.tas_output.attrs and "ancillary_variables" not in ds.tas_output.attrs
    flag = ds.tas_flag.attrs
    assert flag["standard_name"] == "air_temperature status_flag"
    np.testing.assert_array_equal(flag["flag_values"], [-1, 0, 1])
    assert flag["flag_meanings"] == "unreachable_hole infilled observed"
    assert "units" not in flag
    unnamed = hadcrut.tas.rename(None).crai.infill(demo_model, return_output=True)
    assert set(unnamed.data_vars) == {"infilled", "infilled_output", "infilled_flag"}


# -- holes beyond the network's reach -------------------------------------------------------


def _neighbour_means(field: np.ndarray) -> np.ndarray:
    """The mean of each point's four grid neighbours: longitude wraps, a neighbour beyond
    the poles' rows is left out (Laplace's equation with zero flux there)."""
    padded = np.pad(field, ((1, 1), (0, 0)), constant_values=np.nan)
    sums = np.zeros_like(field)
    counts = np.zeros_like(field)
    for neighbour in (padded[:-2], padded[2:], np.roll(field, 1, 1), np.roll(field, -1, 1)):
        sums += np.nan_to_num(neighbour)
        counts += np.isfinite(neighbour)
    return sums / counts


def test_unreachable_holes_solve_laplace_from_the_values_around_them(hadcrut, demo_model):
    """Each hole beyond the network's reach is the mean of its four neighbours (observed,
    infilled or unreachable), which hold it up: the discrete Laplace equation, checked on
    the result itself; unreachable="crai" leaves CRAI's fill value there instead."""
    with pytest.warns(xcrai.UnreachableWarning, match="hold a Laplace fill of the values"):
        ds = hadcrut.tas.crai.infill(demo_model, unreachable="poisson", return_output=True)
    unreachable = ds.tas_flag.values == -1
    assert unreachable.any()
    for t in np.flatnonzero(unreachable.any(axis=(1, 2))):
        field = ds.tas.values[t].astype(np.float64)
        np.testing.assert_allclose(
            field[unreachable[t]], _neighbour_means(field)[unreachable[t]], atol=1e-4
        )
    others = ~unreachable
    with pytest.warns(xcrai.UnreachableWarning, match="hold CRAI's fill value"):
        crai = hadcrut.tas.crai.infill(demo_model)  # the default
    np.testing.assert_array_equal(crai.values[others], ds.tas.values[others])
    np.testing.assert_array_equal(crai.values[unreachable], ds.tas_output.values[unreachable])
    assert "filled by Laplace's equation" in ds.attrs["history"]
    assert "Laplace's equation" not in crai.attrs["history"].splitlines()[0]
    assert "Laplace" in ds.tas_flag.attrs["comment"]


def test_unreachable_fill_is_lazy_and_chunking_invariant(hadcrut_series, demo_model):
    eager = hadcrut_series.crai.infill(demo_model, unreachable="poisson", return_output=True)
    assert (eager.tas_flag == -1).any()
    for chunks in ({"time": 1}, {"time": 5, "lat": 36}):
        lazy = hadcrut_series.chunk(chunks).crai.infill(
            demo_model, unreachable="poisson", return_output=True
        )
        assert isinstance(lazy.tas.data, dask.array.Array)
        assert lazy.tas.chunks == hadcrut_series.chunk(chunks).chunks
        np.testing.assert_array_equal(lazy.tas.values, eager.tas.values)


def test_unreachable_option_is_checked(hadcrut, demo_model):
    with pytest.raises(ValueError, match=r"unreachable: expected one of \('crai', 'poisson'\)"):
        hadcrut.tas.crai.infill(demo_model, unreachable="nearest")


def test_dataset_flags_are_cf_linked(hadcrut, demo_model):
    ds = hadcrut.assign(tas2=hadcrut.tas * 2)
    ds["tas2"].attrs = {"ancillary_variables": "tas2_error"}  # no standard_name
    with pytest.warns(xcrai.UnreachableWarning) as record:
        out = ds.crai.infill(demo_model, variables=["tas", "tas2"], return_output=True)
    record = [r for r in record if r.category is xcrai.UnreachableWarning]  # also: tas2 != tas
    assert len(record) == 1 and record[0].filename == __file__
    assert "tas: " in str(record[0].message) and "tas2: " in str(record[0].message)
    assert set(out.data_vars) == {f"{name}{suffix}" for name in ("tas", "tas2")
                                  for suffix in ("", "_output", "_flag")}  # fmt: skip
    assert out.tas.attrs["ancillary_variables"] == "tas_flag"
    assert out.tas2.attrs["ancillary_variables"] == "tas2_error tas2_flag"
    assert out.tas_flag.attrs["standard_name"] == "air_temperature status_flag"
    assert "standard_name" not in out.tas2_flag.attrs
    np.testing.assert_array_equal(out.tas_flag.values == 1, np.isfinite(ds.tas.values))
    # history is global only, one line per variable on top of the file's
    assert all("history" not in out[name].attrs for name in out.data_vars)
    lines = out.attrs["history"].split("\n")
    assert "infilled tas2 with" in lines[0] and "infilled tas with" in lines[1]
    assert "\n".join(lines[2:]) == ds.attrs["history"]
    plain = ds.crai.infill(demo_model, variables="tas")
    assert "ancillary_variables" not in plain.tas.attrs and "tas_flag" not in plain


def test_keep_attrs_false_is_honoured(hadcrut, demo_model):
    """``xr.set_options(keep_attrs=False)`` drops the input's attrs; xcrai's own (history,
    the flags' CF attributes and the link to them) are still written."""
    with xr.set_options(keep_attrs=False):
        da = hadcrut.tas.crai.infill(demo_model)
        out = hadcrut.tas.crai.infill(demo_model, return_output=True)
        ds = hadcrut.crai.infill(demo_model, return_output=True)
    assert list(da.attrs) == ["history"]
    assert out.tas.attrs == {"ancillary_variables": "tas_flag"}
    assert out.tas_output.attrs == {"long_name": "raw network output"}
    assert "standard_name" not in out.tas_flag.attrs and "flag_values" in out.tas_flag.attrs
    assert list(ds.attrs) == ["history"] and "xcrai" in ds.attrs["history"]
    assert ds.tas.attrs == {"ancillary_variables": "tas_flag"}
    with xr.set_options(keep_attrs=True):
        kept = hadcrut.tas.crai.infill(demo_model)
    assert kept.attrs["units"] == "K"
    np.testing.assert_array_equal(kept.values, da.values)


def test_model_variable_and_units_are_checked(hadcrut, demo_model):
    from xcrai.model import CraiModel

    def trained_on(variable, units):
        config = replace(demo_model.config, variable=variable, units=units)
        return CraiModel(config, demo_model.net.state_dict())

    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        warnings.simplefilter("ignore", xcrai.UnreachableWarning)
        hadcrut.tas.crai.infill(trained_on("tas", "K"))
        hadcrut.tas.crai.infill(trained_on(None, None))  # a CRAI checkpoint says neither
    with pytest.warns(UserWarning, match=r"trained on variable 'pr' \(the data's: 'tas'\)") as w:
        hadcrut.tas.crai.infill(trained_on("pr", "K"))
    assert w[0].filename == __file__
    with pytest.warns(UserWarning, match=r"units 'degC' \(the data's: 'K'\)") as w:
        hadcrut.crai.infill(trained_on("tas", "degC"))
    assert [r.filename for r in w if "degC" in str(r.message)] == [__file__]


def test_dataset_infills_the_models_variable_by_default(hadcrut, demo_model):
    from xcrai.model import CraiModel

    ds = hadcrut.assign(tas2=hadcrut.tas * 2)
    model = CraiModel(replace(demo_model.config, variable="tas2"), demo_model.net.state_dict())
    out = ds.crai.infill(model)
    xr.testing.assert_identical(out.tas, ds.tas)
    assert np.isfinite(out.tas2.values).all()
    assert len(out.attrs["history"].split("\n")) == len(ds.attrs["history"].split("\n")) + 1


def test_mask_argument_and_nan_under_valid_mask(hadcrut, demo_model):
    da = hadcrut.tas
    with xr.open_dataset(xcrai.data.hadcrut4_mask()) as f:
        coverage = f.tas.isel(time=0, drop=True).load()
    mask = coverage.fillna(0).astype(bool)
    got = da.crai.infill(demo_model, mask=mask, return_output=True)
    valid = mask.values[None] & np.isfinite(da.values)
    np.testing.assert_array_equal(got.tas_flag.values == 1, valid)
    np.testing.assert_array_equal(got.tas.values[valid], da.values[valid])
    # 0/1 integers work the same as bool
    same = da.crai.infill(demo_model, mask=mask.astype("int8"))
    np.testing.assert_array_equal(same.values, got.tas.values)


def test_integer_input_is_cast_to_float(hadcrut, demo_model):
    da = (hadcrut.tas.fillna(0) * 10).round().astype("int16")
    mask = np.isfinite(hadcrut.tas)
    got = da.crai.infill(demo_model, mask=mask)
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got.values[mask.values], da.values[mask.values])


def test_all_nan_field_stays_nan_with_a_warning(hadcrut, demo_model):
    da = hadcrut.tas.copy()
    da[1] = np.nan
    with pytest.warns(xcrai.UnreachableWarning, match="1 field.s. have no valid point") as w:
        got = da.crai.infill(demo_model, return_output=True)
    assert len(w) == 1 and w[0].filename == __file__
    assert np.isnan(got.tas.values[1]).all()
    assert (got.tas_flag.values[1] == -1).all()
    assert np.isfinite(got.tas.values[0]).all()


def test_dataset_infills_named_variables_and_keeps_the_rest(hadcrut, demo_model):
    ds = hadcrut.assign(
        tas2=hadcrut.tas * 2, station_count=("time", np.array([3, 4])),
    )  # fmt: skip
    out = ds.crai.infill(demo_model, variables=["tas"])
    np.testing.assert_array_equal(out.tas.values, ds.tas.crai.infill(demo_model).values)
    xr.testing.assert_identical(out.tas2, ds.tas2)
    xr.testing.assert_identical(out.station_count, ds.station_count)
    assert out.attrs["history"].startswith(out.attrs["history"].split("\n")[0])
    assert "infilled tas with" in out.attrs["history"].split("\n")[0]
    default = ds.crai.infill(demo_model)  # default: the model's variable, when present
    xr.testing.assert_identical(default.tas2, ds.tas2)
    np.testing.assert_array_equal(default.tas.values, out.tas.values)
    from dataclasses import replace

    anonymous = xcrai.CraiModel(replace(demo_model.config, variable=None),
                                demo_model.net.state_dict())  # fmt: skip
    with pytest.warns(xcrai.UnreachableWarning):
        both = ds.crai.infill(anonymous)  # else every variable with lat and lon
    assert np.isfinite(both.tas2.values).all()
    xr.testing.assert_identical(both.station_count, ds.station_count)


def test_the_cpu_and_the_default_device_agree(hadcrut, demo_model, device):
    """Bit for bit where the default is the CPU; on CUDA (other algorithms, IEEE fp32) as
    closely as either matches CRAI (1e-5 K)."""
    got = hadcrut.tas.crai.infill(demo_model, device="cpu", batch_size=1)
    auto = hadcrut.tas.crai.infill(demo_model)
    if device == "cpu":
        np.testing.assert_array_equal(got.values, auto.values)
    else:
        np.testing.assert_allclose(got.values, auto.values, rtol=0, atol=1e-5)


# -- dask ----------------------------------------------------------------------------------


def _refuse_to_compute(*args, **kwargs):
    raise AssertionError("something was computed")


def test_dask_input_gives_a_lazy_result(hadcrut_series, demo_model):
    lazy = hadcrut_series.chunk({"time": 5})
    with dask.config.set(scheduler=_refuse_to_compute):
        got = lazy.crai.infill(demo_model)
        ds = lazy.crai.infill(demo_model, return_output=True)
    assert isinstance(got.data, dask.array.Array)
    assert all(isinstance(ds[name].data, dask.array.Array) for name in ds.data_vars)
    assert "not computed (lazy input)" in got.attrs["history"]


def test_blocks_report_to_their_own_infills_observer(hadcrut_series, demo_model):
    """Progress and unreachable holes go to the observer passed to that infill (in the
    graph, with its blocks), not to a registry shared by every infill of the process; the
    tally equals the count from the flags."""
    from xcrai.infill import count_unreached, infill_variables
    from xcrai.observer import BlockObserver

    ds = hadcrut_series.to_dataset().chunk({"time": 5})
    mine, other = BlockObserver(tally=True), BlockObserver(tally=True)
    out, infilled = infill_variables(ds, demo_model, flags=True, observer=mine)
    heard, overheard = [], []
    with mine.listening(heard.append), other.listening(overheard.append):
        done = out.compute()
    assert sum(heard) == 12 and not overheard and not other.unreached
    holes, empty = count_unreached(done.tas_flag, infilled["tas"].spatial)  # computed flags
    assert mine.unreached["tas"] == [int(holes), int(empty)]
    assert int(holes) > 0


@pytest.mark.parametrize("store", ["netcdf", "zarr"])
def test_lazy_result_streams_to_disk(hadcrut_series, memory_model, tmp_path, store):
    """``.crai.infill(...).to_netcdf()/.to_zarr()`` on dask input: the stored numbers are the
    eager ones, and the history line is written too."""
    eager = hadcrut_series.crai.infill(memory_model, padding="zeros")
    lazy = hadcrut_series.chunk({"time": 5}).crai.infill(memory_model, padding="zeros")
    assert lazy.chunks == ((5, 5, 2), (72,), (72,))  # the input's, though halos needed more
    path = tmp_path / f"out.{store}"
    if store == "zarr":
        lazy.to_dataset(name="tas").to_zarr(path)
        back = xr.open_zarr(path).tas.load()
    else:
        lazy.to_netcdf(path)
        back = xr.load_dataarray(path)
    np.testing.assert_array_equal(back.values, eager.values)
    assert back.attrs["history"].startswith(lazy.attrs["history"].split("\n")[0])


@pytest.mark.parametrize("chunks", [1, 2, 5, 7, 12])
def test_any_time_chunking_gives_the_same_numbers(hadcrut_series, memory_model, chunks):
    eager = hadcrut_series.crai.infill(memory_model, padding="zeros", return_output=True)
    lazy = hadcrut_series.chunk({"time": chunks, "lat": 24})  # spatial chunks are merged
    got = lazy.crai.infill(memory_model, padding="zeros", return_output=True).compute()
    for name in ("tas", "tas_output", "tas_flag"):
        np.testing.assert_array_equal(got[name].values, eager[name].values)


def test_chunked_extra_dimension(hadcrut_series, demo_model):
    reversed_series = hadcrut_series.copy(data=hadcrut_series.values[::-1])
    members = xr.concat([hadcrut_series, reversed_series], dim="member")
    eager = members.crai.infill(demo_model)
    got = members.chunk({"member": 1, "time": 4}).crai.infill(demo_model).compute()
    np.testing.assert_array_equal(got.values, eager.values)


def test_global_padding_is_exactly_periodic(hadcrut, demo_model):
    """Rolling the input by a multiple of the encoder's stride (8) rolls the output."""
    base = hadcrut.tas.crai.infill(demo_model, return_output=True).tas_output
    for shift in (8, 40):
        rolled = hadcrut.tas.roll(lon=shift, roll_coords=False)
        out = rolled.crai.infill(demo_model, return_output=True).tas_output
        np.testing.assert_array_equal(out.roll(lon=-shift, roll_coords=False).values, base.values)
    rolled = hadcrut.tas.roll(lon=8, roll_coords=False)
    zeros = rolled.crai.infill(demo_model, padding="zeros").roll(lon=-8, roll_coords=False)
    plain = hadcrut.tas.crai.infill(demo_model, padding="zeros")
    assert not np.array_equal(zeros.values, plain.values)  # zero padding has edges


# -- warnings once per call, logging -------------------------------------------------------


def test_lazy_input_warns_nothing_when_computed_and_logs_why(hadcrut, demo_model, caplog):
    """Lazy input: the count is unknown at the call, and a warning at compute time would
    come from a dask task (a worker's log), once per block; so a log record says where the
    flags are, and computing warns of nothing."""
    lazy = hadcrut.tas.chunk(time=1)
    with caplog.at_level(logging.INFO, logger="xcrai"):
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            got = lazy.crai.infill(demo_model, return_output=True)
            got = got.compute()
    assert (got.tas_flag.values == -1).sum() == 10
    messages = [r.getMessage() for r in caplog.records if r.name == "xcrai"]
    assert any("lazy input" in m and "'tas_flag'" in m for m in messages)


def test_decisions_are_logged(hadcrut, demo_model, caplog):
    da = hadcrut.tas.isel(lat=slice(None, None, -1))  # north to south: turned for the model
    with caplog.at_level(logging.INFO, logger="xcrai"):
        da.crai.infill(demo_model, batch_size=1, tile_size=40, threads=1)
    text = "\n".join(r.getMessage() for r in caplog.records if r.name == "xcrai")
    assert "padding global" in text and "time context (0, 0)" in text
    assert "device cpu" in text or "device cuda" in text
    assert "1 CPU thread(s)" in text
    assert "in batches of 1" in text and "tiles of 40x40" in text
    assert "reordering 'lat'" in text
    with caplog.at_level(logging.INFO, logger="xcrai"):
        caplog.clear()
        hadcrut.tas.chunk(time=1).crai.infill(demo_model)
    assert any("2 block(s)" in r.getMessage() for r in caplog.records)
