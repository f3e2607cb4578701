import numpy as np
import pytest

from keras_sphere.layers import SphericalResBlock
from keras_sphere.sphere import Grid
from keras_sphere.testing import assert_equivariant
from keras_sphere.testing import flip_spatial
from keras_sphere.testing import power_head
from keras_sphere.testing import random_rotation
from keras_sphere.testing import random_spatial_input
from keras_sphere.testing import randomize_weights
from keras_sphere.testing import roll_spatial
from keras_sphere.testing import rotate_spatial
from keras_sphere.testing import rotate_spectral
from keras_sphere.testing import run_layer_test
from keras_sphere.testing import run_model_saving_test


def trainable_count(spins_in, spins_out, c_in, c, p1, p2):
    """layers.md section 5 (complex terms x2 as Keras floats, projection real)."""
    s_in, s_out = len(spins_in), len(spins_out)
    complex_count = (
        s_in * s_out * c_in * c * p1
        + s_out**2 * c**2 * p2
        + 2 * (s_out * c + c)
        + 2 * ((s_out + 1) * c**2 + 2 * c)
    )
    real_count = 0
    if c_in != c:
        complex_count += s_in * c + (c if 0 in spins_in else 0)
        real_count = c_in * c
    return 2 * complex_count + real_count


@pytest.mark.parametrize(
    "kwargs, input_shape, output_shape",
    [
        (
            dict(filters=4, spins_out=(0, 1), num_filter_params=2),
            (2, 8, 8, 2, 4),
            (2, 8, 8, 2, 4),
        ),
        (
            dict(filters=6, spins_out=(0, 1), downsample=True, spins_in=(0, 1)),
            (2, 16, 16, 2, 3),
            (2, 8, 8, 2, 6),
        ),
        (
            dict(filters=2, spins_out=(0,), upsample=True, spins_in=(0, 1)),
            (2, 8, 8, 2, 2),
            (2, 16, 16, 1, 2),
        ),
        (
            dict(filters=3, spins_out=(0, 1), output_representation="spectral"),
            (2, 8, 8, 2, 3),
            (2, 4, 7, 2, 3),
        ),
    ],
)
def test_layer_contract(rng, kwargs, input_shape, output_shape):
    data = (
        rng.standard_normal(input_shape) + 1j * rng.standard_normal(input_shape)
    ).astype(np.complex64)
    layer = run_layer_test(
        SphericalResBlock,
        kwargs,
        data,
        output_shape,
        run_precision_checks=False,
        # The first phase collapse's biases add a constant spin-0 field, which conv2
        # keeps at ell = 0 and norm2 removes with the batch mean: zero gradient in
        # training (they act at inference, through the moving mean).
        weights_without_gradient=tuple(
            f"collapse1/{name}_{part}"
            for name in ("b1", "b2")
            for part in ("real", "imag")
        ),
    )
    del layer
    block = SphericalResBlock(**kwargs)
    block(data)
    grid_in = Grid(input_shape[1], input_shape[2])
    ell_in = grid_in.max_bandlimit
    ell = (ell_in + 1) // 2 - 1 if kwargs.get("downsample") else ell_in
    p = kwargs.get("num_filter_params") or ell + 1
    spins_in = kwargs.get("spins_in", kwargs["spins_out"])
    expected = trainable_count(
        spins_in,
        kwargs["spins_out"],
        input_shape[-1],
        kwargs["filters"],
        p,
        (
            kwargs.get("num_filter_params")
            or (2 * ell_in + 2 if kwargs.get("upsample") else ell + 1)
        ),
    )
    assert sum(int(np.prod(w.shape)) for w in block.trainable_weights) == expected


def test_projection_only_when_channels_differ(rng):
    same = SphericalResBlock(3, (0, 1))
    same(np.zeros((1, 8, 8, 2, 3), np.complex64))
    assert same.projection is None and same.shortcut_norm is None
    other = SphericalResBlock(4, (0, 1))
    other(np.zeros((1, 8, 8, 2, 3), np.complex64))
    assert other.projection.shape == (3, 4)


def test_starts_as_its_shortcut(rng):
    block = SphericalResBlock(3, (0, 1))
    data = random_spatial_input(rng, Grid(8, 8), (0, 1), channels=3)
    block(data)
    np.testing.assert_allclose(block.norm2.gamma_real.numpy(), 0)
    total = np.asarray(block._spectral_sum(data, training=False))
    coeffs = np.asarray(block._forward.to_spectral(data, (0, 1)))
    # Main branch at init = BN2 with gamma 0 -> only beta (0) remains.
    np.testing.assert_allclose(total, coeffs, atol=1e-6)


@pytest.mark.parametrize("training", [False, True])
def test_linear_path_is_exactly_equivariant(rng, training):
    # With BN2's gamma at zero, main + skip is linear and m-independent (beta is a
    # constant field): exact SO(3) equivariance up to float32 rounding (1e-5).
    grid = Grid.for_bandlimit(7)
    block = SphericalResBlock(4, (0, 1), spins_in=(0, 1, 2), downsample=True)
    data = random_spatial_input(rng, grid, (0, 1, 2), channels=3, batch=3)
    block(data)
    randomize_weights(block, rng, 0.3)
    block.norm2.gamma_real.assign(np.zeros(block.norm2.gamma_real.shape, np.float32))
    block.norm2.gamma_imag.assign(np.zeros(block.norm2.gamma_imag.shape, np.float32))
    rotations = [random_rotation(rng) for _ in range(3)]
    assert_equivariant(
        lambda x: block._spectral_sum(x, training=training),
        data,
        [lambda x, r=r: rotate_spatial(x, grid, (0, 1, 2), r) for r in rotations],
        [lambda a, r=r: rotate_spectral(a, r) for r in rotations],
        1e-5,
        f"res block linear path, training={training}",
    )


