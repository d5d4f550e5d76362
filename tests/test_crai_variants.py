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
    "conv-lstm": (["tas"], None, (3, 1)),
    "attention": (["tas", "uas", "vas"], None, None),
    "attention-channel-memory": (["tas", "uas", "vas"], None, (2, 2)),
}
#: CRAI's TrajGRU mixes the samples of a batch (tests/test_crainet.py reproduces CRAI's
#: output with that mixing at the network level; xcrai infills each field on its own)


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
        EXT / variant / "model.pth", inputs=inputs if len(inputs) > 1 else None,
        target=target, time_context=time_context,
    )  # fmt: skip
    ds = open_inputs(variant)
    if target is not None:  # CRAI's evaluation reads the target, but only as truth
        ds = ds.drop_vars(target)
    with pytest.warns(xcrai.UnreachableWarning):  # a few cells near the poles
        out = ds.crai.infill(model, padding="zeros", return_output=True, unreachable="crai")
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


@pytest.mark.parametrize("variant", ["conv-lstm", "attention-channel-memory"])
def test_recurrent_and_attention_models_are_lazy_and_chunking_invariant(variant):
    inputs, _, time_context = VARIANTS[variant]
    model = xcrai.load_model(
        EXT / variant / "model.pth", inputs=inputs if len(inputs) > 1 else None,
        time_context=time_context, padding="zeros",
    )  # fmt: skip
    ds = open_inputs(variant)
    with pytest.warns(xcrai.UnreachableWarning):
        eager = ds.crai.infill(model, batch_size=3)
        lazy = ds.chunk(time=4).crai.infill(model)
    assert lazy.tas.chunks is not None
    np.testing.assert_array_equal(lazy.tas.values, eager.tas.values)


def test_traj_gru_infills_each_field_on_its_own():
    """CRAI's TrajGRU lets the fields of one batch mix (so its output depends on which
    fields share a batch); xcrai's gives each field the same value whatever the batch."""
    model = xcrai.load_model(EXT / "traj-gru" / "model.pth", time_context=(2, 2), padding="zeros")
    tas = open_inputs("traj-gru").tas
    with pytest.warns(xcrai.UnreachableWarning):
        one = tas.crai.infill(model, batch_size=1, threads=1, return_output=True).tas_output
        all_ = tas.crai.infill(model, batch_size=12, threads=1, return_output=True).tas_output
    np.testing.assert_array_equal(one.values, all_.values)
    reference = crai_output("traj-gru", "tas")
    assert np.abs(one.sel(time=reference.time) - reference).max() > 1e-4  # CRAI's mixing


def test_recurrent_models_need_their_steps():
    with pytest.raises(ValueError, match=r"recurrent memory .* pass time_context=\(P, F\)"):
        xcrai.load_model(EXT / "conv-lstm" / "model.pth")
    model = xcrai.load_model(EXT / "conv-lstm" / "model.pth", time_context=(3, 1))
    with pytest.raises(ValueError, match=r"load it again with time_context=\(2, 2\)"):
        model.with_options(time_context=(2, 2))
    with pytest.raises(ValueError, match=r"tile_size: .* cannot run in tiles"):
        open_inputs("conv-lstm").tas.crai.infill(model, tile_size=36)


def test_command_line_reads_inputs_and_target(tmp_path, capsys):
    from xcrai.cli import main

    data = tmp_path / "tas_uas.nc"
    open_inputs("target-channel-memory").drop_vars("vas").to_netcdf(data)
    out = tmp_path / "vas.nc"
    model = str(EXT / "target-channel-memory" / "model.pth")
    args = ["infill", str(data), "-m", model, "--time-context", "2,2", "--padding", "zeros",
            "--unreachable", "crai"]
    assert main([*args, "--inputs", "tas,uas", "--target", "vas", "-o", str(out)]) == 0
    with xr.open_dataset(out) as written:
        expected = crai_output("target-channel-memory", "vas")
        got = written.vas.sel(time=expected.time).values
        np.testing.assert_allclose(got, expected.values, rtol=0, atol=tolerance(expected))
        assert "predicted vas with model model.pth" in written.attrs["history"]
    capsys.readouterr()
    assert (
        main([*args, "--inputs", "tas,psl", "--target", "vas", "-o", str(tmp_path / "x.nc")]) == 2
    )
    assert (
        "error: data: model.pth reads the variables ['tas', 'psl']; the dataset lacks ['psl']"
        in (capsys.readouterr().err)
    )
    assert main([*args, "--inputs", "tas,tas", "-o", str(tmp_path / "x.nc")]) == 2
    assert "inputs: expected distinct variable names" in capsys.readouterr().err
    assert not (tmp_path / "x.nc").exists()


@pytest.mark.parametrize("variant", ["traj-gru", "attention-channel-memory"])
def test_recurrent_and_attention_models_save_load_and_pickle(variant, tmp_path):
    import pickle

    inputs, _, time_context = VARIANTS.get(variant, (["tas"], None, (2, 2)))
    model = xcrai.load_model(
        EXT / variant / "model.pth", inputs=inputs if len(inputs) > 1 else None,
        time_context=time_context, padding="zeros",
    )  # fmt: skip
    again = xcrai.load_model(model.save(tmp_path / "own.pth"))
    assert again.config.architecture == model.config.architecture
    assert again.config.to_dict().keys() == model.config.to_dict().keys()
    for key in ("time_context", "padding", "inputs", "target", "stats", "bounds"):
        assert again.config.to_dict()[key] == model.config.to_dict()[key]
    copied = pickle.loads(pickle.dumps(model))
    ds = open_inputs(variant).isel(time=slice(0, 6))
    with pytest.warns(xcrai.UnreachableWarning):
        # one thread: TrajGRU's last bits change with the CPU thread count (README)
        expected = ds.crai.infill(model, threads=1).tas.values
    for other in (again, copied):
        with pytest.warns(xcrai.UnreachableWarning):
            np.testing.assert_array_equal(ds.crai.infill(other, threads=1).tas.values, expected)
