import keras
import numpy as np
import pytest

from keras_sphere.layers import SpectralBatchNorm
from keras_sphere.layers import SphericalBatchNorm
from keras_sphere.sphere import Grid
from keras_sphere.sphere import isht
from keras_sphere.sphere import sht
from keras_sphere.testing import assert_equivariant
from keras_sphere.testing import flip_spatial
from keras_sphere.testing import power_head
from keras_sphere.testing import random_rotation
from keras_sphere.testing import random_spatial_input
from keras_sphere.testing import randomize_weights
from keras_sphere.testing import relative_error
from keras_sphere.testing import roll_spatial
from keras_sphere.testing import rotate_spatial
from keras_sphere.testing import run_layer_test
from keras_sphere.testing import run_model_saving_test

GRID = Grid(8, 8)
BATCH = 4
CHANNELS = 2


def read(weight):
    """A weight's current value as a NumPy array."""
    return np.asarray(weight.value)


def random_field(rng, grid, spins, ell_max=None, real=False, batch=BATCH):
    """Band-limited input with a non-zero spin-0 mean (constants are band-limited)."""
    field = random_spatial_input(
        rng, grid, spins, batch=batch, channels=CHANNELS, ell_max=ell_max, real=real
    )
    if 0 in spins:
        offset = 2.0 if real else 2.0 - 1.0j
        field[..., spins.index(0), :] += offset
    return field


def to_spectral(field, grid, spins, ell_max):
    """Forward SHT of every spin slice: (B, lat, lon, S, C) -> (B, L+1, 2L+1, S, C)."""
    parts = []
    for index, spin in enumerate(spins):
        part = np.moveaxis(np.asarray(field)[..., index, :], -1, 1)  # [b, c, lat, lon]
        parts.append(np.moveaxis(np.asarray(sht(part, grid, spin, ell_max)), 1, -1))
    return np.stack(parts, axis=-2)


def to_spatial(coeffs, grid, spins):
    """Inverse SHT of every spin slice: (B, L+1, 2L+1, S, C) -> (B, lat, lon, S, C)."""
    parts = []
    for index, spin in enumerate(spins):
        part = np.moveaxis(np.asarray(coeffs)[..., index, :], -1, 1)  # [b, c, ell, m]
        parts.append(np.moveaxis(np.asarray(isht(part, grid, spin)), 1, -1))
    return np.stack(parts, axis=-2)


def spatial_statistics(field, grid, spins):
    """Per (spin, channel): batch mean of each example's mean-free spatial variance."""
    q = (grid.weights / (4 * np.pi))[None, :, None, None, None]  # [1, lat, 1, 1, 1]
    field = np.asarray(field, np.complex128)
    own_mean = np.sum(q * field, axis=(1, 2), keepdims=True)
    is_zero = np.array([spin == 0 for spin in spins])[:, None]
    centred = field - own_mean * is_zero
    variance = np.sum(q * np.abs(centred) ** 2, axis=(1, 2)).mean(0)  # [s, c]
    return own_mean[:, 0, 0].mean(0), variance


# -- Keras citizenship -----------------------------------------------------------


@pytest.mark.parametrize("spins, real", [((0,), True), ((0, 1), False), ((2,), False)])
def test_layer_shapes_weights_and_serialization(rng, spins, real):
    field = random_field(rng, GRID, spins, real=real)
    assert (field.dtype == np.float32) == real
    n_spins, has_zero = len(spins), 0 in spins
    params = 3 * n_spins * CHANNELS + (4 * CHANNELS if has_zero else 0)
    output = run_layer_test(
        SphericalBatchNorm,
        {"spins": spins},
        field,
        expected_output_shape=field.shape,
        expected_num_trainable_weights=4 if has_zero else 2,
        expected_num_non_trainable_weights=3 if has_zero else 1,
        expected_num_params=params,
        # gamma_imag and beta get zero gradients from the power loss at their
        # initial values; test_fit_step_trains_every_weight starts elsewhere.
        run_training_check=False,
        call_kwargs={"training": True},
    )
    assert output.dtype == np.complex64  # also for real input: gamma is complex


