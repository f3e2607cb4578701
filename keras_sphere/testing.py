"""Test utilities: a plain float64 reference transform and an equivariance check.

The reference builds the dense synthesis matrix of every (ell, m) coefficient at every
grid point from `spin_harmonics` and inverts it by least squares. It shares nothing with
the fast transforms of ``sphere/sht.py`` beyond the harmonics themselves (which are
tested against scipy and closed forms on their own), so it is an independent check of
layouts, symmetries, FFT conventions and the exact analysis on latitude-limited grids.
Its cost is O((L + 1)^4 n_lat n_lon): use it at small L only.
"""

from __future__ import annotations

import numpy as np

from keras_sphere.sphere.grid import Grid
from keras_sphere.sphere.wigner import spin_harmonics

__all__ = ["reference_isht", "reference_sht", "synthesis_matrix", "random_coefficients"]


def synthesis_matrix(grid: Grid, ell_max: int, spin: int = 0) -> np.ndarray:
    """Dense synthesis matrix in float64.

    Returns:
        complex128, shape (n_lat * n_lon, (ell_max + 1) * (2 ell_max + 1)): column
        [ell, ell_max + m] (flattened) holds sY_ell,m at every grid point (row-major),
        zero
        for coefficients that do not exist.
    """
    orders = np.arange(-ell_max, ell_max + 1)
    values = spin_harmonics(ell_max, orders, spin, grid.theta)  # [ell, m, j]
    phase = np.exp(1j * np.outer(orders, grid.phi))  # [m, k]
    matrix = values[:, :, :, None] * phase[None, :, None, :]  # [ell, m, j, k]
    return matrix.reshape(len(values) * len(orders), -1).T


def reference_isht(coeffs: np.ndarray, grid: Grid, spin: int = 0) -> np.ndarray:
    """Synthesis by the dense matrix: (..., L + 1, 2L + 1) -> (..., n_lat, n_lon)."""
    ell_max = coeffs.shape[-2] - 1
    matrix = synthesis_matrix(grid, ell_max, spin)
    flat = coeffs.reshape(*coeffs.shape[:-2], -1)
    return (flat @ matrix.T).reshape(*coeffs.shape[:-2], grid.n_lat, grid.n_lon)


def reference_sht(field: np.ndarray, grid: Grid, ell_max: int, spin: int = 0):
    """Least-squares analysis of one field by the dense matrix (exact if band-limited).

    Returns:
        complex128, shape (ell_max + 1, 2 ell_max + 1), and the rank of the synthesis
        matrix restricted to existing coefficients (full rank = number of coefficients
        means analysis at `ell_max` is possible on this grid at all).
    """
    matrix = synthesis_matrix(grid, ell_max, spin)
    exists = np.abs(matrix).sum(axis=0) > 0
    solution, _, rank, _ = np.linalg.lstsq(matrix[:, exists], field.reshape(-1), None)
    coeffs = np.zeros(matrix.shape[1], complex)
    coeffs[exists] = solution
    return coeffs.reshape(ell_max + 1, 2 * ell_max + 1), int(rank), int(exists.sum())


def random_coefficients(
    rng: np.random.Generator,
    ell_max: int,
    spin: int = 0,
    batch_shape: tuple[int, ...] = (),
    real_field: bool = False,
) -> np.ndarray:
    """Random band-limited coefficients in the padded layout, complex128.

    Entries are standard complex normal where (ell, m) exists for `spin`, else zero.
    With `real_field` (spin 0 only) they satisfy a_ell,-m = (-1)^m conj(a_ell,m).
    """
    shape = (*batch_shape, ell_max + 1, 2 * ell_max + 1)
    coeffs = rng.standard_normal(shape) + 1j * rng.standard_normal(shape)
    ell = np.arange(ell_max + 1)[:, None]
    m = np.arange(-ell_max, ell_max + 1)[None, :]
    coeffs = coeffs * ((np.abs(m) <= ell) & (ell >= abs(spin)))
    if real_field:
        if spin != 0:
            raise ValueError(f"real_field needs spin 0. Received: spin={spin}")
        coeffs[..., ell_max] = coeffs[..., ell_max].real
        for order in range(1, ell_max + 1):
            coeffs[..., ell_max - order] = (-1) ** order * np.conj(
                coeffs[..., ell_max + order]
            )
    return coeffs
