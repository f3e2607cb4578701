import math
import os
import subprocess
import sys

import keras
import numpy as np
import pytest

from keras_sphere.layers import SpectralBatchNorm
from keras_sphere.sphere import Grid
from keras_sphere.sphere import isht
from keras_sphere.testing import assert_equivariant
from keras_sphere.testing import power_head
from keras_sphere.testing import random_coefficients
from keras_sphere.testing import random_rotation
from keras_sphere.testing import randomize_weights
from keras_sphere.testing import rotate_spectral
from keras_sphere.testing import run_layer_test
from keras_sphere.testing import run_model_saving_test

ELL_MAX = 3
BATCH = 4
CHANNELS = 3


def random_spectral(rng, spins, ell_max=ELL_MAX, batch=BATCH, channels=CHANNELS):
    """Random band-limited coefficients (batch, L + 1, 2L + 1, S, C), complex64."""
    parts = [
        random_coefficients(rng, ell_max, spin, (batch, channels)) for spin in spins
    ]
    coeffs = np.stack(parts, axis=-1)  # [b, c, ell, m, s]
    return np.transpose(coeffs, (0, 2, 3, 4, 1)).astype(np.complex64)


def read(weight):
    """A weight's current value as a NumPy array."""
    return np.asarray(weight.value)


def numpy_statistics(coeffs, spins, example_weights=None):
    """Reference batch statistics in float64: (mean of a_00 (C,), variance (S, C))."""
    coeffs = np.asarray(coeffs, np.complex128)
    batch, n_ell = coeffs.shape[:2]
    ell_max = n_ell - 1
    if example_weights is None:
        example_weights = np.ones(batch)
    w = np.asarray(example_weights, np.float64)
    ell = np.arange(n_ell)[:, None, None]
    m = np.arange(-ell_max, ell_max + 1)[None, :, None]
    s = np.abs(np.asarray(spins))[None, None, :]
    enters = (np.abs(m) <= ell) & (ell >= np.maximum(s, 1))  # [ell, m, s]
    power = np.sum(np.abs(coeffs) ** 2 * enters[None, ..., None], axis=(1, 2))
    variance = np.einsum("b,bsc->sc", w, power / (4 * np.pi)) / w.sum()
    mean = None
    if 0 in spins:
        zero = coeffs[:, 0, ell_max, spins.index(0), :]
        mean = np.einsum("b,bc->c", w, zero) / w.sum()
    return mean, variance


def numpy_normalize(layer, coeffs, mean, variance):
    """The layer's formula in float64 with given statistics."""
    spins = layer.spins
    ell_max = coeffs.shape[1] - 1
    coeffs = np.asarray(coeffs, np.complex128).copy()
    gamma = read(layer.gamma_real) + 1j * read(layer.gamma_imag)
    if mean is not None:
        coeffs[:, 0, ell_max, spins.index(0), :] -= mean
    out = coeffs * gamma / np.sqrt(variance + layer.epsilon)
    if mean is not None:
        beta = read(layer.beta_real) + 1j * read(layer.beta_imag)
        out[:, 0, ell_max, spins.index(0), :] += math.sqrt(4 * np.pi) * beta
    return out


def moving_mean(layer):
    return read(layer.moving_mean_real) + 1j * read(layer.moving_mean_imag)


def spatial_variance(out, spins):
    """Batch mean of each example's mean-free spatial variance, on the model grid."""
    ell_max = out.shape[1] - 1
    grid = Grid.for_bandlimit(ell_max)
    q = grid.weights[:, None] / (4 * np.pi)  # [lat, 1]
    variances = []
    for index, spin in enumerate(spins):
        coeffs = np.moveaxis(np.asarray(out)[..., index, :], -1, 1)  # [b, c, ell, m]
        field = np.asarray(isht(coeffs, grid, spin), np.complex128)  # [b, c, lat, lon]
        if spin == 0:
            field = field - np.sum(q * field, axis=(-2, -1), keepdims=True)
        variances.append(np.mean(np.sum(q * np.abs(field) ** 2, axis=(-2, -1)), 0))
    return np.stack(variances)  # [s, c]


def num_params(n_spins, channels, has_spin_zero):
    if has_spin_zero:
        return 2 * (n_spins * channels + channels) + 2 * channels + n_spins * channels
    return 2 * n_spins * channels + n_spins * channels


# -- Keras citizenship -----------------------------------------------------------