def test_exact_grid_symmetries(rng):
    grid = Grid.for_bandlimit(7)
    block = SphericalResBlock(3, (0, 1), spins_in=(0, 1))
    data = random_spatial_input(rng, grid, (0, 1), channels=2)
    block(data)
    randomize_weights(block, rng, 0.3)
    assert_equivariant(
        lambda x: block(x, training=False),
        data,
        [lambda x: roll_spatial(x, 3), lambda x: flip_spatial(x, (0, 1))],
        [lambda y: roll_spatial(y, 3), lambda y: flip_spatial(y, (0, 1))],
        1e-5,
        "res block grid symmetries",
    )


def test_approximate_so3_equivariance(rng):
    # The phase collapses are pointwise, so a rotated input is only approximately
    # mapped to a rotated output on a finite grid. Measured relative (Frobenius)
    # error 0.123 (mean of 5 rotations, max 0.13) at L = 7 with random weights of
    # scale 0.3; the threshold is about twice that, so the test fails if it grows.
    grid = Grid.for_bandlimit(7)
    block = SphericalResBlock(3, (0, 1), spins_in=(0, 1))
    data = random_spatial_input(rng, grid, (0, 1), channels=2, batch=2)
    block(data)
    randomize_weights(block, rng, 0.3)
    rotations = [random_rotation(rng) for _ in range(5)]
    assert_equivariant(
        lambda x: block(x, training=False),
        data,
        [lambda x, r=r: rotate_spatial(x, grid, (0, 1), r) for r in rotations],
        [lambda y, r=r: rotate_spatial(y, grid, (0, 1), r) for r in rotations],
        0.25,
        "res block (approximate)",
    )


@pytest.mark.parametrize("training", [False, True])
def test_spectral_chaining_equals_spatial_chaining(rng, training):
    # Two blocks (the second downsampling) chained through the spatial layout, and
    # the same weights chained spectrally. Both compute the same function; the
    # spectral route evaluates the phase collapses' linear maps on coefficients.
    # Float32 round-off through two blocks and their batch norms: measured
    # 2e-7 to 7e-7 relative, bound 1e-5.
    from keras_sphere.testing import spatial_to_spectral

    grid = Grid.for_bandlimit(7)
    data = random_spatial_input(rng, grid, (0, 1), channels=3, batch=3)
    first = SphericalResBlock(4, (0, 1), spins_in=(0, 1))
    second = SphericalResBlock(5, (0, 1), downsample=True, num_filter_params=2)
    second(first(data))
    randomize_weights(first, rng, 0.3)
    randomize_weights(second, rng, 0.3)
    first_spectral = SphericalResBlock(
        4, (0, 1), spins_in=(0, 1), output_representation="spectral"
    )
    second_spectral = SphericalResBlock(
        5,
        (0, 1),
        downsample=True,
        num_filter_params=2,
        input_representation="spectral",
        output_representation="spectral",
    )
    middle = first_spectral(data)
    assert middle.shape == (3, 8, 15, 2, 4)
    second_spectral(middle)
    first_spectral.set_weights(first.get_weights())
    second_spectral.set_weights(second.get_weights())

    spatial = second(first(data, training=training), training=training)
    expected = np.asarray(spatial_to_spectral(spatial, Grid.for_bandlimit(3), (0, 1)))
    got = second_spectral(first_spectral(data, training=training), training=training)
    assert got.shape == expected.shape == (3, 4, 7, 2, 5)
    error = np.abs(np.asarray(got) - expected).max() / np.abs(expected).max()
    assert error < 1e-5, error


def test_saving_in_fresh_process(rng, tmp_path):
    import keras

    inputs = keras.Input((16, 16, 2, 3), dtype="complex64")
    x = SphericalResBlock(
        4, (0, 1), downsample=True, spins_in=(0, 1), num_filter_params=3
    )(inputs)
    x = SphericalResBlock(4, (0, 1), output_representation="spectral")(x)
    x = SphericalResBlock(4, (0, 1), input_representation="spectral")(x)
    model = keras.Model(inputs, power_head()(x))
    data = random_spatial_input(rng, Grid(16, 16), (0, 1), channels=3)
    run_model_saving_test(model, data, tmp_path)


def test_errors():
    with pytest.raises(ValueError, match="needs a spin-0 entry"):
        SphericalResBlock(2, (1,))
    with pytest.raises(ValueError, match='output_representation must be "spatial"'):
        SphericalResBlock(2, (0,), output_representation="coefficients")
    with pytest.raises(ValueError, match="downsample and upsample"):
        SphericalResBlock(2, (0,), downsample=True, upsample=True)
    with pytest.raises(ValueError, match="spin axis has 1 entries"):
        SphericalResBlock(2, (0, 1))(np.zeros((1, 8, 8, 1, 2), np.complex64))
