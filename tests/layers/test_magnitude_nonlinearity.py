import numpy as np
import pytest

from keras_sphere.layers import MagnitudeNonlinearity
from keras_sphere.sphere import Grid
from keras_sphere.testing import assert_equivariant
from keras_sphere.testing import band_limited_equivariance
from keras_sphere.testing import flip_spatial
from keras_sphere.testing import random_spatial_input
from keras_sphere.testing import randomize_weights
from keras_sphere.testing import roll_spatial
from keras_sphere.testing import run_layer_test

# Pointwise layer: grid symmetries permute samples (measured 0.0); layers.md 10.2.
EXACT = 1e-5


def complex_input(rng, shape):
    data = rng.standard_normal(shape) + 1j * rng.standard_normal(shape)
    return data.astype(np.complex64)


@pytest.mark.parametrize(
    "spins, shape, real",
    [
        ((0,), (2, 8, 8, 1, 3), True),
        ((0, 1), (2, 8, 8, 2, 3), False),
        ((-1, 0, 2), (2, 6, 10, 3, 2), False),
    ],
)
def test_layer_contract(rng, spins, shape, real):
    data = complex_input(rng, shape)
    if real:
        data = data.real.copy()
    output = run_layer_test(
        MagnitudeNonlinearity,
        dict(spins=spins),
        data,
        shape,
        expected_num_trainable_weights=1,
        expected_num_non_trainable_weights=0,
        expected_num_params=shape[3] * shape[4],  # layers.md section 3: S * C
    )
    assert output.dtype == (np.float32 if real else np.complex64)


@pytest.mark.parametrize("shape", [(1, 8, 8, 3, 4), (2, 4, 4, 5, 6)])
def test_anchor_threshold_values(rng, shape):
    # The anchor's test: |z| = 1 everywhere except one row with |z| = 0.1 (here with
    # random phases).
    phases = np.exp(1j * rng.uniform(0, 2 * np.pi, shape))
    moduli = np.ones(shape)
    moduli[:, 3] = 0.1
    inputs = (moduli * phases).astype(np.complex64)
    layer = MagnitudeNonlinearity(spins=tuple(range(shape[3])))
    # Zero bias: the identity up to a relative epsilon / |z| <= 1e-5.
    np.testing.assert_allclose(layer(inputs), inputs, rtol=2e-5, atol=0)
    layer.bias.assign(np.full(layer.bias.shape, -0.2, np.float32))
    output = np.asarray(layer(inputs))
    assert np.array_equal(output[:, 3], np.zeros_like(output[:, 3]))
    expected = 0.8 * inputs
    np.testing.assert_allclose(output[:, :3], expected[:, :3], rtol=1e-5, atol=0)
    np.testing.assert_allclose(output[:, 4:], expected[:, 4:], rtol=1e-5, atol=0)


def test_real_input_keeps_sign(rng):
    data = rng.standard_normal((2, 8, 8, 1, 3)).astype(np.float32)
    layer = MagnitudeNonlinearity(spins=(0,))
    layer(data)
    layer.bias.assign(np.array([[-0.5, 0.0, 0.3]], np.float32))
    modulus = np.abs(data)
    expected = (
        np.maximum(modulus + np.asarray(layer.bias.value), 0) * data / (modulus + 1e-6)
    )
    np.testing.assert_allclose(layer(data), expected, rtol=1e-5, atol=1e-5)


def test_exact_grid_symmetries(rng):
    spins = (0, 1, -2)
    grid = Grid.for_bandlimit(7)
    layer = MagnitudeNonlinearity(spins=spins)
    inputs = random_spatial_input(rng, grid, spins, channels=2)
    layer(inputs)
    randomize_weights(layer, rng, 0.5)
    assert_equivariant(
        layer,
        inputs,
        [lambda x: roll_spatial(x, 5), lambda x: flip_spatial(x, spins)],
        [lambda y: roll_spatial(y, 5), lambda y: flip_spatial(y, spins)],
        EXACT,
        "MagnitudeNonlinearity grid symmetries",
    )


# Measured (spins (0, -1, 2), 16 x 16 grid, bias 0.5 N(0, 1), unit-RMS inputs, 5
# rotations; mean / max over 6 seeds): at L = 7 (the grid's limit, the anchor's
# setting) E 8.2e-2 / 9.5e-2, MAE 1.7e-2 / 2.3e-2, max abs 0.22 / 0.30; at L = 3 (2x
# oversampled) E 1.4e-2 / 2.5e-2, MAE 5.9e-3 / 1.3e-2, max abs 7.7e-2 / 0.20.
# Bounds are about twice the means (the seed spread is wide at L = 3: the error comes
# from the few samples whose modulus crosses -b, where the output has a kink).
@pytest.mark.parametrize(
    "ell_max, bounds", [(7, (0.16, 0.035, 0.5)), (3, (0.03, 0.013, 0.25))]
)
def test_approximate_so3_equivariance(rng, ell_max, bounds):
    spins = (0, -1, 2)
    errors = band_limited_equivariance(
        MagnitudeNonlinearity(spins=spins), rng, spins, Grid.for_bandlimit(7), ell_max
    )
    for error, bound in zip(errors, bounds, strict=True):
        assert error <= bound, (errors, bounds)


@pytest.mark.parametrize("bias", [0.0, -0.2, 0.3])
def test_gradients_are_finite_at_zero(bias):
    import jax
    import jax.numpy as jnp

    layer = MagnitudeNonlinearity(spins=(0, 1))
    zeros = np.zeros((2, 8, 8, 2, 3), np.float32)
    layer(zeros.astype(np.complex64))
    bias_value = jnp.full((2, 3), bias, jnp.float32)

    def loss(bias_value, real, imag):
        output, _ = layer.stateless_call([bias_value], [], jax.lax.complex(real, imag))
        return jnp.sum(jnp.abs(output + 1.0) ** 2)

    grads = jax.grad(loss, argnums=(0, 1, 2))(bias_value, zeros, zeros)
    for grad in grads:
        assert np.all(np.isfinite(np.asarray(grad)))


def test_errors():
    with pytest.raises(ValueError, match="epsilon must be > 0"):
        MagnitudeNonlinearity(spins=(0,), epsilon=0.0)
    with pytest.raises(ValueError, match="spins must be a tuple of integer spins"):
        MagnitudeNonlinearity(spins=None)
    with pytest.raises(ValueError, match="rank-5"):
        MagnitudeNonlinearity(spins=(0,))(np.zeros((1, 8, 8, 3), np.complex64))
    with pytest.raises(ValueError, match="spin axis has 2 entries but spins=\\(1,\\)"):
        MagnitudeNonlinearity(spins=(1,))(np.zeros((1, 8, 8, 2, 3), np.complex64))
