"""Whole models built from every layer: equivariance, Keras workflows, counts."""

import keras
import numpy as np
import pytest

from keras_sphere import layers
from keras_sphere import training
from keras_sphere.sphere import Grid
from keras_sphere.testing import assert_equivariant
from keras_sphere.testing import flip_spatial
from keras_sphere.testing import random_rotation
from keras_sphere.testing import random_spatial_input
from keras_sphere.testing import roll_spatial
from keras_sphere.testing import rotate_spatial
from keras_sphere.testing import run_model_saving_test

SPINS = (0, 1)


def every_layer_model(n=16, classes=3, dtype=None):
    """A stack using every layer, ending in an invariant readout and a Dense head."""
    inputs = keras.Input((n, n, 1, 2))
    x = layers.SpinSphericalConv(6, (0,), SPINS, num_filter_params=4, dtype=dtype)(
        inputs
    )
    x = layers.SphericalBatchNorm(SPINS, dtype=dtype)(x)
    x = layers.MagnitudeNonlinearity(SPINS, dtype=dtype)(x)
    x = layers.SpinSphericalConv(
        6, SPINS, SPINS, output_representation="spectral", dtype=dtype
    )(x)
    x = layers.SpectralBatchNorm(SPINS, dtype=dtype)(x)
    x = layers.SpinSphericalConv(
        6, SPINS, SPINS, input_representation="spectral", use_bias=True, dtype=dtype
    )(x)
    x = layers.PhaseCollapse(SPINS, dtype=dtype)(x)
    x = layers.SphericalResBlock(8, SPINS, downsample=True, dtype=dtype)(x)
    x = layers.SphericalUpsampling(SPINS, dtype=dtype)(x)
    x = layers.SphericalPooling(2, dtype=dtype)(x)
    features = layers.InvariantReadout(SPINS, dtype=dtype)(x)
    outputs = keras.layers.Dense(classes, dtype=dtype)(features)
    return keras.Model(inputs, outputs)


def data(rng, n=16, batch=4):
    return random_spatial_input(
        rng, Grid(n, n), (0,), batch=batch, channels=2, real=True
    )


def test_fit_evaluate_predict_jit(rng):
    model = every_layer_model()
    x = data(rng, batch=8)
    y = rng.integers(0, 3, 8)
    model.compile(
        optimizer="adam",
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
        jit_compile=True,
    )
    history = model.fit(x, y, epochs=2, batch_size=4, verbose=0)
    assert np.all(np.isfinite(history.history["loss"]))
    assert len(model.evaluate(x, y, verbose=0)) == 2
    assert model.predict(x, verbose=0).shape == (8, 3)


def test_grid_symmetries_exact_for_the_whole_model(rng):
    # Every layer commutes with longitude rolls and the R_x(pi) flip on the grid, so
    # the logits are invariant to float32 rounding (1e-5), nonlinear layers included.
    # (SphericalPooling by 2 commutes with rolls by even shifts only.)
    model = every_layer_model()
    x = data(rng)
    model(x)
    for weight in model.weights:
        if "moving_variance" in weight.path:
            continue
        weight.assign(0.3 * rng.standard_normal(weight.shape).astype("float32"))
    assert_equivariant(
        lambda v: model(v, training=False),
        x,
        [lambda v: roll_spatial(v, 4), lambda v: flip_spatial(v, (0,))],
        [lambda y: y, lambda y: y],
        1e-5,
        "every-layer model, grid symmetries",
    )


def test_approximate_rotation_invariance_of_the_whole_model(rng):
    # Pointwise nonlinearities and spatial pooling alias on a finite grid, so logits
    # are only approximately invariant to arbitrary rotations. With the weights seeded
    # (seed 0) the relative error over 5 random rotations at 16 x 16 is 0.022-0.041;
    # the bound is about twice that (the anchor's whole-classifier threshold was a
    # normalised MAE < 0.05 with pooling). Unseeded, the error depends on the draw:
    # seeds 0-5 gave maxima of 0.03-0.05 except one draw with small logits at 0.22.
    training.set_seed(0)
    rng = np.random.default_rng(0)
    model = every_layer_model()
    x = data(rng)
    model(x)
    grid = Grid(16, 16)
    rotations = [random_rotation(rng) for _ in range(5)]
    assert_equivariant(
        lambda v: model(v, training=False),
        x,
        [lambda v, r=r: rotate_spatial(v, grid, (0,), r) for r in rotations],
        [lambda y: y] * 5,
        0.1,
        "every-layer model, SO(3)",
    )


def test_save_load_fresh_process(rng, tmp_path):
    from keras_sphere.testing import power_head

    base = every_layer_model()
    model = keras.Model(base.inputs, power_head()(base.outputs[0]))
    run_model_saving_test(model, data(rng), tmp_path)


def test_mixed_bfloat16_policy(rng):
    model = every_layer_model(dtype="mixed_bfloat16")
    out = model(data(rng), training=False)
    assert out.dtype == "bfloat16"
    assert all(w.dtype == "float32" for w in model.weights)
    assert np.all(np.isfinite(np.asarray(out, dtype=np.float32)))
    model.compile(
        optimizer="adam",
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        jit_compile=True,
    )
    history = model.fit(data(rng), np.array([0, 1, 2, 0]), epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])


def test_trainable_false_freezes_and_uses_moving_statistics(rng):
    model = every_layer_model()
    x, y = data(rng, batch=8), rng.integers(0, 3, 8)
    model(x)
    backbone = model.layers[1:-1]
    for layer in backbone:
        layer.trainable = False
    frozen = {
        w.path: np.asarray(w.value).copy() for layer in backbone for w in layer.weights
    }
    model.compile(
        optimizer="adam",
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        jit_compile=True,
    )
    model.fit(x, y, epochs=2, batch_size=4, verbose=0)
    for layer in backbone:
        for weight in layer.weights:
            np.testing.assert_array_equal(np.asarray(weight.value), frozen[weight.path])
    assert len(model.trainable_weights) == 2  # the Dense head only