def test_fit_step_trains_every_weight(rng):
    spins = (0, 1)
    field = random_field(rng, GRID, spins)
    layer = SphericalBatchNorm(spins)
    inputs = keras.Input(field.shape[1:], dtype="complex64")
    model = keras.Model(inputs, power_head()(layer(inputs)))
    model.compile(optimizer=keras.optimizers.SGD(0.01), loss="mse", jit_compile=True)
    randomize_weights(layer, rng)
    before = {weight.name: read(weight) for weight in layer.weights}
    history = model.fit(field, np.ones((BATCH, 1)), batch_size=BATCH, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    for weight in layer.weights:
        assert not np.allclose(before[weight.name], read(weight)), weight.path


# -- equal to the spectral layer between transforms ------------------------------


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize(
    "grid, ell_max, spins, real",
    [
        (Grid(16, 16), 7, (0, 1, -2), False),
        (Grid(16, 16), 7, (0,), True),
        # Rectangular: analysis holds L <= 5, the quadrature of |f|^2 L <= 4.
        (Grid(9, 12), 4, (0, 2), False),
        (Grid(9, 12), 4, (1,), False),
    ],
)
def test_equals_inverse_spectral_forward(rng, grid, ell_max, spins, real, training):
    # layers.md 4.3: one definition of the statistics for both layers, including
    # non-zero-mean inputs (the anchor's spatial BN differed there). Exact for inputs
    # band-limited at L <= grid.plain_quadrature_bandlimit; float32 rounding here.
    assert ell_max <= grid.plain_quadrature_bandlimit
    field = random_field(rng, grid, spins, ell_max=ell_max, real=real)
    example_weights = np.array([1.0, 0.5, 0.0, 2.0], np.float32)
    coeffs = to_spectral(field, grid, spins, ell_max)
    spectral, spatial = SpectralBatchNorm(spins), SphericalBatchNorm(spins)
    spectral.build(coeffs.shape)
    spatial.build(field.shape)
    randomize_weights(spectral, rng)
    spatial.set_weights(spectral.get_weights())
    expected = to_spatial(
        spectral(coeffs, training=training, mask=example_weights), grid, spins
    )
    actual = spatial(field, training=training, mask=example_weights)
    error = relative_error(actual, expected)
    print(f"spatial vs spectral BN: relative error {error:.1e}")
    assert error < 1e-5
    for first, second in zip(spectral.weights, spatial.weights, strict=True):
        assert first.name == second.name
        np.testing.assert_allclose(read(second), read(first), rtol=1e-5, atol=1e-6)


# -- semantics -------------------------------------------------------------------


@pytest.mark.parametrize("spins", [(0,), (0, 1, -2)])
def test_training_output_has_unit_spatial_variance(rng, spins):
    grid = Grid(16, 16)
    layer = SphericalBatchNorm(spins)
    out = layer(random_field(rng, grid, spins), training=True)
    mean, variance = spatial_statistics(out, grid, spins)
    # gamma = 1: variance / (variance + epsilon), 1 - O(1e-6) here (anchor: 1e-5).
    np.testing.assert_allclose(variance, 1.0, atol=1e-5)
    if 0 in spins:
        np.testing.assert_allclose(mean[spins.index(0)], 0.0, atol=1e-5)


def test_moving_statistics_in_coefficient_units(rng):
    spins = (0, 1)
    field = random_field(rng, GRID, spins)
    layer = SphericalBatchNorm(spins, momentum=0.0)
    layer(field, training=True)
    mean, variance = spatial_statistics(field, GRID, spins)
    moving_mean = read(layer.moving_mean_real) + 1j * read(layer.moving_mean_imag)
    # The moving mean is the mean of a_00 = sqrt(4 pi) * spherical mean.
    np.testing.assert_allclose(moving_mean, np.sqrt(4 * np.pi) * mean[0], rtol=1e-5)
    np.testing.assert_allclose(read(layer.moving_variance), variance, rtol=1e-5)
    assert layer.moving_mean_real.shape == (CHANNELS,)
    assert layer.moving_variance.shape == (len(spins), CHANNELS)


def test_masked_examples_do_not_enter_statistics(rng):
    spins = (0, 1)
    field = random_field(rng, GRID, spins)
    example_weights = np.array([0.0, 1.0, 1.0, 0.0], np.float32)
    changed = field.copy()
    changed[[0, 3]] = 7.0 * random_field(rng, GRID, spins)[[0, 3]]
    outputs, moving = [], []
    for inputs in (field, changed):
        layer = SphericalBatchNorm(spins)
        outputs.append(np.asarray(layer(inputs, training=True, mask=example_weights)))
        moving.append([read(weight) for weight in layer.non_trainable_weights])
    np.testing.assert_array_equal(outputs[0][1:3], outputs[1][1:3])
    for first, second in zip(*moving, strict=True):
        np.testing.assert_array_equal(first, second)
    alone = SphericalBatchNorm(spins)(field[1:3], training=True)
    np.testing.assert_allclose(outputs[0][1:3], alone, atol=1e-6)


def test_frozen_layer_runs_in_inference_mode(rng):
    spins = (0, 1)
    field = random_field(rng, GRID, spins)
    layer = SphericalBatchNorm(spins)
    inputs = keras.Input(field.shape[1:], dtype="complex64")
    model = keras.Model(inputs, power_head()(layer(inputs)))
    randomize_weights(layer, rng)
    layer.trainable = False
    model.compile(optimizer="sgd", loss="mse", jit_compile=True)
    before = [read(weight) for weight in layer.weights]
    model.fit(field, np.ones((BATCH, 1)), batch_size=BATCH, verbose=0)
    for old, weight in zip(before, layer.weights, strict=True):
        np.testing.assert_array_equal(old, read(weight))
    np.testing.assert_array_equal(
        layer(field, training=True), layer(field, training=False)
    )


# -- equivariance -----------------------------------------------------------------


@pytest.mark.parametrize("training", [True, False])
def test_so3_equivariance(rng, training):
    # Exact for band-limited inputs (rotation-invariant statistics, pointwise affine
    # map); the bound is float32 rounding of the transforms and the layer.
    grid, spins = Grid(16, 16), (0, 1, 2)
    field = random_field(rng, grid, spins)
    layer = SphericalBatchNorm(spins)
    layer.build(field.shape)
    randomize_weights(layer, rng)
    rotations = [random_rotation(rng) for _ in range(5)]
    rotate = [lambda x, r=r: rotate_spatial(x, grid, spins, r) for r in rotations]
    error = assert_equivariant(
        lambda x: layer(x, training=training),
        field,
        rotate,
        rotate,
        tolerance=1e-5,
        label=f"SphericalBatchNorm training={training}",
    )
    assert error < 1e-5


@pytest.mark.parametrize("training", [True, False])
def test_grid_symmetries_for_any_input(rng, training):
    # Rolls and the pi flip about x map the grid onto itself and preserve the
    # quadrature weights, so even a field that is not band-limited commutes.
    grid, spins = Grid(9, 12), (0, 1, -2)
    shape = (BATCH, grid.n_lat, grid.n_lon, len(spins), CHANNELS)
    field = (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)).astype(
        np.complex64
    )
    layer = SphericalBatchNorm(spins)
    layer.build(field.shape)
    randomize_weights(layer, rng)
    symmetries = [lambda x: roll_spatial(x, 5), lambda x: flip_spatial(x, spins)]
    assert_equivariant(
        lambda x: layer(x, training=training),
        field,
        symmetries,
        symmetries,
        tolerance=1e-5,
        label=f"SphericalBatchNorm grid symmetries training={training}",
    )


