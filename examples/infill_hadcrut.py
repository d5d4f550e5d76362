"""Infill the bundled HadCRUT4 sample with CRAI's demo model and plot it.

Run: python examples/infill_hadcrut.py [FOLDER]
(writes hadcrut4_infilled.png into FOLDER, by default a new temporary folder)
"""

import sys
import tempfile
from pathlib import Path

import xarray as xr

import xcrai

out = Path(sys.argv[1] if len(sys.argv) > 1 else tempfile.mkdtemp(prefix="xcrai-example-"))
out.mkdir(parents=True, exist_ok=True)

ds = xr.open_dataset(xcrai.data.hadcrut4_sample(), chunks={"time": 1})  # lazy, dask-backed
model = xcrai.load_model(xcrai.data.demo_model())  # CRAI's 20crtasgn72; padding auto -> global

result = ds.tas.crai.infill(model, return_output=True)  # nothing computed yet
result = result.compute()
print(result)
print("unreachable holes per month:", (result["tas_flag"] == -1).sum(("lat", "lon")).values)

fig = result.tas.crai.plot(original=ds.tas)  # needs matplotlib: pip install "xcrai[plot]"
fig.savefig(out / "hadcrut4_infilled.png", dpi=90)
print(f"wrote {out / 'hadcrut4_infilled.png'}")
