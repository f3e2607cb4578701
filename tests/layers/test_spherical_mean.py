import numpy as np
import pytest

from keras_sphere.layers import SphericalMean
from keras_sphere.layers.spherical_mean import spherical_mean
from keras_sphere.sphere import Grid
from keras_sphere.sphere import sht
from keras_sphere.testing import assert_equivariant
from keras_sphere.testing import flip_spatial
from keras_sphere.testing import random_rotation
from keras_sphere.testing import random_spatial_input
from keras_sphere.testing import roll_spatial
from keras_sphere.testing import rotate_spatial
from keras_sphere.testing import run_layer_test

# Spin-0 means of band-limited fields are a_00 / sqrt(4 pi), exactly invariant up to
# float32 rounding of the rotation (measured ~1e-7); layers.md section 10.2.
EXACT = 1e-5


def complex_input(rng, shape):
    data = rng.standard_normal(shape) + 1j * rng.standard_normal(shape)
    return data.astype(np.complex64)


@pytest.mark.parametrize(
    "shape, real, fit",
    [((2, 8, 8, 1, 3), True, True), ((2, 6, 10, 2, 3), False, False)],
)
def test_layer_contract(rng, shape, real, fit):
    data = complex_input(rng, shape)
    if real:
        data = data.real.copy()
    output = run_layer_test(
        SphericalMean,
        {},
        data,
        (shape[0], shape[3], shape[4]),
        expected_num_trainable_weights=0,
        expected_num_non_trainable_weights=0,
        expected_num_params=0,
        run_training_check=fit,
    )
    assert output.dtype == (np.float32 if real else np.complex64)
    weights = Grid(*shape[1:3]).weights[None, :, None, None, None]
    expected = (weights * data).sum(axis=(1, 2)) / (4 * np.pi)
    np.testing.assert_allclose(output, expected, rtol=1e-5, atol=1e-6)


def test_mixed_precision_output_dtype(rng):
    data = rng.standard_normal((2, 8, 8, 1, 2)).astype(np.float32)
    output = SphericalMean(dtype="mixed_bfloat16")(data)
    assert output.dtype == "bfloat16"
    assert SphericalMean(dtype="mixed_bfloat16")(data.astype(np.complex64)).dtype == (
        np.complex64
    )


def test_constant_and_a00(rng):
    grid = Grid(10, 12)
    np.testing.assert_allclose(
        spherical_mean(np.full((1, 10, 12, 1, 1), 3.0, np.float32), grid), 3.0, 1e-6
    )
    # A field band-limited at the grid's limit: mean = a_00 / sqrt(4 pi) exactly.
    inputs = random_spatial_input(rng, grid, (0,), channels=2)
    coeffs = np.asarray(sht(np.moveaxis(inputs[..., 0, :], -1, 1), grid, 0))
    a00 = coeffs[..., 0, grid.max_bandlimit]  # (ell, m) = (0, 0)
    np.testing.assert_allclose(
        SphericalMean()(inputs)[:, 0], a00 / np.sqrt(4 * np.pi), rtol=1e-5, atol=1e-6
    )


def test_spin_zero_mean_is_rotation_invariant(rng):
    grid = Grid(8, 8)
    inputs = random_spatial_input(rng, grid, (0,), channels=3)
    rotations = [random_rotation(rng) for _ in range(5)]
    assert_equivariant(
        SphericalMean(),
        inputs,
        [lambda x, r=r: rotate_spatial(x, grid, (0,), r) for r in rotations],
        [lambda y: y] * len(rotations),
        EXACT,
        "SphericalMean spin 0 SO(3) invariance",
    )


def test_exact_grid_symmetries(rng):
    spins = (0, 1, -2)
    inputs = random_spatial_input(rng, Grid(8, 8), spins, channels=2)
    signs = np.array([(-1.0) ** spin for spin in spins])[None, :, None]
    assert_equivariant(
        SphericalMean(),
        inputs,
        [
            lambda x: roll_spatial(x, 3),
            lambda x: roll_spatial(x, 4),
            lambda x: flip_spatial(x, spins),
        ],
        # The flip reverses the rows and longitudes (the weights are symmetric) and
        # multiplies spin s by (-1)^s.
        [lambda y: y, lambda y: y, lambda y: y * signs],
        EXACT,
        "SphericalMean grid symmetries",
    )


def test_mask_multiplies_rows(rng):
    import keras

    data = complex_input(rng, (3, 8, 8, 2, 2))
    mask = np.array([1.0, 0.0, 0.5], np.float32)
    layer = SphericalMean()
    expected = np.asarray(layer(data)) * mask[:, None, None]
    np.testing.assert_allclose(layer(data, mask=mask), expected, rtol=1e-6)
    inputs = keras.Input((8, 8, 2, 2), dtype="complex64")
    mask_input = keras.Input((), dtype="float32")
    model = keras.Model([inputs, mask_input], SphericalMean()(inputs, mask=mask_input))
    np.testing.assert_allclose(model.predict([data, mask], verbose=0), expected, 1e-6)


def test_errors():
    with pytest.raises(ValueError, match="rank-5"):
        SphericalMean()(np.zeros((1, 8, 8, 1), np.float32))
    with pytest.raises(
        ValueError, match="mask must have shape \\(batch,\\) = \\(2,\\)"
    ):
        SphericalMean()(np.zeros((2, 8, 8, 1, 1), np.float32), mask=np.ones((2, 1)))
