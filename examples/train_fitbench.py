"""Train a model on 500 hPa heights with real HadCRUT4 coverage masks, then infill.

Run from the repository root: python examples/train_fitbench.py [FOLDER]
(about 2 minutes on a 2-core laptop CPU; seconds on a GPU; writes zg_model.pth into
FOLDER, by default a new temporary folder)
"""

import sys
import tempfile
from pathlib import Path

import numpy as np
import xarray as xr

import xcrai  # noqa: F401  (registers .crai)

out = Path(sys.argv[1] if len(sys.argv) > 1 else tempfile.mkdtemp(prefix="xcrai-example-"))
out.mkdir(parents=True, exist_ok=True)
data = "benchmarks/fitbench/data/"
train = xr.open_dataset(data + "zg_train.nc").zg  # 18 complete fields, 73 x 144
masks = xr.open_dataset(data + "zg_masks.nc").zg  # 60 coverage patterns (1 = observed)
val = xr.open_dataset(data + "zg_val.nc").zg

model = train.crai.fit(masks, validation=val, iterations=1500, batch_size=8)
print(model)
print(model.history[["train_loss", "val_loss", "val_hole_rmse"]].to_dataframe().tail())
model.save(out / "zg_model.pth")
print(f"wrote {out / 'zg_model.pth'}")

test = xr.open_dataset(data + "zg_test.nc").zg  # validation fields with HadCRUT4 holes
truth = xr.open_dataset(data + "zg_truth.nc").zg
filled = test.crai.infill(out / "zg_model.pth")  # the file carries everything infill needs
holes = test.isnull()
rmse = float(np.sqrt(((filled - truth) ** 2).where(holes).mean()))
print(f"hole RMSE: {rmse:.1f} m (zero fill: 35.9 m)")
