"""Gaussian grids: Gauss-Legendre latitudes, no poles (spectral models' nodal grids).

Row j sits at the colatitude theta_j whose cosine x_j is the j-th root of the Legendre
polynomial P_n_lat, ordered north first (x_0 closest to +1); no row lies on a pole.
Column k is longitude phi_k = 2 pi k / n_lon, from 0 (as on ``grid.Grid``). The rows
carry the Gauss-Legendre weights w_j (``numpy.polynomial.legendre.leggauss``); a sample
in row j has quadrature weight q_j = (2 pi / n_lon) w_j, and all samples together
sum to 4 pi.

Largest exact bandlimit. At fixed order m the analysis integrand of degrees ell, ell'
is sY_ell,m(theta) sY_ell',m(theta); with x = cos(theta) it is a polynomial of degree
ell + ell' in x for every spin (d^ell_{m,m'} is (1 - x)^{|m - m'| / 2}
(1 + x)^{|m + m'| / 2} times a Jacobi polynomial of degree ell - max(|m|, |m'|), and
the powers add up to ell + ell'). Gauss-Legendre quadrature on n_lat nodes is exact
for degree 2 n_lat - 1, so 2L <= 2 n_lat - 1, i.e. L <= n_lat - 1; the longitude DFT
needs n_lon >= 2L + 1 as on every grid. Hence

    L_max = min(n_lat - 1, floor((n_lon - 1) / 2)).

A T-L spectral model (dinosaur, ECHAM) uses n_lat >= (3L + 1) / 2 for its quadratic
terms; that grid holds more than its truncation, so resampling it loses nothing.
"""

from __future__ import annotations

import dataclasses
import functools

import numpy as np

__all__ = ["GaussianGrid"]


@dataclasses.dataclass(frozen=True)
class GaussianGrid:
    """A Gaussian (n_lat, n_lon) grid: Gauss-Legendre latitudes, north first, no poles.

    Args:
        n_lat: number of latitude rows (Gauss-Legendre nodes), >= 1.
        n_lon: number of longitude columns, >= 1; column k at 360 k / n_lon degrees
            east.

    Example:
        >>> grid = GaussianGrid(96, 192)
        >>> grid.shape, grid.max_bandlimit
        ((96, 192), 95)
        >>> round(float(grid.latitudes[0]), 3)
        88.572
    """

    n_lat: int
    n_lon: int

    def __post_init__(self):
        for name in ("n_lat", "n_lon"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | np.integer):
                raise TypeError(
                    f"GaussianGrid.{name} must be an int. Received: {name}={value!r}"
                )
        if self.n_lat < 1 or self.n_lon < 1:
            raise ValueError(
                "A Gaussian grid needs n_lat >= 1 rows and n_lon >= 1 columns. "
                f"Received: n_lat={self.n_lat}, n_lon={self.n_lon}"
            )
        object.__setattr__(self, "n_lat", int(self.n_lat))
        object.__setattr__(self, "n_lon", int(self.n_lon))

    @property
    def shape(self) -> tuple[int, int]:
        """(n_lat, n_lon)."""
        return (self.n_lat, self.n_lon)

    @property
    def max_bandlimit(self) -> int:
        """Largest L for which analysis of an L-band-limited field is exact."""
        return min(self.n_lat - 1, (self.n_lon - 1) // 2)

    @property
    def colatitudes(self) -> np.ndarray:
        """Colatitudes in radians, float64, shape (n_lat,), increasing (north first)."""
        return _nodes(self.n_lat)[0]

    @property
    def theta(self) -> np.ndarray:
        """Same as `colatitudes` (the name ``grid.Grid`` uses)."""
        return self.colatitudes

    @property
    def phi(self) -> np.ndarray:
        """Longitudes in radians, float64, shape (n_lon,), starting at 0."""
        return 2.0 * np.pi * np.arange(self.n_lon) / self.n_lon

    @property
    def latitudes(self) -> np.ndarray:
        """Latitudes in degrees north, float64, shape (n_lat,), decreasing."""
        return _nodes(self.n_lat)[1]

    @property
    def longitudes(self) -> np.ndarray:
        """Longitudes in degrees east, float64, shape (n_lon,), 0 to 360 - 360/n_lon."""
        return np.degrees(self.phi)

    @property
    def weights(self) -> np.ndarray:
        """Quadrature weight of each row's samples, q_j = (2 pi / n_lon) w_j.

        float64, shape (n_lat,), in steradians; summed over all n_lat x n_lon samples
        they give 4 pi (as ``Grid.weights``).
        """
        return 2.0 * np.pi / self.n_lon * _nodes(self.n_lat)[2]

    def check_field_shape(self, shape: tuple[int, ...], what: str = "field") -> None:
        """Raise ValueError unless the last two axes of `shape` are (n_lat, n_lon)."""
        if len(shape) < 2 or tuple(shape[-2:]) != self.shape:
            raise ValueError(
                f"The {what} must end with the axes (n_lat, n_lon) = {self.shape} of "
                f"{self}. Received shape {tuple(shape)}."
            )


@functools.lru_cache(maxsize=32)
def _nodes(n_lat: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Colatitudes (radians), latitudes (degrees) and Gauss-Legendre weights.

    Each float64, shape (n_lat,), north first, read-only.
    """
    x, w = np.polynomial.legendre.leggauss(n_lat)
    x, w = x[::-1].copy(), w[::-1].copy()  # leggauss is ascending in x = cos(theta)
    # arcsin is accurate near the equator, where most rows are; the nodes themselves
    # carry an error of about 1e-16 in x.
    latitudes = np.degrees(np.arcsin(x))
    colatitudes = np.pi / 2 - np.arcsin(x)
    for array in (colatitudes, latitudes, w):
        array.setflags(write=False)
    return colatitudes, latitudes, w