@pytest.mark.parametrize("spins", [(0,), (0, 1), (1, -2)])
def test_layer_shapes_weights_and_serialization(rng, spins):
    coeffs = random_spectral(rng, spins)
    has_zero = 0 in spins
    output = run_layer_test(
        SpectralBatchNorm,
        {"spins": spins},
        coeffs,
        expected_output_shape=coeffs.shape,
        expected_num_trainable_weights=4 if has_zero else 2,
        expected_num_non_trainable_weights=3 if has_zero else 1,
        expected_num_params=num_params(len(spins), CHANNELS, has_zero),
        run_training_check=False,  # see test_fit_step_trains_every_weight
        call_kwargs={"training": True},
    )
    assert output.dtype == np.complex64
    layer = SpectralBatchNorm(spins)
    layer.build(coeffs.shape)
    shapes = {weight.name: tuple(weight.shape) for weight in layer.weights}
    n_spins = len(spins)
    expected = {
        "gamma_real": (n_spins, CHANNELS),
        "gamma_imag": (n_spins, CHANNELS),
        "moving_variance": (n_spins, CHANNELS),
    }
    if has_zero:
        for name in ("beta_real", "beta_imag", "moving_mean_real", "moving_mean_imag"):
            expected[name] = (CHANNELS,)
    assert shapes == expected


def test_fit_step_trains_every_weight(rng):
    # run_layer_test's fit check starts from gamma = 1, beta = 0, where the power
    # loss has zero gradient for gamma_imag and beta (the batch-centred a_00 sums to
    # 0), so the check is done here from random non-zero weights.
    spins = (0, 1)
    coeffs = random_spectral(rng, spins)
    layer = SpectralBatchNorm(spins)
    inputs = keras.Input(coeffs.shape[1:], dtype="complex64")
    model = keras.Model(inputs, power_head()(layer(inputs)))
    model.compile(optimizer=keras.optimizers.SGD(0.01), loss="mse", jit_compile=True)
    randomize_weights(layer, rng)
    before = {weight.name: read(weight) for weight in layer.weights}
    history = model.fit(
        coeffs, np.ones((BATCH, 1)), epochs=1, batch_size=BATCH, verbose=0
    )
    assert np.isfinite(history.history["loss"][0])
    for weight in layer.weights:
        assert not np.allclose(before[weight.name], read(weight)), weight.path
    # Keras passes training=True inside fit: the moving statistics moved by
    # (1 - momentum) towards the batch statistics of this batch.
    mean, variance = numpy_statistics(coeffs, spins)
    np.testing.assert_allclose(
        read(layer.moving_variance),
        0.99 * before["moving_variance"] + 0.01 * variance,
        rtol=1e-5,
    )


# -- semantics -------------------------------------------------------------------


@pytest.mark.parametrize("spins", [(0,), (0, 1, -2)])
def test_training_output_has_unit_spatial_variance(rng, spins):
    coeffs = random_spectral(rng, spins, ell_max=5)
    coeffs[:, 0, 5, ...] += 3.0 - 2.0j  # a non-zero mean (entries stay valid)
    layer = SpectralBatchNorm(spins)
    out = np.asarray(layer(coeffs, training=True))
    # gamma = 1: variance / (variance + epsilon), 1 - O(1e-6) here (anchor: 1e-5).
    np.testing.assert_allclose(spatial_variance(out, spins), 1.0, atol=1e-5)
    mean, _ = numpy_statistics(out, spins)
    np.testing.assert_allclose(mean, 0.0, atol=1e-5)


