"""Dense SHT operators: the whole transform of a small grid as one matrix per spin.

Inside spherical CNNs the transforms are small (L = 3 to 15 on 2 (L + 1) square grids)
and batched over hundreds of thousands of maps (batch x channels). There the FFT +
per-order Legendre transform of a plan (``sht_plan.py``, ``sht_kernels.py``) is bound
by its layout passes, not by arithmetic: at L = 7 on 16 x 16 it moves every map through
a dozen transposes, stacks and gathers. One complex matrix product per spin, with the
channels as the product's free dimension, reads and writes each map once. It costs
8 n_lat n_lon (L + 1)^2 flops per map against the plan's O(n_lat n_lon L), so it wins
only while n_lat n_lon (L + 1)^2 is small (``DENSE_MAX_SIZE`` in
``layers/transform_state.py`` records where, as measured in
``benchmarks/train_step.py``).

Coefficients are packed: index p = ell^2 + ell + m holds (ell, m), |m| <= ell <= L, so
the matrices have (L + 1)^2 rows instead of the padded layout's (L + 1)(2L + 1).
Both matrices equal the linear maps of ``sht`` / ``isht`` (same quadrature, same
conventions; tested against the plan), built in float64 from the harmonics of
``wigner.py``.
"""

from __future__ import annotations

import numpy as np

from keras_sphere.sphere.grid import Grid
from keras_sphere.sphere.sht_tables import _harmonic_rows
from keras_sphere.sphere.wigner import spin_harmonics

__all__ = ["packed_degrees_orders", "sht_matrices"]


def packed_degrees_orders(ell_max: int) -> tuple[np.ndarray, np.ndarray]:
    """Degree and order of each packed index p = ell^2 + ell + m.

    Returns:
        (ell, m): int arrays of shape ((ell_max + 1)^2,).
    """
    ell = np.repeat(np.arange(ell_max + 1), 2 * np.arange(ell_max + 1) + 1)
    m = np.arange(ell.size) - ell**2 - ell
    return ell, m


def sht_matrices(grid: Grid, ell_max: int, spin: int) -> tuple[np.ndarray, np.ndarray]:
    """The forward and inverse SHT of `grid` as dense complex matrices.

    Args:
        grid: the `Grid`; samples are flattened row-major, q = j n_lon + k.
        ell_max: inclusive maximum degree (within the grid's limit).
        spin: spin weight.

    Returns:
        (forward, inverse), complex128: forward (P, n_lat n_lon) maps samples to packed
        coefficients, a = forward @ f; inverse (n_lat n_lon, P) maps them back,
        f = inverse @ a; P = (ell_max + 1)^2. Rows (columns) of degrees ell < |spin|
        are zero, as the transforms return (ignore) those coefficients.
    """
    grid.check_bandlimit(ell_max)
    ell, m = packed_degrees_orders(ell_max)
    orders = np.arange(-ell_max, ell_max + 1)
    synthesis = spin_harmonics(ell_max, orders, spin, grid.theta)  # [ell, m, j]
    # The quadrature of the plans: plain row weights where they are exact, else the
    # exact analysis table of sht_tables.py (which excludes the longitude factor
    # 2 pi / n_lon).
    if 2 * ell_max + 1 > grid.n_lat:
        analysis = _harmonic_rows(
            grid.n_lat, ell_max, spin, orders, grid.n_lat, exact=True
        ) * (2 * np.pi / grid.n_lon)
    else:
        analysis = synthesis * grid.weights
    phase = np.exp(1j * np.outer(m, grid.phi))  # [p, k]
    index = m + ell_max
    forward = analysis[ell, index][:, :, None] * np.conj(phase)[:, None, :]
    inverse = synthesis[ell, index][:, :, None] * phase[:, None, :]
    n_samples = grid.n_lat * grid.n_lon
    return forward.reshape(-1, n_samples), inverse.reshape(-1, n_samples).T
