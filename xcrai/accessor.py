"""The ``.crai`` accessor on xarray objects: the user-facing surface, nothing else."""

from __future__ import annotations

from typing import Any

import xarray as xr

from xcrai.infill import infill_dataarray, infill_dataset


@xr.register_dataarray_accessor("crai")
class CraiDataArrayAccessor:
    """CRAI infilling for a DataArray: ``da.crai.infill(model)``."""

    def __init__(self, da: xr.DataArray) -> None:
        self._da = da

    def infill(
        self,
        model: Any,
        *,
        mask: Any = None,
        padding: str | None = None,
        time_context: tuple[int, int] | None = None,
        return_output: bool = False,
        device: str = "auto",
        batch_size: int | None = None,
    ) -> xr.DataArray | xr.Dataset:
        """Fill the holes of this DataArray with a partial-convolution U-Net.

        Latitude, longitude and time are found from CF metadata (cf-xarray) or
        the usual names; dimensions may come in any order and extra ones
        (member, level, ...) are infilled field by field. Dask-backed input
        gives a lazy result; nothing is computed until asked for.

        Parameters
        ----------
        model : str, path or CraiModel
            A CRAI checkpoint, an xcrai model file, or a loaded model.
        mask : DataArray or array, optional
            1 (or True) where valid, 0 where missing; broadcast against the data.
            A point is valid only where the mask allows it **and** the value is
            finite. Default: the non-NaN points.
        padding : {"zeros", "global", "auto"}, optional
            Override the model's padding. "global" wraps longitude around (needs
            a uniform 360-degree longitude); "auto" picks it when the grid allows.
        time_context : (int, int), optional
            Override the model's (P, F): steps t-P .. t+F become input channels.
            Windows are clamped at the ends of the series, so every step is
            infilled.
        return_output : bool
            Return a Dataset with ``infilled``, ``output`` (the raw network
            output) and ``mask`` (1 observed, 0 infilled, -1 unreachable hole).
        device : str
            "auto" (CUDA when available), "cpu", "cuda", "cuda:1", ...
        batch_size : int, optional
            Fields per forward pass; chosen from free memory when omitted.

        Returns
        -------
        DataArray (or Dataset with ``return_output=True``)
            Same dims, coords, name and attrs; valid points are bitwise
            unchanged; ``history`` gains a line naming xcrai, the model and its
            sha256, the padding and the fraction of points infilled.

        Examples
        --------
        >>> import xarray as xr, xcrai
        >>> ds = xr.open_dataset(xcrai.data.hadcrut4_sample())
        >>> filled = ds.tas.crai.infill(xcrai.data.demo_model())
        >>> bool(filled.isnull().any())
        False
        """
        return infill_dataarray(
            self._da,
            model,
            mask=mask,
            padding=padding,
            time_context=time_context,
            return_output=return_output,
            device=device,
            batch_size=batch_size,
        )


@xr.register_dataset_accessor("crai")
class CraiDatasetAccessor:
    """CRAI infilling for a Dataset: ``ds.crai.infill(model, variables=[...])``."""

    def __init__(self, ds: xr.Dataset) -> None:
        self._ds = ds

    def infill(
        self, model: Any, *, variables: str | list[str] | None = None, **kwargs: Any
    ) -> xr.Dataset:
        """Infill the named variables and leave the rest untouched.

        Parameters
        ----------
        model : str, path or CraiModel
        variables : str or list of str, optional
            Default: every data variable with latitude and longitude dimensions.
        **kwargs
            ``mask``, ``padding``, ``time_context``, ``device``, ``batch_size``
            as for :meth:`CraiDataArrayAccessor.infill`.

        Returns
        -------
        Dataset
            A copy with the variables infilled; the global ``history`` gains a
            line per variable.

        Examples
        --------
        >>> ds = xr.open_dataset(xcrai.data.hadcrut4_sample())
        >>> out = ds.crai.infill(xcrai.data.demo_model(), variables="tas")
        """
        return infill_dataset(self._ds, model, variables=variables, **kwargs)
