"""Gaussian random fields on the sphere with a known covariance, and their exact optimum.

The fields live on fitbench's 73 x 144 grid (2.5 degrees, poles included). Their
covariance is a Matérn (GSTools' ``Matern(latlon=True)``, a function of the great-circle
angle through the chordal distance, so valid on the sphere) of unit variance. The 144
cells of each pole row are one place on the sphere, so fields are drawn on the 10,226
distinct places and copied to the pole rows: every draw is exactly from the stated
covariance (the Cholesky factor of the full covariance times standard normal vectors),
with no spectral approximation and no nugget.

Because the covariance and the zero mean are known, the conditional distribution of a
field's hidden points given its observed ones is known exactly: Gaussian, with mean
``C_ho C_oo^-1 x_o`` (simple kriging with the true covariance: the best possible infill
in mean square) and variance ``diag(C_hh - C_ho C_oo^-1 C_oh)``. :meth:`Sphere.optimum`
solves it with a Cholesky factorisation of ``C_oo`` per field (dense LAPACK through
SciPy), a second or so per field for fitbench's masks (about 2,700 observed places).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import linalg

#: rows of the covariance computed at once (bounds the temporary memory)
BLOCK = 1024


@dataclass
class Sphere:
    """A Matérn covariance on a latitude-longitude grid, its Cholesky factor, and draws."""

    lat: np.ndarray
    lon: np.ndarray
    nu: float
    len_scale: float  # degrees of great-circle angle, as GSTools' len_scale
    places: np.ndarray = field(init=False)  # (H*W,) the distinct place of every cell
    cov: np.ndarray = field(init=False, repr=False)
    factor: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        import gstools as gs

        model = gs.Matern(latlon=True, nu=self.nu, len_scale=self.len_scale,
                          geo_scale=gs.DEGREE_SCALE)  # fmt: skip
        lat2, lon2 = np.meshgrid(self.lat.astype(np.float64), self.lon.astype(np.float64),
                                 indexing="ij")  # fmt: skip
        pole = np.abs(lat2) >= 90 - 1e-9
        key = np.where(pole, np.sign(lat2) * 1000, np.arange(lat2.size).reshape(lat2.shape))
        _, first, self.places = np.unique(key.ravel(), return_index=True, return_inverse=True)
        phi, lam = np.deg2rad(lat2.ravel()[first]), np.deg2rad(lon2.ravel()[first])
        unit = np.stack([np.cos(phi) * np.cos(lam), np.cos(phi) * np.sin(lam), np.sin(phi)], 1)
        n = len(unit)
        self.cov = np.empty((n, n))
        for start in range(0, n, BLOCK):
            dots = np.clip(unit[start:start + BLOCK] @ unit.T, -1.0, 1.0)
            self.cov[start:start + BLOCK] = model.cov_yadrenko(np.rad2deg(np.arccos(dots)))
        self.factor = linalg.cholesky(self.cov, lower=True)

    @property
    def shape(self) -> tuple[int, int]:
        return len(self.lat), len(self.lon)

    def sample(self, count: int, seed: int) -> np.ndarray:
        """``count`` fields (count, H, W), float64, from ``numpy.random.default_rng(seed)``."""
        normal = np.random.default_rng(seed).standard_normal((self.factor.shape[0], count))
        draws = self.factor @ normal  # (places, count)
        return draws[self.places].T.reshape(count, *self.shape)

    def optimum(self, values: np.ndarray, observed: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The exact conditional mean and variance of a field (H, W) given its values at
        ``observed`` (bool, H, W): the observed values with variance 0 there."""
        seen = np.zeros(self.cov.shape[0], dtype=bool)
        seen[self.places[observed.ravel()]] = True
        known = np.zeros(self.cov.shape[0])
        known[self.places[observed.ravel()]] = values.ravel()[observed.ravel()]
        o, h = np.flatnonzero(seen), np.flatnonzero(~seen)
        lower = linalg.cholesky(self.cov[np.ix_(o, o)], lower=True)
        whitened = linalg.solve_triangular(lower, self.cov[np.ix_(o, h)], lower=True)
        weights = linalg.solve_triangular(lower, known[o], lower=True)
        mean, variance = known.copy(), np.zeros_like(known)
        mean[h] = whitened.T @ weights
        variance[h] = np.maximum(np.diag(self.cov)[h] - np.sum(whitened**2, axis=0), 0.0)
        mean_grid = mean[self.places].reshape(self.shape)
        mean_grid[observed] = values[observed]
        return mean_grid, variance[self.places].reshape(self.shape)