def complex_count(model) -> int:
    """Parameters counting a complex weight (a *_real/*_imag pair) once (anchor)."""
    total = 0
    for weight in model.trainable_weights:
        size = int(np.prod(weight.shape))
        total += size // 2 if weight.path.endswith(("_real", "_imag")) else size
    return total


def spherical_mnist_spin_classifier():
    """The anchor's spherical-MNIST spin_classifier_6_layers (layers.md section 11)."""
    resolutions = (64, 64, 64, 32, 32, 16, 16)
    widths = (1, 16, 16, 20, 24, 28, 32)
    params = (None, 6, 6, 4, 4, 3, 3)
    inputs = keras.Input((64, 64, 1, 1))
    x, spins = inputs, (0,)
    for i in range(1, 7):
        if resolutions[i] < resolutions[i - 1]:
            x = layers.SphericalPooling(resolutions[i - 1] // resolutions[i])(x)
        x = layers.SpinSphericalConv(
            widths[i], spins, SPINS, num_filter_params=params[i]
        )(x)
        spins = SPINS
        x = layers.SphericalBatchNorm(spins)(x)
        x = layers.MagnitudeNonlinearity(spins)(x)
    x = layers.InvariantReadout(spins)(x)
    return keras.Model(inputs, keras.layers.Dense(10)(x))


def test_spherical_mnist_parameter_count():
    # The anchor's model has 39,146 complex-counted parameters. Ours differs only by
    # the batch-norm offset: our BN has a complex beta per channel of spin 0
    # (layers.md section 4.2), the anchor's spin BN has none, +sum(widths) = 136.
    model = spherical_mnist_spin_classifier()
    assert complex_count(model) == 39_146 + (16 + 16 + 20 + 24 + 28 + 32)
    # Tables are not parameters.
    assert model.count_params() == sum(int(np.prod(w.shape)) for w in model.weights)


@pytest.mark.parametrize("backend", ["torch", "tensorflow"])
def test_non_jax_backend_gives_clear_error(backend):
    import os
    import subprocess
    import sys

    code = (
        "import keras_sphere.layers.spins as s\n"
        "import keras\n"
        "keras.backend.backend = lambda: '" + backend + "'\n"
        "s.check_jax_backend('SpinSphericalConv')\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={**os.environ, "KERAS_BACKEND": "jax"},
    )
    assert result.returncode != 0
    assert "runs on the JAX backend only" in result.stderr


def test_subclassed_model_builds_and_fits(rng):
    # Keras builds subclassed models inside a stateless scope; transform tables must
    # be created lazily there (a callable initializer) and not be duplicated.
    class Net(keras.Model):
        def __init__(self):
            super().__init__()
            self.conv = layers.SpinSphericalConv(4, (0,), SPINS)
            self.readout = layers.InvariantReadout(SPINS)
            self.head = keras.layers.Dense(2)

        def call(self, x):
            return self.head(self.readout(self.conv(x)))

    model = Net()
    x = rng.standard_normal((4, 8, 8, 1, 1)).astype("float32")
    model.compile(optimizer="adam", loss="mse", jit_compile=True)
    history = model.fit(x, np.zeros((4, 2)), epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    assert model.count_params() == 2 * 4 * 1 * 2 * 1 * 4 + (8 * 2 + 2)


def small_invariant_model(n=32):
    """SpinSphericalConv -> SphericalBatchNorm -> PhaseCollapse -> InvariantReadout."""
    inputs = keras.Input((n, n, 1, 1))
    x = layers.SpinSphericalConv(4, (0,), SPINS)(inputs)
    x = layers.SphericalBatchNorm(SPINS)(x)
    x = layers.PhaseCollapse(SPINS)(x)
    x = layers.InvariantReadout(SPINS)(x)
    return keras.Model(inputs, keras.layers.Dense(3)(x))


def test_wrong_grid_leaves_the_model_usable(rng):
    model = small_invariant_model()
    x = random_spatial_input(rng, Grid(32, 32), (0,), batch=2, channels=1, real=True)
    wrong = random_spatial_input(
        rng, Grid(64, 64), (0,), batch=2, channels=1, real=True
    )
    expected = np.asarray(model(x))
    with pytest.raises(ValueError, match=r"expected shape=\(None, 32, 32, 1, 1\)"):
        model(wrong)
    np.testing.assert_array_equal(np.asarray(model(x)), expected)


@pytest.mark.xfail(
    strict=True,
    raises=TypeError,
    reason="Keras' JAX trainer (3.15, 3.16) empties every variable before the "
    "first predict step and refills them only after a step returns, so a shape "
    "error traced in that step loses the weights of any model, plain Keras layers "
    "included (keras_sphere/models/_trainer_state.py; the zoo tasks restore them). "
    "Passes, and must lose this mark, once Keras restores them itself.",
)
def test_wrong_grid_in_predict_keeps_the_weights(rng):
    model = small_invariant_model()
    x = random_spatial_input(rng, Grid(32, 32), (0,), batch=2, channels=1, real=True)
    wrong = random_spatial_input(
        rng, Grid(64, 64), (0,), batch=2, channels=1, real=True
    )
    expected = model.predict(x, verbose=0)
    with pytest.raises(ValueError, match=r"expected shape=\(None, 32, 32, 1, 1\)"):
        model.predict(wrong, verbose=0)
    np.testing.assert_array_equal(model.predict(x, verbose=0), expected)
