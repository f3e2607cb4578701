import numpy as np
import pytest

from keras_sphere.layers import SphericalDownsampling
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

# Exact up to float32 rounding of two SHTs (measured ~1e-7 to 4e-7 relative, as
# for SphericalUpsampling); layers.md section 10.2.
EXACT = 1e-5


def complex_input(rng, shape):
    data = rng.standard_normal(shape) + 1j * rng.standard_normal(shape)
    return data.astype(np.complex64)


@pytest.mark.parametrize(
    "kwargs, shape, output_shape, real, fit",
    [
        (dict(spins=(0, 1)), (2, 16, 16, 2, 3), (2, 8, 8, 2, 3), False, True),
        (dict(spins=(0,), factor=4), (2, 16, 16, 1, 2), (2, 4, 4, 1, 2), True, False),
    ],
)
def test_layer_contract(rng, kwargs, shape, output_shape, real, fit):
    data = complex_input(rng, shape)
    if real:
        data = data.real.copy()
    output = run_layer_test(
        SphericalDownsampling,
        kwargs,
        data,
        output_shape,
        expected_num_trainable_weights=0,
        expected_num_non_trainable_weights=0,
        expected_num_params=0,
        run_training_check=fit,
    )
    assert output.dtype == (np.float32 if real else np.complex64)


def test_coefficients_are_truncated(rng):
    """The oracle: the SHT of the output is the input's SHT cut at L_out."""
    spins = (0, 1, -2)
    grid_in, grid_out = Grid(16, 16), Grid(8, 8)
    inputs = random_spatial_input(rng, grid_in, spins, channels=2)
    output = np.asarray(SphericalDownsampling(spins=spins)(inputs))
    for index, spin in enumerate(spins):
        field_in = np.moveaxis(inputs[..., index, :], -1, 1)  # [B, C, lat, lon]
        field_out = np.moveaxis(output[..., index, :], -1, 1)
        coeffs_in = np.asarray(sht(field_in, grid_in, spin))  # L = 7
        coeffs_out = np.asarray(sht(field_out, grid_out, spin))  # L = 3
        np.testing.assert_allclose(coeffs_out, coeffs_in[..., :4, 4:11], atol=2e-5)


@pytest.mark.parametrize("factor", [2, 4])
def test_inverts_upsampling(rng, factor):
    spins = (0, 1)
    inputs = random_spatial_input(rng, Grid(8, 8), spins, channels=2)
    up = SphericalUpsampling(spins=spins, factor=factor)(inputs)
    back = np.asarray(SphericalDownsampling(spins=spins, factor=factor)(up))
    scale = np.abs(inputs).max()
    np.testing.assert_allclose(back, inputs, atol=EXACT * scale)


def test_real_and_complex_spin_zero_input_agree(rng):
    inputs = random_spatial_input(rng, Grid(16, 16), (0,), real=True)
    layer = SphericalDownsampling(spins=(0,))
    real = layer(inputs)
    assert real.dtype == np.float32
    np.testing.assert_allclose(real, layer(inputs.astype(np.complex64)), atol=2e-6)


def test_exact_so3_equivariance(rng):
    spins = (0, 1, -2)
    grid, grid_out = Grid(16, 16), Grid(8, 8)
    layer = SphericalDownsampling(spins=spins)
    inputs = random_spatial_input(rng, grid, spins, channels=2)
    rotations = [random_rotation(rng) for _ in range(5)]
    assert_equivariant(
        layer,
        inputs,
        [lambda x, r=r: rotate_spatial(x, grid, spins, r) for r in rotations],
        [lambda y, r=r: rotate_spatial(y, grid_out, spins, r) for r in rotations],
        EXACT,
        "SphericalDownsampling SO(3)",
    )


def test_exact_grid_symmetries(rng):
    spins = (0, 1)
    layer = SphericalDownsampling(spins=spins, factor=2)
    inputs = random_spatial_input(rng, Grid(16, 16), spins, channels=2)
    assert_equivariant(
        layer,
        inputs,
        [lambda x: roll_spatial(x, 2), lambda x: flip_spatial(x, spins)],
        [lambda y: roll_spatial(y, 1), lambda y: flip_spatial(y, spins)],
        EXACT,
        "SphericalDownsampling grid symmetries",
    )


def test_errors():
    with pytest.raises(ValueError, match="factor must be an integer >= 1"):
        SphericalDownsampling(spins=(0,), factor=0)
    with pytest.raises(ValueError, match="must divide L \\+ 1 = 8"):
        SphericalDownsampling(spins=(0,), factor=3)(np.zeros((1, 16, 16, 1, 1)))
    with pytest.raises(ValueError, match="square model grid"):
        SphericalDownsampling(spins=(0,))(np.zeros((1, 8, 16, 1, 1), np.float32))
    with pytest.raises(ValueError, match="below \\|spin\\| = 2"):
        SphericalDownsampling(spins=(0, 2), factor=4)(
            np.zeros((1, 8, 8, 2, 1), np.complex64)
        )
