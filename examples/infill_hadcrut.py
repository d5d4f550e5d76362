"""Infill the bundled HadCRUT4 sample with CRAI's demo model and plot it.

Run: python examples/infill_hadcrut.py   (writes hadcrut4_infilled.png here)
"""

import xarray as xr

import xcrai

ds = xr.open_dataset(xcrai.data.hadcrut4_sample(), chunks={"time": 1})  # lazy, dask-backed
model = xcrai.load_model(xcrai.data.demo_model())  # CRAI's 20crtasgn72; padding auto -> global

result = ds.tas.crai.infill(model, return_output=True)  # nothing computed yet
result = result.compute()
print(result)
print("unreachable holes per month:", (result["mask"] == -1).sum(("lat", "lon")).values)

fig = result.infilled.crai.plot(original=ds.tas)
fig.savefig("hadcrut4_infilled.png", dpi=90)
print("wrote hadcrut4_infilled.png")