# -- saving, precision --------------------------------------------------------------


def test_keras_save_and_load_in_a_fresh_process(rng, tmp_path):
    spins = (0,)
    field = random_field(rng, GRID, spins, real=True)
    layer = SphericalBatchNorm(spins, momentum=0.9, epsilon=1e-3)
    inputs = keras.Input(field.shape[1:], dtype="float32")
    model = keras.Model(inputs, power_head()(layer(inputs)))
    randomize_weights(layer, rng)
    run_model_saving_test(model, field, tmp_path)


@pytest.mark.parametrize("training", [True, False])
def test_mixed_bfloat16_computes_in_float32(rng, training):
    # Complex inputs are not autocast; weights stay float32 and are read as such.
    spins = (0, 1)
    field = random_field(rng, GRID, spins)
    reference = SphericalBatchNorm(spins)
    mixed = SphericalBatchNorm(spins, dtype="mixed_bfloat16")
    reference.build(field.shape)
    mixed.build(field.shape)
    randomize_weights(reference, rng)
    mixed.set_weights(reference.get_weights())
    out = mixed(field, training=training)
    assert out.dtype == np.complex64
    assert all(weight.dtype == "float32" for weight in mixed.weights)
    np.testing.assert_allclose(out, reference(field, training=training), atol=1e-6)


