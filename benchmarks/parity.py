"""Side by side against another commit: hashes of infills (eager, lazy, tiled, time context,
several variables, a target, first guesses, members, sigma, bounds, steady mask, a CRAI
ConvLSTM checkpoint) and of 30-iteration fits' weights, on fitbench's data, for a refactoring that must keep CPU results
bit for bit. Run it at both commits and compare the output:

    git worktree add /tmp/base <commit>
    PYTHONPATH=/tmp/base python benchmarks/parity.py > base.txt
    python benchmarks/parity.py > now.txt
    diff base.txt now.txt && echo identical
"""

import hashlib
import warnings
from pathlib import Path

import numpy as np
import xarray as xr

import xcrai

warnings.simplefilter("ignore")
D = str(Path(__file__).parent / "fitbench" / "data") + "/"
EXT = Path(__file__).resolve().parents[2] / "shared" / "data" / "crai" / "ext" / "conv-lstm"
zg = xr.open_dataset(D + "zg_train.nc").zg.load()
masks = xr.open_dataset(D + "zg_masks.nc").zg.load()
test = xr.open_dataset(D + "zg_test.nc").zg.load()
OPTIONS = dict(batch_size=4, architecture={"n_filters": 4, "depth": 2}, progress=False,
               threads=1, iterations=30)  # fmt: skip


def values(a) -> str:
    """sha256 (first 12 digits) of an array's values."""
    data = np.ascontiguousarray(np.asarray(a, dtype=np.float64))
    return hashlib.sha256(data.tobytes()).hexdigest()[:12]


def weights(model) -> str:
    """sha256 (first 12 digits) of a model's weights."""
    digest = hashlib.sha256()
    for key, tensor in sorted(model.net.state_dict().items()):
        digest.update(key.encode())
        digest.update(tensor.numpy().tobytes())
    return digest.hexdigest()[:12]


def infill(data, model, **options):
    return data.crai.infill(model, progress=False, **options)


def main() -> None:
    m = zg.crai.fit(masks, **OPTIONS)
    print("fit one", weights(m))
    print("eager", values(infill(test, m)))
    print("lazy", values(infill(test.chunk(time=1), m).values))
    print("tiled", values(infill(test, m, tile_size=24)))
    print("bounds", values(infill(test, m, bounds=(5000, 6000))))
    steady = xr.zeros_like(test.isel(time=0), dtype=bool)
    steady[:10] = True
    print("steady", values(infill(test, m, steady_mask=steady)))
    timed = zg.crai.fit(masks, time_context=(1, 1), **OPTIONS)
    print("fit time", weights(timed))
    print("time", values(infill(test.chunk(time=2), timed).values))
    sigma = zg.crai.fit(masks, uncertainty=True, **{**OPTIONS, "validation": 0.2})
    print("fit sigma", weights(sigma))
    filled = infill(test, sigma, sigma=True)
    print("sigma", values(filled.zg), values(filled.zg_sigma))
    two = xr.Dataset({"zg": zg, "b": zg * 0.5 + 3}).crai.fit(masks, inputs=["zg", "b"], **OPTIONS)
    print("fit two", weights(two))
    print("several", values(infill(xr.Dataset({"zg": test, "b": test * 0.5 + 3}), two).zg))
    both = xr.Dataset({"zg": zg, "b": zg * 0.5 + 3})
    timed_two = both.crai.fit(masks, inputs=["zg", "b"], time_context=(1, 0),
                              **{**OPTIONS, "validation": 0.2})  # fmt: skip
    print("fit two time", weights(timed_two))
    target = both.crai.fit(masks, inputs=["zg"], target="b", **OPTIONS)
    print("fit target", weights(target))
    print("target", values(infill(xr.Dataset({"zg": test}), target).b))
    for guess, augment in (("climatology", True), ("eof", False)):
        guessed = zg.crai.fit(masks, first_guess=guess, augment=augment, **OPTIONS)
        print("fit", guess, weights(guessed))
        print(guess, values(infill(test, guessed)), values(infill(test.chunk(time=2), guessed)))
    other = zg.crai.fit(masks, **{**OPTIONS, "seed": 1})
    print("members", values(infill(test, [m, other])))
    if EXT.is_dir():  # ../shared/data/crai/ext
        crai = xcrai.load_model(EXT / "model.pth", time_context=(3, 1))
        with xr.open_dataset(EXT / "input" / "tas_ncl12_masked.nc") as ds:
            tas = ds.tas.load()
        # a recurrent network's last bits follow the CPU thread count: one thread
        print("convlstm", values(infill(tas, crai, threads=1)),
              values(infill(tas.chunk(time=3), crai, threads=1).values))  # fmt: skip


if __name__ == "__main__":
    main()
