import numpy as np
import pytest

from keras_sphere.layers import SphericalPooling
from keras_sphere.sphere import Grid
from keras_sphere.testing import assert_equivariant
from keras_sphere.testing import equivariance_error
from keras_sphere.testing import flip_spatial
from keras_sphere.testing import random_spatial_input
from keras_sphere.testing import roll_spatial
from keras_sphere.testing import run_layer_test

# A fixed linear map whose windows are permuted by the symmetry: only float32
# rounding of the weighted sums remains (measured ~1e-8); layers.md section 10.2.
EXACT = 1e-5


def complex_input(rng, shape):
    data = rng.standard_normal(shape) + 1j * rng.standard_normal(shape)
    return data.astype(np.complex64)


def pooling_reference(field, pool_size):
    """float64 reference: dense (n / s, n) latitude and longitude averaging matrices."""
    n_lat, n_lon = field.shape[1:3]
    weights = Grid(n_lat, n_lon).weights
    latitude = np.zeros((n_lat // pool_size, n_lat))
    for row in range(n_lat // pool_size):
        block = slice(row * pool_size, (row + 1) * pool_size)
        latitude[row, block] = weights[block] / weights[block].sum()
    # Output column K covers longitudes within pi s / n_lon of phi_K = 2 pi K s /
    # n_lon; input column k covers pi / n_lon either side of its own longitude.
    longitude = np.zeros((n_lon // pool_size, n_lon))
    for column in range(n_lon // pool_size):
        for k in range(n_lon):
            offset = (k - column * pool_size + n_lon / 2) % n_lon - n_lon / 2
            overlap = min(offset + 0.5, pool_size / 2) - max(
                offset - 0.5, -pool_size / 2
            )
            longitude[column, k] += max(overlap, 0.0) / pool_size
    return np.einsum(
        "Jj,Kk,bjksc->bJKsc", latitude, longitude, np.asarray(field, np.complex128)
    )


@pytest.mark.parametrize(
    "pool_size, shape, real",
    [
        (2, (2, 16, 16, 2, 3), False),
        (3, (2, 12, 12, 1, 2), True),
        (2, (2, 8, 16, 1, 2), True),
        (4, (3, 16, 8, 3, 1), False),
    ],
)
def test_layer_contract(rng, pool_size, shape, real):
    data = complex_input(rng, shape)
    if real:
        data = data.real.copy()
    batch, n_lat, n_lon, n_spins, channels = shape
    output = run_layer_test(
        SphericalPooling,
        dict(pool_size=pool_size),
        data,
        (batch, n_lat // pool_size, n_lon // pool_size, n_spins, channels),
        expected_num_trainable_weights=0,
        expected_num_non_trainable_weights=0,
        expected_num_params=0,
    )
    assert output.dtype == (np.float32 if real else np.complex64)
    np.testing.assert_allclose(
        output, pooling_reference(data, pool_size), rtol=1e-5, atol=1e-5
    )


@pytest.mark.parametrize("n", [8, 9])
def test_pooling_the_whole_grid_is_the_spherical_mean(rng, n):
    data = complex_input(rng, (2, n, n, 2, 3))
    weights = Grid(n, n).weights[None, :, None, None, None]
    expected = (weights * data).sum(axis=(1, 2)) / (4 * np.pi)
    output = np.asarray(SphericalPooling(pool_size=n)(data))
    assert output.shape == (2, 1, 1, 2, 3)
    np.testing.assert_allclose(output[:, 0, 0], expected, rtol=1e-5, atol=1e-6)


def test_constant_field_is_preserved():
    data = np.full((1, 12, 12, 1, 2), 2.5, np.float32)
    np.testing.assert_allclose(SphericalPooling(pool_size=3)(data), 2.5, rtol=1e-6)


@pytest.mark.parametrize("pool_size", [2, 3])
def test_exact_grid_symmetries(rng, pool_size):
    spins = (0, 1)
    grid = Grid(12, 12)
    layer = SphericalPooling(pool_size=pool_size)
    inputs = random_spatial_input(rng, grid, spins, channels=2)
    assert_equivariant(
        layer,
        inputs,
        [
            lambda x: roll_spatial(x, pool_size),
            lambda x: roll_spatial(x, 3 * pool_size),
            lambda x: flip_spatial(x, spins),
        ],
        [
            lambda y: roll_spatial(y, 1),
            lambda y: roll_spatial(y, 3),
            lambda y: flip_spatial(y, spins),
        ],
        EXACT,
        f"SphericalPooling({pool_size}) rolls by multiples of s, flip",
    )
    # A roll by a fraction of a window has no exact counterpart on the pooled grid.
    error = equivariance_error(layer, inputs, lambda x: roll_spatial(x, 1), lambda y: y)
    assert error > 1e-2


def test_errors():
    with pytest.raises(ValueError, match="not divisible by pool_size=3"):
        SphericalPooling(pool_size=3)(np.zeros((1, 8, 9, 1, 1), np.float32))
    with pytest.raises(ValueError, match="not divisible by pool_size=4"):
        SphericalPooling(pool_size=4)(np.zeros((1, 8, 10, 1, 1), np.float32))
    with pytest.raises(ValueError, match="rank-5"):
        SphericalPooling()(np.zeros((1, 8, 8, 1), np.float32))
    for bad in (0, 2.0, True):
        with pytest.raises(ValueError, match="pool_size must be an integer >= 1"):
            SphericalPooling(pool_size=bad)