# -- errors --------------------------------------------------------------------------


def test_errors_name_the_problem():
    with pytest.raises(ValueError, match="rank-5 spatial"):
        SphericalBatchNorm((0,))(np.zeros((2, 8, 8, 1), np.float32))
    with pytest.raises(ValueError, match=r"spin axis .* has 1 entries but spins="):
        SphericalBatchNorm((0, 1))(np.zeros((2, 8, 8, 1, 3), np.complex64))
    with pytest.raises(ValueError, match="equiangular grid with both poles"):
        SphericalBatchNorm((0,))(np.zeros((2, 2, 8, 1, 3), np.float32))
    with pytest.raises(ValueError, match="one weight per example"):
        SphericalBatchNorm((0,))(np.zeros((2, 8, 8, 1, 3)), mask=np.ones(3))
    with pytest.raises(ValueError, match="momentum must be in"):
        SphericalBatchNorm((0,), momentum=-0.1)


@pytest.mark.parametrize("sums", ["product", "reductions"])
def test_channel_affine_gradients_equal_autodiff_of_the_plain_expression(
    sums, monkeypatch
):
    """The custom VJP of (x - c) a + b against JAX's own transpose of the same
    expression, with its column sums as a product with ones and as reductions: both
    float32, so only summation order differs (measured 4e-8 to 6e-7 relative; the
    bound leaves 3x)."""
    import jax
    import jax.numpy as jnp

    from keras_sphere.layers import spherical_batch_norm
    from keras_sphere.layers.spherical_batch_norm import channel_affine

    # 3 x 5 x 6 = 90 rows: the product path up to 90, the reductions below.
    monkeypatch.setattr(
        spherical_batch_norm, "DOT_SUM_MAX_ROWS", 90 if sums == "product" else 89
    )

    rng = np.random.default_rng(7)

    def complex_normal(*shape):
        return (rng.normal(size=shape) + 1j * rng.normal(size=shape)).astype(
            np.complex64
        )

    field = complex_normal(3, 5, 6, 2, 4)
    center, scale, shift = (complex_normal(2, 4) for _ in range(3))
    weights = complex_normal(3, 5, 6, 2, 4)

    def loss(affine):
        def value(*args):
            out = affine(*args)
            # Real, non-holomorphic, so every cotangent is a generic complex array.
            return jnp.sum(jnp.abs(out) ** 2 * weights.real + (out * weights).imag)

        return value

    plain = loss(lambda x, c, a, b: (x - c) * a + b)
    args = (field, center, scale, shift)
    expected = jax.grad(plain, argnums=(0, 1, 2, 3))(*args)
    actual = jax.grad(loss(channel_affine), argnums=(0, 1, 2, 3))(*args)
    assert float(loss(channel_affine)(*args)) == pytest.approx(float(plain(*args)))
    for got, want in zip(actual, expected, strict=True):
        assert relative_error(np.asarray(got), np.asarray(want)) < 2e-6