def test_moving_statistics_after_one_and_two_updates(rng):
    spins = (0, 1)
    first, second = random_spectral(rng, spins), random_spectral(rng, spins)
    first[:, 0, ELL_MAX, 0, :] += 2.0 + 1.0j
    layer = SpectralBatchNorm(spins, momentum=0.9)
    out = layer(first, training=True)
    mean_1, variance_1 = numpy_statistics(first, spins)
    np.testing.assert_allclose(
        out, numpy_normalize(layer, first, mean_1, variance_1), atol=1e-5
    )
    expected_mean = 0.1 * mean_1
    expected_variance = 0.9 + 0.1 * variance_1
    np.testing.assert_allclose(moving_mean(layer), expected_mean, rtol=1e-5)
    np.testing.assert_allclose(
        read(layer.moving_variance), expected_variance, rtol=1e-5
    )

    layer(second, training=True)
    mean_2, variance_2 = numpy_statistics(second, spins)
    expected_mean = 0.9 * expected_mean + 0.1 * mean_2
    expected_variance = 0.9 * expected_variance + 0.1 * variance_2
    np.testing.assert_allclose(moving_mean(layer), expected_mean, rtol=1e-5)
    np.testing.assert_allclose(
        read(layer.moving_variance), expected_variance, rtol=1e-5
    )
    # Fixed shapes (the anchor's running mean grew to (2L + 1, S, C) here).
    assert layer.moving_mean_real.shape == (CHANNELS,)
    assert layer.moving_mean_imag.shape == (CHANNELS,)
    assert layer.moving_variance.shape == (len(spins), CHANNELS)

    # Inference mode uses (and keeps) the moving statistics.
    randomize_weights(layer, rng)
    frozen = [read(weight) for weight in layer.non_trainable_weights]
    out = layer(second, training=False)
    expected = numpy_normalize(
        layer, second, moving_mean(layer), read(layer.moving_variance)
    )
    np.testing.assert_allclose(out, expected, atol=1e-5)
    for old, weight in zip(frozen, layer.non_trainable_weights, strict=True):
        np.testing.assert_array_equal(old, read(weight))


def test_masked_examples_do_not_enter_statistics(rng):
    spins = (0, 1)
    coeffs = random_spectral(rng, spins)
    example_weights = np.array([1.0, 0.0, 1.0, 0.0], np.float32)
    changed = coeffs.copy()
    changed[1::2] = 10.0 * random_spectral(rng, spins)[1::2]
    outputs, moving = [], []
    for values in (coeffs, changed):
        layer = SpectralBatchNorm(spins)
        outputs.append(np.asarray(layer(values, training=True, mask=example_weights)))
        moving.append([read(weight) for weight in layer.non_trainable_weights])
    np.testing.assert_array_equal(outputs[0][::2], outputs[1][::2])
    for first, second in zip(*moving, strict=True):
        np.testing.assert_array_equal(first, second)
    # Same statistics as the unmasked examples alone.
    alone = SpectralBatchNorm(spins)(coeffs[::2], training=True)
    np.testing.assert_allclose(outputs[0][::2], alone, atol=1e-6)


def test_example_weights_give_weighted_statistics(rng):
    spins = (0, 2)
    coeffs = random_spectral(rng, spins)
    example_weights = np.array([0.5, 0.0, 2.0, 1.0], np.float32)
    layer = SpectralBatchNorm(spins, momentum=0.0)
    layer(coeffs, training=True, mask=example_weights)
    mean, variance = numpy_statistics(coeffs, spins, example_weights)
    np.testing.assert_allclose(moving_mean(layer), mean, rtol=1e-5)
    np.testing.assert_allclose(read(layer.moving_variance), variance, rtol=1e-5)


def test_all_masked_batch_keeps_moving_statistics(rng):
    spins = (0,)
    layer = SpectralBatchNorm(spins)
    out = layer(random_spectral(rng, spins), training=True, mask=np.zeros(BATCH))
    assert np.all(np.isfinite(np.asarray(out)))
    np.testing.assert_array_equal(read(layer.moving_variance), 1.0)
    np.testing.assert_array_equal(moving_mean(layer), 0.0)


def test_mask_inside_a_functional_model(rng):
    spins = (0,)
    coeffs = random_spectral(rng, spins)
    example_weights = np.array([1.0, 1.0, 0.0, 1.0], np.float32)
    layer = SpectralBatchNorm(spins, momentum=0.0)
    inputs = keras.Input(coeffs.shape[1:], dtype="complex64")
    weights_input = keras.Input((), dtype="float32")
    outputs = power_head()(layer(inputs, mask=weights_input))
    model = keras.Model([inputs, weights_input], outputs)
    model.compile(optimizer="sgd", loss="mse", jit_compile=True)
    model.fit(
        [coeffs, example_weights], np.ones((BATCH, 1)), batch_size=BATCH, verbose=0
    )
    mean, variance = numpy_statistics(coeffs, spins, example_weights)
    np.testing.assert_allclose(moving_mean(layer), mean, rtol=1e-5)
    np.testing.assert_allclose(read(layer.moving_variance), variance, rtol=1e-5)


