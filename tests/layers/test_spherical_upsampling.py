import numpy as np
import pytest

from keras_sphere.layers import SphericalUpsampling
from keras_sphere.sphere import Grid
from keras_sphere.sphere import sht
from keras_sphere.testing import assert_equivariant
from keras_sphere.testing import flip_spatial
from keras_sphere.testing import random_rotation
from keras_sphere.testing import random_spatial_input
from keras_sphere.testing import roll_spatial
from keras_sphere.testing import rotate_spatial
from keras_sphere.testing import run_layer_test

# Exact up to float32 rounding of two SHTs (measured ~1e-7 to 4e-7 relative);
# layers.md section 10.2.
EXACT = 1e-5


def complex_input(rng, shape):
    data = rng.standard_normal(shape) + 1j * rng.standard_normal(shape)
    return data.astype(np.complex64)


# One jitted fit step (tables threaded as layer state) is enough for this weightless
# layer; the other configurations skip it to keep the file fast.
@pytest.mark.parametrize(
    "kwargs, shape, output_shape, real, fit",
    [
        (dict(spins=(0, 1)), (2, 8, 8, 2, 3), (2, 16, 16, 2, 3), False, True),
        (dict(spins=(0,), factor=3), (2, 8, 8, 1, 2), (2, 24, 24, 1, 2), True, False),
        # 6 x 10 holds L = 4: L_out = 9 on the 20 x 20 model grid.
        (dict(spins=(-1, 2)), (2, 6, 10, 2, 1), (2, 20, 20, 2, 1), False, False),
    ],
)
def test_layer_contract(rng, kwargs, shape, output_shape, real, fit):
    data = complex_input(rng, shape)
    if real:
        data = data.real.copy()
    output = run_layer_test(
        SphericalUpsampling,
        kwargs,
        data,
        output_shape,
        expected_num_trainable_weights=0,
        expected_num_non_trainable_weights=0,
        expected_num_params=0,
        run_training_check=fit,
    )
    assert output.dtype == (np.float32 if real else np.complex64)


def test_coefficients_are_zero_padded(rng):
    spins = (0, 1, -2)
    grid_in, grid_out = Grid(8, 8), Grid(16, 16)
    inputs = random_spatial_input(rng, grid_in, spins, channels=2)
    output = np.asarray(SphericalUpsampling(spins=spins)(inputs))
    for index, spin in enumerate(spins):
        field_in = np.moveaxis(inputs[..., index, :], -1, 1)  # [B, C, lat, lon]
        field_out = np.moveaxis(output[..., index, :], -1, 1)
        coeffs_in = np.asarray(sht(field_in, grid_in, spin))  # L = 3
        coeffs_out = np.asarray(sht(field_out, grid_out, spin))  # L = 7
        np.testing.assert_allclose(coeffs_out[..., :4, 4:11], coeffs_in, atol=2e-5)
        np.testing.assert_allclose(coeffs_out[..., 4:, :], 0, atol=2e-5)
        np.testing.assert_allclose(coeffs_out[..., :, :4], 0, atol=2e-5)


def test_real_and_complex_spin_zero_input_agree(rng):
    inputs = random_spatial_input(rng, Grid(8, 8), (0,), real=True)
    layer = SphericalUpsampling(spins=(0,))
    real = layer(inputs)
    assert real.dtype == np.float32
    np.testing.assert_allclose(real, layer(inputs.astype(np.complex64)), atol=2e-6)


@pytest.mark.parametrize("factor", [2, 3])
def test_exact_so3_equivariance(rng, factor):
    spins = (0, 1, -2)
    grid = Grid(8, 8)
    grid_out = Grid(8 * factor, 8 * factor)
    layer = SphericalUpsampling(spins=spins, factor=factor)
    inputs = random_spatial_input(rng, grid, spins, channels=2)
    rotations = [random_rotation(rng) for _ in range(5)]
    assert_equivariant(
        layer,
        inputs,
        [lambda x, r=r: rotate_spatial(x, grid, spins, r) for r in rotations],
        [lambda y, r=r: rotate_spatial(y, grid_out, spins, r) for r in rotations],
        EXACT,
        f"SphericalUpsampling(factor={factor}) SO(3)",
    )


def test_exact_grid_symmetries(rng):
    spins = (0, 1)
    layer = SphericalUpsampling(spins=spins, factor=2)
    inputs = random_spatial_input(rng, Grid(8, 8), spins, channels=2)
    assert_equivariant(
        layer,
        inputs,
        [
            lambda x: roll_spatial(x, 1),
            lambda x: roll_spatial(x, 3),
            lambda x: flip_spatial(x, spins),
        ],
        [
            lambda y: roll_spatial(y, 2),
            lambda y: roll_spatial(y, 6),
            lambda y: flip_spatial(y, spins),
        ],
        EXACT,
        "SphericalUpsampling grid symmetries",
    )


def test_errors():
    with pytest.raises(ValueError, match="factor must be an integer >= 1"):
        SphericalUpsampling(spins=(0,), factor=0)
    with pytest.raises(ValueError, match="factor must be an integer >= 1"):
        SphericalUpsampling(spins=(0,), factor=1.5)
    with pytest.raises(ValueError, match="rank-5"):
        SphericalUpsampling(spins=(0,))(np.zeros((1, 8, 8, 1), np.float32))
    with pytest.raises(
        ValueError, match="spin axis has 1 entries but spins=\\(0, 1\\)"
    ):
        SphericalUpsampling(spins=(0, 1))(np.zeros((1, 8, 8, 1, 1), np.complex64))
    with pytest.raises(ValueError, match="below \\|spin\\| = 2"):
        SphericalUpsampling(spins=(0, 2))(np.zeros((1, 4, 4, 2, 1), np.complex64))
