"""CRAI's several-variable, target, recurrent and attention checkpoints, against CRAI's own
outputs (``../shared/data/crai/ext``: barely trained models on 12 monthly NCL sample fields
with HadCRUT4 holes; see its README). Skipped where that folder is absent."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import xarray as xr

import xcrai

EXT = Path(__file__).resolve().parents[2] / "shared" / "data" / "crai" / "ext"
pytestmark = pytest.mark.skipif(not EXT.is_dir(), reason="../shared/data/crai/ext is absent")

#: variant: (inputs, target, time context), as CRAI's argument files (eval.inp) say
VARIANTS = {
    "channel-infusion": (["tas", "uas", "vas"], None, (0, 0)),
    "json-input": (["tas", "uas"], None, (2, 2)),
    "target-channel-memory": (["tas", "uas"], "vas", (2, 2)),
}


def tolerance(reference: np.ndarray) -> float:
    """Float32 rounding: 1e-5, or 2e-6 of the field's largest magnitude if larger."""
    return max(1e-5, 2e-6 * float(np.nanmax(np.abs(reference))))


def open_inputs(variant: str) -> xr.Dataset:
    files = sorted((EXT / variant / "input").glob("*.nc"))
    return xr.merge([xr.open_dataset(f) for f in files], compat="override", join="exact")


def crai_output(variant: str, name: str) -> xr.DataArray:
    return xr.open_dataset(EXT / variant / "out" / f"{variant}_output.nc")[name]


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_several_variables_reproduce_crai(variant):
    inputs, target, time_context = VARIANTS[variant]
    model = xcrai.load_model(
        EXT / variant / "model.pth", inputs=inputs, target=target, time_context=time_context
    )
    ds = open_inputs(variant)
    if target is not None:  # CRAI's evaluation reads the target, but only as truth
        ds = ds.drop_vars(target)
    with pytest.warns(xcrai.UnreachableWarning):  # a few cells near the poles
        out = ds.crai.infill(model, padding="zeros", return_output=True)
    name = target or inputs[0]
    expected = crai_output(variant, name)
    got = out[f"{name}_output"].sel(time=expected.time)
    np.testing.assert_allclose(got.values, expected.values, rtol=0, atol=tolerance(expected))
    if target is None:  # observed points keep their values; holes take the output
        np.testing.assert_array_equal(
            out[name].values, np.where(np.isfinite(ds[name]), ds[name], out[f"{name}_output"])
        )
        infilled = xr.open_dataset(EXT / variant / "out" / f"{variant}_infilled.nc")[name]
        np.testing.assert_allclose(
            out[name].sel(time=infilled.time).values, infilled.values, rtol=0,
            atol=tolerance(infilled),
        )  # fmt: skip
    else:  # predicted (or out of reach) everywhere: no value of the target was read
        assert set(np.unique(out[f"{name}_flag"])) <= {0, -1}


def test_several_variables_chunked_and_lazy_equal_eager():
    inputs, target, time_context = VARIANTS["target-channel-memory"]
    model = xcrai.load_model(
        EXT / "target-channel-memory" / "model.pth", inputs=inputs, target=target,
        time_context=time_context, padding="zeros",
    )  # fmt: skip
    ds = open_inputs("target-channel-memory").drop_vars("vas")
    eager = ds.crai.infill(model)
    lazy = ds.chunk(time=5).crai.infill(model)
    assert lazy.vas.chunks is not None
    np.testing.assert_array_equal(lazy.vas.values, eager.vas.values)


def test_several_variables_say_what_is_missing():
    model = xcrai.load_model(
        EXT / "channel-infusion" / "model.pth", inputs=["tas", "uas", "vas"], padding="zeros"
    )
    ds = open_inputs("channel-infusion")
    with pytest.raises(ValueError, match=r"lacks \['uas'\]"):
        ds.drop_vars("uas").crai.infill(model)
    with pytest.raises(ValueError, match="infill a Dataset holding them"):
        ds.tas.crai.infill(model)
    with pytest.raises(ValueError, match="cannot share"):
        xcrai.load_model(EXT / "channel-infusion" / "model.pth", inputs=["tas", "uas"])
