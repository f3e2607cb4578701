"""Equiangular grids with both poles: where the samples are.

Row j is colatitude theta_j = pi * j / (n_lat - 1) (row 0 is the north pole, the last
row the south pole) and column k is longitude phi_k = 2 pi k / n_lon (phi = 0 included).
This is the Huffenberger-Wandelt / spinsfast sampling (not Driscoll-Healy, not a
Gaussian grid).

Largest exact bandlimit. A field band-limited at L has longitude modes |m| <= L, which
an
n_lon-point DFT separates without aliasing iff n_lon >= 2L + 1. At fixed m, the column
F_m(theta) = sum_ell a_ell,m sY_ell,m(theta, 0) extends to the whole meridian circle
with
F_m(2 pi - theta) = (-1)^(m + s) F_m(theta) and is then a trigonometric polynomial of
degree <= L; the grid samples that circle at 2 (n_lat - 1) equispaced points, which
determine such a polynomial iff 2 (n_lat - 1) >= 2L + 1, i.e. L <= n_lat - 2. Hence

    L_max = min(n_lat - 2, floor((n_lon - 1) / 2)).

Plain per-row quadrature is exact only up to floor((n_lat - 1) / 2) in latitude; above
that the transforms interpolate each extended column in theta first (see
``sht_tables.py``).
"""

from __future__ import annotations

import dataclasses
import functools

import numpy as np

from keras_sphere.sphere.quadrature import clenshaw_curtis_weights

__all__ = ["Grid"]


@dataclasses.dataclass(frozen=True)
class Grid:
    """An equiangular (n_lat, n_lon) grid with samples at both poles.

    Args:
        n_lat: number of colatitude rows, both poles included (>= 3).
        n_lon: number of longitude columns (>= 1).

    Example:
        >>> grid = Grid.for_bandlimit(15)
        >>> grid.n_lat, grid.n_lon, grid.max_bandlimit
        (32, 32, 15)
        >>> Grid(721, 1440).max_bandlimit
        719
    """

    n_lat: int
    n_lon: int

    def __post_init__(self):
        for name in ("n_lat", "n_lon"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | np.integer):
                raise TypeError(
                    f"Grid.{name} must be an int. Received: {name}={value!r}"
                )
        if self.n_lat < 3 or self.n_lon < 1:
            raise ValueError(
                "A grid needs n_lat >= 3 rows (both poles and at least one row between "
                f"them) and n_lon >= 1 columns. Received: n_lat={self.n_lat}, "
                f"n_lon={self.n_lon}"
            )
        object.__setattr__(self, "n_lat", int(self.n_lat))
        object.__setattr__(self, "n_lon", int(self.n_lon))

    @classmethod
    def for_bandlimit(cls, ell_max: int) -> Grid:
        """The square model grid n x n with n = 2 (ell_max + 1)."""
        if ell_max < 0:
            raise ValueError(f"ell_max must be >= 0. Received: ell_max={ell_max}")
        n = 2 * (int(ell_max) + 1)
        return cls(n, n)

    @property
    def shape(self) -> tuple[int, int]:
        """(n_lat, n_lon)."""
        return (self.n_lat, self.n_lon)

    @property
    def max_bandlimit(self) -> int:
        """Largest L for which analysis of an L-band-limited field is exact."""
        return min(self.n_lat - 2, (self.n_lon - 1) // 2)

    @property
    def model_bandlimit(self) -> int:
        """L of a square model grid n x n with n = 2 (L + 1); error for other grids."""
        if self.n_lat != self.n_lon or self.n_lat % 2:
            raise ValueError(
                "Model grids are square with an even size n = 2 (L + 1). Received a "
                f"{self.n_lat} x {self.n_lon} grid. Use Grid.for_bandlimit(L), or pass "
                "the bandlimit explicitly for native (rectangular or odd) grids."
            )
        return self.n_lat // 2 - 1

    @property
    def plain_quadrature_bandlimit(self) -> int:
        """Largest L for which plain per-row quadrature is exact."""
        return min((self.n_lat - 1) // 2, (self.n_lon - 1) // 2)

    @property
    def theta(self) -> np.ndarray:
        """Colatitudes in radians, float64, shape (n_lat,), 0 (north) to pi (south)."""
        return np.pi * np.arange(self.n_lat) / (self.n_lat - 1)

    @property
    def phi(self) -> np.ndarray:
        """Longitudes in radians, float64, shape (n_lon,), starting at 0."""
        return 2.0 * np.pi * np.arange(self.n_lon) / self.n_lon

    @property
    def lat_deg(self) -> np.ndarray:
        """Latitudes in degrees, float64, shape (n_lat,), 90 (row 0) to -90."""
        return 90.0 - np.degrees(self.theta)

    @property
    def lon_deg(self) -> np.ndarray:
        """Longitudes in degrees east, float64, shape (n_lon,), 0 to 360 - 360/n_lon."""
        return np.degrees(self.phi)

    @property
    def latitudes(self) -> np.ndarray:
        """Same as `lat_deg`: degrees north, shape (n_lat,) (as ``GaussianGrid``)."""
        return self.lat_deg

    @property
    def longitudes(self) -> np.ndarray:
        """Same as `lon_deg`: degrees east, shape (n_lon,)."""
        return self.lon_deg

    @property
    def weights(self) -> np.ndarray:
        """Quadrature weight of each row's samples, q_j = (2 pi / n_lon) W_j.

        float64, shape (n_lat,) in steradians; summed over all n_lat x n_lon
        samples they give 4 pi. ``(grid.weights[:, None] * f).sum() / (4 pi)`` is
        the spherical mean of a spin-0 field sampled on the grid.
        """
        return _row_weights(self.n_lat, self.n_lon)

    def check_field_shape(self, shape: tuple[int, ...], what: str = "field") -> None:
        """Raise ValueError unless the last two axes of `shape` are (n_lat, n_lon)."""
        if len(shape) < 2 or tuple(shape[-2:]) != self.shape:
            raise ValueError(
                f"The {what} must end with the grid axes (n_lat, n_lon) = "
                f"{self.shape}. Received shape {tuple(shape)}. Sample it on this grid "
                "or pass the Grid it was sampled on; fields are never resampled "
                "silently."
            )

    def check_bandlimit(self, ell_max: int) -> None:
        """Raise ValueError if `ell_max` is above what this grid represents exactly."""
        if ell_max < 0:
            raise ValueError(f"lmax must be >= 0. Received: lmax={ell_max}")
        if ell_max > self.max_bandlimit:
            n_default = 2 * ell_max + 2
            raise ValueError(
                f"lmax={ell_max} is too large for a {self.n_lat} x {self.n_lon} grid, "
                f"which holds degrees up to {self.max_bandlimit}. Pass lmax <= "
                f"{self.max_bandlimit}, or sample on a grid with n_lat >= "
                f"{ell_max + 2} and n_lon >= {2 * ell_max + 1} (the default grid for "
                f"lmax={ell_max} is Grid.for_bandlimit({ell_max}), {n_default} x "
                f"{n_default})."
            )


@functools.lru_cache(maxsize=64)
def _row_weights(n_lat: int, n_lon: int) -> np.ndarray:
    weights = 2.0 * np.pi / n_lon * clenshaw_curtis_weights(n_lat)
    weights.setflags(write=False)
    return weights