def test_coefficients_below_the_spin_do_not_enter(rng):
    # Spin 2 has no ell < 2 coefficients; the anchor let ell = 1 entries into the
    # variance. Garbage there (and at |m| > ell) must change nothing.
    spins = (0, 2)
    coeffs = random_spectral(rng, spins)
    garbage = coeffs.copy()
    noise = random_spectral(rng, (0, 0)) * 100.0
    ell = np.arange(ELL_MAX + 1)[:, None]
    m = np.arange(-ELL_MAX, ELL_MAX + 1)[None, :]
    invalid_spin_2 = (np.abs(m) > ell) | (ell < 2)
    invalid_spin_0 = np.abs(m) > ell
    noise = noise + 100.0  # also fills |m| > ell
    garbage[:, invalid_spin_0, 0, :] = noise[:, invalid_spin_0, 0, :]
    garbage[:, invalid_spin_2, 1, :] = noise[:, invalid_spin_2, 1, :]
    clean_layer, garbage_layer = SpectralBatchNorm(spins), SpectralBatchNorm(spins)
    clean = np.asarray(clean_layer(coeffs, training=True))
    dirty = np.asarray(garbage_layer(garbage, training=True))
    np.testing.assert_allclose(dirty, clean, atol=1e-6)
    np.testing.assert_allclose(
        read(garbage_layer.moving_variance),
        read(clean_layer.moving_variance),
        rtol=1e-6,
    )
    assert np.all(dirty[:, invalid_spin_2, 1, :] == 0)


def test_frozen_layer_runs_in_inference_mode(rng):
    spins = (0, 1)
    coeffs = random_spectral(rng, spins)
    layer = SpectralBatchNorm(spins)
    dense_input = keras.Input(coeffs.shape[1:], dtype="complex64")
    model = keras.Model(dense_input, power_head()(layer(dense_input)))
    randomize_weights(layer, rng)
    layer.trainable = False
    model.compile(optimizer="sgd", loss="mse", jit_compile=True)
    before = [read(weight) for weight in layer.weights]
    model.fit(coeffs, np.ones((BATCH, 1)), batch_size=BATCH, verbose=0)
    for old, weight in zip(before, layer.weights, strict=True):
        np.testing.assert_array_equal(old, read(weight))
    np.testing.assert_array_equal(
        layer(coeffs, training=True), layer(coeffs, training=False)
    )


def test_no_spin_zero_means_no_centring_and_no_beta(rng):
    spins = (1, -1)
    coeffs = random_spectral(rng, spins)
    layer = SpectralBatchNorm(spins)
    out = layer(coeffs, training=True)
    assert {weight.name for weight in layer.weights} == {
        "gamma_real",
        "gamma_imag",
        "moving_variance",
    }
    _, variance = numpy_statistics(coeffs, spins)
    np.testing.assert_allclose(
        out, numpy_normalize(layer, coeffs, None, variance), atol=1e-5
    )


# -- equivariance -----------------------------------------------------------------


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("spins", [(0, 1, 2), (-1,)])
def test_so3_equivariance(rng, spins, training):
    # Rotation-invariant statistics make the layer exactly equivariant; the bound
    # is float32 rounding of the Wigner rotation and the layer (measured ~3e-7).
    coeffs = random_spectral(rng, spins, ell_max=4)
    if 0 in spins:
        coeffs[:, 0, 4, spins.index(0), :] += 1.5  # non-zero mean
    layer = SpectralBatchNorm(spins)
    layer.build(coeffs.shape)
    randomize_weights(layer, rng)
    rotations = [random_rotation(rng) for _ in range(5)]
    rotate = [lambda a, r=r: rotate_spectral(a, r) for r in rotations]
    error = assert_equivariant(
        lambda a: layer(a, training=training),
        coeffs,
        rotate,
        rotate,
        tolerance=1e-5,
        label=f"SpectralBatchNorm spins={spins} training={training}",
    )
    assert error < 1e-5


# -- saving, precision, distribution ------------------------------------------------


def test_keras_save_and_load_in_a_fresh_process(rng, tmp_path):
    spins = (0, 1)
    coeffs = random_spectral(rng, spins)
    layer = SpectralBatchNorm(spins, momentum=0.9, epsilon=1e-3)
    inputs = keras.Input(coeffs.shape[1:], dtype="complex64")
    model = keras.Model(inputs, power_head()(layer(inputs)))
    randomize_weights(layer, rng)
    run_model_saving_test(model, coeffs, tmp_path)


