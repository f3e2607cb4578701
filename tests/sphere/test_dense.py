"""Dense SHT matrices against the FFT + Legendre plan and their own algebra."""

import numpy as np
import pytest

from keras_sphere.sphere import Grid
from keras_sphere.sphere import isht
from keras_sphere.sphere import sht
from keras_sphere.sphere.dense import packed_degrees_orders
from keras_sphere.sphere.dense import sht_matrices

# (n_lat, n_lon, L): square model grids, an odd grid, and a latitude-limited grid where
# the plan uses its exact analysis table (2L + 1 > n_lat).
GRIDS = [(8, 8, 3), (16, 16, 7), (9, 15, 7), (10, 16, 7), (32, 32, 7)]


def test_packed_order():
    ell, m = packed_degrees_orders(3)
    assert ell.size == 16
    assert list(zip(ell[:5], m[:5], strict=True)) == [
        (0, 0),
        (1, -1),
        (1, 0),
        (1, 1),
        (2, -2),
    ]
    np.testing.assert_array_equal(ell**2 + ell + m, np.arange(16))


@pytest.mark.parametrize("n_lat, n_lon, ell_max", GRIDS)
@pytest.mark.parametrize("spin", [0, 1, -1, 2])
def test_matrices_equal_the_plan_transforms(rng, n_lat, n_lon, ell_max, spin):
    # Oracle: the float32 plan (FFT + Legendre tables, tested in test_sht.py against
    # closed forms). Bound 1e-6 relative: float32 transforms of O(1) fields agree to
    # ~2e-7 here, the float64 matrices are exact to 1e-15.
    grid = Grid(n_lat, n_lon)
    forward, inverse = sht_matrices(grid, ell_max, spin)
    ell, m = packed_degrees_orders(ell_max)
    field = rng.normal(size=(3, n_lat, n_lon)) + 1j * rng.normal(size=(3, n_lat, n_lon))
    packed = field.reshape(3, -1) @ forward.T
    planned = np.asarray(sht(field.astype(np.complex64), grid, spin, ell_max))
    scale = np.abs(packed).max()
    assert np.abs(planned[:, ell, m + ell_max] - packed).max() < 1e-6 * scale
    padded = np.zeros((3, ell_max + 1, 2 * ell_max + 1), complex)
    padded[:, ell, m + ell_max] = packed
    synthesised = (packed @ inverse.T).reshape(3, n_lat, n_lon)
    planned = np.asarray(isht(padded.astype(np.complex64), grid, spin))
    assert np.abs(planned - synthesised).max() < 1e-6 * np.abs(synthesised).max()


@pytest.mark.parametrize("n_lat, n_lon, ell_max", GRIDS)
@pytest.mark.parametrize("spin", [0, 1, -2])
def test_analysis_inverts_synthesis(n_lat, n_lon, ell_max, spin):
    # Exact quadrature: forward @ inverse is the identity on the coefficients of a
    # spin-s field (ell >= |s|) and zero elsewhere, to float64 round-off.
    forward, inverse = sht_matrices(Grid(n_lat, n_lon), ell_max, spin)
    ell, _ = packed_degrees_orders(ell_max)
    expected = np.diag((ell >= abs(spin)).astype(float))
    np.testing.assert_allclose(forward @ inverse, expected, atol=1e-12)


def test_bandlimit_beyond_the_grid_is_refused():
    with pytest.raises(ValueError):
        sht_matrices(Grid(8, 8), 7, 0)