@pytest.mark.parametrize("training", [True, False])
def test_mixed_bfloat16_computes_in_float32(rng, training):
    spins = (0, 1)
    coeffs = random_spectral(rng, spins)
    reference = SpectralBatchNorm(spins)
    mixed = SpectralBatchNorm(spins, dtype="mixed_bfloat16")
    reference.build(coeffs.shape)
    mixed.build(coeffs.shape)
    randomize_weights(reference, rng)
    mixed.set_weights(reference.get_weights())
    out = mixed(coeffs, training=training)
    assert out.dtype == np.complex64
    assert all(weight.dtype == "float32" for weight in mixed.weights)
    np.testing.assert_allclose(out, reference(coeffs, training=training), atol=1e-6)
    np.testing.assert_allclose(
        read(mixed.moving_variance),
        read(reference.moving_variance),
        rtol=1e-6,
    )


def test_bfloat16_policy_updates_bfloat16_statistics(rng):
    spins = (0,)
    layer = SpectralBatchNorm(spins, dtype="bfloat16", momentum=0.5)
    out = layer(random_spectral(rng, spins), training=True)
    assert layer.moving_variance.dtype == "bfloat16"
    assert np.all(np.isfinite(np.asarray(out)))
    assert not np.allclose(read(layer.moving_variance).astype(np.float32), 1.0)


DATA_PARALLEL_CODE = """
import numpy as np, keras, keras_sphere.layers, keras_sphere.testing as t, jax
assert len(jax.devices()) == 2, jax.devices()
x = np.load({input!r})
def fitted(distributed):
    keras.utils.set_random_seed(0)
    if distributed:
        keras.distribution.set_distribution(keras.distribution.DataParallel())
    layer = keras_sphere.layers.SpectralBatchNorm((0, 1), momentum=0.5)
    inputs = keras.Input(x.shape[1:], dtype="complex64")
    model = keras.Model(inputs, t.power_head()(layer(inputs)))
    model.compile(optimizer="sgd", loss="mse", jit_compile=True)
    loss = model.fit(x, np.ones((len(x), 1)), batch_size=len(x), verbose=0)
    keras.distribution.set_distribution(None)
    return loss.history["loss"][0], [np.asarray(w.value) for w in layer.weights]
single, parallel = fitted(False), fitted(True)
assert abs(single[0] - parallel[0]) < 1e-5, (single[0], parallel[0])
for a, b in zip(single[1], parallel[1]):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
print("ok")
"""


def test_data_parallel_uses_global_batch_statistics(rng, tmp_path):
    # Two host devices in a fresh process: GSPMD makes the batch sums global, so the
    # moving statistics equal the single-device ones (layers.md section 4.3).
    coeffs = random_spectral(rng, (0, 1))
    coeffs[:2] *= 5.0  # the two halves of the batch differ
    np.save(tmp_path / "input.npy", coeffs)
    env = {
        **os.environ,
        "KERAS_BACKEND": "jax",
        "XLA_FLAGS": "--xla_force_host_platform_device_count=2",
        "JAX_PLATFORMS": "cpu",
    }
    code = DATA_PARALLEL_CODE.format(input=str(tmp_path / "input.npy"))
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().endswith("ok")


# -- errors --------------------------------------------------------------------------


def test_errors_name_the_problem():
    with pytest.raises(ValueError, match="rank-5 spectral"):
        SpectralBatchNorm((0,))(np.zeros((2, 4, 7, 1), np.complex64))
    with pytest.raises(
        ValueError, match=r"spin axis .* has 2 entries but spins=\(0,\)"
    ):
        SpectralBatchNorm((0,))(np.zeros((2, 4, 7, 2, 3), np.complex64))
    with pytest.raises(ValueError, match=r"\(batch, L \+ 1, 2L \+ 1"):
        SpectralBatchNorm((0,))(np.zeros((2, 4, 8, 1, 3), np.complex64))
    with pytest.raises(ValueError, match="spin 3 has no coefficients below ell = 3"):
        SpectralBatchNorm((0, 3))(np.zeros((2, 3, 5, 2, 3), np.complex64))
    with pytest.raises(ValueError, match="one weight per example"):
        SpectralBatchNorm((0,))(
            np.zeros((2, 4, 7, 1, 3), np.complex64), mask=np.ones((2, 1))
        )
    with pytest.raises(ValueError, match="momentum must be in"):
        SpectralBatchNorm((0,), momentum=1.0)
    with pytest.raises(ValueError, match="epsilon must be > 0"):
        SpectralBatchNorm((0,), epsilon=0.0)
    with pytest.raises(ValueError, match="each spin once"):
        SpectralBatchNorm((0, 0))
