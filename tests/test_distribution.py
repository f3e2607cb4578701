"""keras_sphere.distribution: DataParallel on 8 virtual CPU devices, batch helpers.

The multi-device checks run this file as a script in a subprocess started with
XLA_FLAGS=--xla_force_host_platform_device_count=8 (JAX fixes its device count when it
starts, and the test process has one CPU device). The worker trains the same small
spherical CNN (SpinSphericalConv, SpectralBatchNorm, PhaseCollapse, SphericalResBlock,
InvariantReadout) on one device and under `data_parallel()`, and prints a JSON report
that the tests below check.

Tolerance 1e-5 (absolute, on losses of order 1 and weights of order 0.1-1): the
8-device program computes the same float32 sums in another order (per-device partial
sums, then an all-reduce), a relative error of a few 1e-7 per step that grows with the
number of steps. A per-device batch norm or a lost gradient shard changes losses and
weights by 1e-2 or more.
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

N_DEVICES = 8
TOLERANCE = 1e-5
N_GRID = 16  # 16 x 16 grid, ell_max = 7; the residual block pools to ell_max = 3
SPINS = (0, 1)


# -- the worker (runs in the 8-device subprocess) --------------------------------------


def build_model(n_grid=N_GRID):
    """Spherical CNN with per-example BN weights as a second input, (batch,)."""
    import keras

    from keras_sphere import layers

    fields = keras.Input((n_grid, n_grid, 1, 2), name="fields")
    mask = keras.Input((), name="mask")
    x = layers.SpinSphericalConv(
        4, (0,), SPINS, num_filter_params=3, output_representation="spectral"
    )(fields)
    x = layers.SpectralBatchNorm(SPINS, momentum=0.5)(x, mask=mask)
    x = layers.SpinSphericalConv(4, SPINS, SPINS, input_representation="spectral")(x)
    x = layers.PhaseCollapse(SPINS)(x)
    x = layers.SphericalResBlock(6, SPINS, downsample=True, momentum=0.5)(x, mask=mask)
    features = layers.InvariantReadout(SPINS)(x)
    outputs = keras.layers.Dense(1)(features)
    return keras.Model({"fields": fields, "mask": mask}, outputs)


def chunked_transforms():
    """Plan transforms of a batch of 16 in chunk loops: coefficients, gradient, jaxpr.

    Under `data_parallel()` each device loops over its own shard (shard_map); on one
    device one loop runs over the whole batch. Same float32 operations per example.
    """
    import jax
    import keras

    from keras_sphere.layers import batch_chunks
    from keras_sphere.layers import transform_state
    from keras_sphere.sphere import Grid

    state = transform_state.TransformState(
        keras.layers.Layer(), Grid(N_GRID, N_GRID), 7, SPINS, "t", method="plan"
    )
    fields = make_data(16, seed=5)[0].astype("complex64")
    fields = np.concatenate([fields, 1j * fields], axis=-2)  # spins 0 and 1

    def loss(x):
        coeffs = state.to_spectral(x, SPINS)
        field = state.to_spatial(coeffs * 0.5, SPINS)
        return jax.numpy.sum(jax.numpy.abs(field) ** 2), coeffs

    step = jax.jit(jax.value_and_grad(loss, has_aux=True))
    chunk_bytes = batch_chunks.CHUNK_BYTES
    batch_chunks.CHUNK_BYTES = 1  # one example per chunk
    try:
        (_, coeffs), grad = step(fields)
        jaxpr = str(jax.make_jaxpr(loss)(fields))
    finally:
        batch_chunks.CHUNK_BYTES = chunk_bytes
    return np.asarray(coeffs), np.asarray(grad), jaxpr


def make_data(n_examples, seed, n_grid=N_GRID):
    rng = np.random.default_rng(seed)
    fields = rng.standard_normal((n_examples, n_grid, n_grid, 1, 2)).astype("float32")
    # A different scale for every pair of examples: the 8 shards of a batch of 16
    # have different statistics, so per-device batch norm would be visible.
    scale = 1.0 + np.arange(n_examples) % 16 // 2
    fields *= scale[:, None, None, None, None].astype("float32")
    targets = rng.standard_normal((n_examples, 1)).astype("float32")
    return fields, targets


def train(plain, masked, batch_size=16):
    """Fit a fresh seeded model on `plain` data, then on padded `masked` data.

    Both stages use the same batch size, so the compiled step is reused. Returns
    (losses of each stage, weights after the first stage, model).
    """
    import keras

    from keras_sphere.training import set_seed

    set_seed(7)
    model = build_model()
    model.compile(
        optimizer=keras.optimizers.SGD(learning_rate=0.02, momentum=0.5), loss="mse"
    )
    losses, first_stage = [], None
    for epochs, (fields, targets, weights) in ((3, plain), (2, masked)):
        history = model.fit(
            {"fields": fields, "mask": weights},
            targets,
            sample_weight=weights,
            batch_size=batch_size,
            epochs=epochs,
            shuffle=False,
            verbose=0,
        )
        losses.append([float(v) for v in history.history["loss"]])
        if first_stage is None:
            first_stage = [np.asarray(v.value) for v in model.variables]
    return losses, first_stage, model


def max_difference(values_a, values_b):
    """Largest |a - b| over two lists of arrays."""
    return max(
        float(np.max(np.abs(np.asarray(a) - np.asarray(b)), initial=0.0))
        for a, b in zip(values_a, values_b, strict=True)
    )


def values(model):
    """Every variable of `model` (weights, moving statistics, tables) as arrays."""
    return [np.asarray(v.value) for v in model.variables]


def batch_norm_step(model, fields, weights, distribution=None):
    """One training-mode forward pass: outputs and updated non-trainable state."""
    import jax

    def step(trainable, non_trainable, inputs):
        return model.stateless_call(trainable, non_trainable, inputs, training=True)

    inputs = {"fields": fields, "mask": weights}
    if distribution is not None:
        inputs = {
            key: jax.device_put(
                value, distribution.get_data_layout(value.shape).backend_layout
            )
            for key, value in inputs.items()
        }
    trainable = [v.value for v in model.trainable_variables]
    non_trainable = [v.value for v in model.non_trainable_variables]
    outputs, updated = jax.jit(step)(trainable, non_trainable, inputs)
    paths = [v.path for v in model.non_trainable_variables]
    moving = [
        np.asarray(value)
        for path, value in zip(paths, updated, strict=True)
        if "moving" in path
    ]
    return np.asarray(outputs), moving


def worker(tmp_dir):
    import jax
    import keras

    from keras_sphere import distribution as ksd

    report = {"n_devices": len(jax.devices())}
    fields, targets = make_data(32, seed=1)
    plain = (fields, targets, np.ones((32,), "float32"))
    # 19 real examples padded to 32 (2 batches of 16; the second holds 3 real ones).
    (pad_fields, pad_targets), pad_weights = ksd.pad_to_multiple(
        make_data(19, seed=2), 16
    )
    masked = (pad_fields, pad_targets, pad_weights)

    # One device (no distribution).
    losses_1, first_1, model_1 = train(plain, masked)
    model_1.save(os.path.join(tmp_dir, "model.keras"))
    test_fields, _ = make_data(19, seed=3)
    test_input = {"fields": test_fields, "mask": np.ones((19,), "float32")}
    predictions_1 = model_1.predict(test_input, batch_size=8, verbose=0)
    bn_fields, _ = make_data(16, seed=4)
    bn_weights = np.ones((16,), "float32")
    bn_out_1, bn_moving_1 = batch_norm_step(model_1, bn_fields, bn_weights)
    # Per-device statistics, for contrast: the first device's shard of 2 on its own.
    bn_out_local, bn_moving_local = batch_norm_step(
        model_1, bn_fields[:2], bn_weights[:2]
    )
    coeffs_1, grad_1, jaxpr_1 = chunked_transforms()

    # Eight devices.
    distribution = ksd.data_parallel()
    report["batch_device_count"] = ksd.batch_device_count()
    coeffs_8, grad_8, jaxpr_8 = chunked_transforms()
    report["chunk_loops"] = ["scan" in jaxpr_1, "scan" in jaxpr_8]
    report["chunk_loops_per_shard"] = ["shard_map" in jaxpr_1, "shard_map" in jaxpr_8]
    report["chunked_coefficient_difference"] = max_difference(
        [coeffs_8], [coeffs_1]
    ) / float(np.max(np.abs(coeffs_1)))
    report["chunked_gradient_difference"] = max_difference([grad_8], [grad_1]) / float(
        np.max(np.abs(grad_1))
    )
    losses_8, first_8, model_8 = train(plain, masked)
    report["losses"] = [losses_1[0], losses_8[0]]
    report["masked_losses"] = [losses_1[1], losses_8[1]]
    report["max_weight_difference"] = max_difference(first_1, first_8)
    report["masked_max_weight_difference"] = max_difference(
        values(model_1), values(model_8)
    )
    report["variables_replicated"] = all(
        v.value.sharding.is_fully_replicated
        and len(v.value.sharding.device_set) == N_DEVICES
        for v in model_8.variables
    )
    tables = [v for v in model_8.variables if "table" in v.path]
    report["n_table_variables"] = len(tables)
    report["tables_replicated"] = all(
        v.value.sharding.is_fully_replicated
        and len(v.value.sharding.device_set) == N_DEVICES
        for v in tables
    )

    # Batch norm statistics under DataParallel are those of the global batch.
    model_8.set_weights(model_1.get_weights())
    bn_out_8, bn_moving_8 = batch_norm_step(
        model_8, bn_fields, bn_weights, distribution
    )
    report["bn_output_difference"] = float(np.max(np.abs(bn_out_8 - bn_out_1)))
    report["bn_moving_difference"] = max_difference(bn_moving_8, bn_moving_1)
    report["bn_per_device_output_difference"] = float(
        np.max(np.abs(bn_out_local - bn_out_1[:2]))
    )
    report["bn_per_device_moving_difference"] = max_difference(
        bn_moving_local, bn_moving_1
    )

    # Predictions on 19 examples with batch 8 through the padding helper.
    model_8.set_weights(model_1.get_weights())
    predictions_built = ksd.predict(model_8, test_input, batch_size=8, verbose=0)
    report["predict_built_shape"] = list(predictions_built.shape)
    report["predict_built_difference"] = float(
        np.max(np.abs(predictions_built - predictions_1))
    )

    # A model loaded inside the distribution.
    loaded = keras.saving.load_model(os.path.join(tmp_dir, "model.keras"))
    report["loaded_replicated"] = all(
        len(v.value.sharding.device_set) == N_DEVICES for v in loaded.variables
    )
    predictions_loaded = ksd.predict(loaded, test_input, batch_size=8, verbose=0)
    report["predict_loaded_difference"] = float(
        np.max(np.abs(predictions_loaded - predictions_1))
    )

    # A subset of devices, by index, inside a scope that restores the previous one.
    with ksd.data_parallel_scope([0, 1, 2, 3]) as subset:
        report["subset_devices"] = ksd.batch_device_count()
        report["subset_inside"] = keras.distribution.distribution() is subset
    report["restored"] = keras.distribution.distribution() is distribution

    # Plain predict on 19 examples with batch 8 (last batch of 3 on 8 devices),
    # recorded for the report: keras-team/keras issue #21167.
    try:
        model_8.predict(test_input, batch_size=8, verbose=0)
        report["plain_predict_error"] = None
    except Exception as error:  # recorded, not raised
        report["plain_predict_error"] = f"{type(error).__name__}: {error}"[:400]
    try:
        model_8.predict(test_input, batch_size=19, verbose=0)
        report["usable_after_failed_predict"] = True
    except Exception as error:  # recorded, not raised
        report["usable_after_failed_predict"] = f"{type(error).__name__}: {error}"[:200]
    print("REPORT " + json.dumps(report))


# -- the tests -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    tmp_dir = tmp_path_factory.mktemp("distribution")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = {
        **os.environ,
        "XLA_FLAGS": f"--xla_force_host_platform_device_count={N_DEVICES}",
        "KERAS_BACKEND": "jax",
        "JAX_PLATFORMS": "cpu",
        "PYTHONPATH": os.pathsep.join(
            [root, *filter(None, [os.environ.get("PYTHONPATH")])]
        ),
    }
    result = subprocess.run(
        [sys.executable, "-W", "ignore::UserWarning", __file__, str(tmp_dir)],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    line = [x for x in result.stdout.splitlines() if x.startswith("REPORT ")][-1]
    data = json.loads(line.removeprefix("REPORT "))
    print(json.dumps(data, indent=1))
    return data


def test_worker_sees_eight_devices(report):
    assert report["n_devices"] == N_DEVICES
    assert report["batch_device_count"] == N_DEVICES


def test_data_parallel_training_matches_one_device(report):
    losses_1, losses_8 = report["losses"]
    assert len(losses_1) == 3 and np.all(np.isfinite(losses_1))
    assert losses_1[-1] < losses_1[0]  # it trains
    np.testing.assert_allclose(losses_8, losses_1, rtol=0, atol=TOLERANCE)
    assert report["max_weight_difference"] <= TOLERANCE


def test_masked_batch_norm_training_matches_one_device(report):
    losses_1, losses_8 = report["masked_losses"]
    np.testing.assert_allclose(losses_8, losses_1, rtol=0, atol=TOLERANCE)
    assert report["masked_max_weight_difference"] <= TOLERANCE


def test_chunk_loops_run_per_device_shard(report):
    # Both runs loop over chunks; under data_parallel() inside shard_map, so each
    # device loops over its own 2 examples. Same per-example float32 operations:
    # values and gradients agree to float32 round-off (relative to their largest
    # entry; measured 0, an order of reduction that differs would give ~1e-7).
    assert report["chunk_loops"] == [True, True]
    assert report["chunk_loops_per_shard"] == [False, True]
    assert report["chunked_coefficient_difference"] < 1e-6
    assert report["chunked_gradient_difference"] < 1e-6


def test_variables_and_transform_tables_are_replicated(report):
    assert report["n_table_variables"] > 0
    assert report["tables_replicated"]
    assert report["variables_replicated"]


def test_batch_norm_statistics_are_global(report):
    # Equal to single-device statistics of the whole batch ...
    assert report["bn_output_difference"] <= TOLERANCE
    assert report["bn_moving_difference"] <= TOLERANCE
    # ... and far from what per-device statistics would give on this batch.
    assert report["bn_per_device_output_difference"] > 100 * TOLERANCE
    assert report["bn_per_device_moving_difference"] > 100 * TOLERANCE


def test_predict_on_a_batch_that_does_not_divide(report):
    assert report["predict_built_shape"] == [19, 1]
    assert report["predict_built_difference"] <= TOLERANCE
    assert report["loaded_replicated"]
    assert report["predict_loaded_difference"] <= TOLERANCE


def test_scope_with_device_indices_restores_the_distribution(report):
    assert report["subset_devices"] == 4
    assert report["subset_inside"]
    assert report["restored"]


# -- single-process tests --------------------------------------------------------------


def test_public_names_are_deliberate():
    from keras_sphere import distribution

    assert set(distribution.__all__) == {
        "batch_device_count",
        "check_divisible",
        "data_parallel",
        "data_parallel_scope",
        "divisible_batches",
        "drop_to_multiple",
        "pad_to_multiple",
        "predict",
    }


def test_import_does_not_load_tensorflow():
    code = (
        "import sys, keras_sphere.distribution, keras_sphere.training; "
        "print('tensorflow' in sys.modules, 'keras_hub' in sys.modules)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={**os.environ, "KERAS_BACKEND": "jax"},
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["False", "False"]


def test_scope_restores_no_distribution():
    import keras

    from keras_sphere import distribution as ksd

    assert keras.distribution.distribution() is None
    with ksd.data_parallel_scope() as inside:
        assert keras.distribution.distribution() is inside
        assert isinstance(inside, keras.distribution.DataParallel)
        assert ksd.batch_device_count() == len(keras.distribution.list_devices())
    assert keras.distribution.distribution() is None
    assert ksd.batch_device_count() == 1


def test_data_parallel_sets_and_returns_the_distribution():
    import keras

    from keras_sphere import distribution as ksd

    try:
        result = ksd.data_parallel(["cpu:0"])
        assert keras.distribution.distribution() is result
        assert result.device_mesh.shape == (1,)
    finally:
        keras.distribution.set_distribution(None)


@pytest.mark.parametrize(
    "devices, error, match",
    [
        ([], ValueError, "devices is empty"),
        (["cpu:0", 0], ValueError, "lists a device twice"),
        ([99], ValueError, "out of range"),
        (["tpu:3"], ValueError, "Unknown device 'tpu:3'. Available devices"),
        ("cpu:0", TypeError, "list of device names or indices"),
        ([1.5], TypeError, "name such as 'gpu:0'"),
    ],
)
def test_bad_devices_give_clear_errors(devices, error, match):
    import keras

    from keras_sphere import distribution as ksd

    with pytest.raises(error, match=match):
        ksd.data_parallel(devices)
    assert keras.distribution.distribution() is None


def test_check_divisible():
    from keras_sphere.distribution import check_divisible

    check_divisible(64, 8)
    check_divisible(5)  # one device without a distribution
    with pytest.raises(ValueError, match=r"batch_size=60 .* Use batch_size=56 or 64"):
        check_divisible(60, 8)
    with pytest.raises(ValueError, match=r"Use batch_size=8 \("):
        check_divisible(3, 8)
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        check_divisible(0, 8)


def test_pad_to_multiple_pads_every_array_and_returns_weights():
    from keras_sphere.distribution import pad_to_multiple

    data = {"fields": np.ones((19, 2, 3), "float32"), "labels": np.arange(19)}
    padded, weights = pad_to_multiple(data, 8)
    assert padded["fields"].shape == (24, 2, 3)
    assert padded["fields"].dtype == np.float32
    assert padded["labels"].dtype == data["labels"].dtype
    np.testing.assert_array_equal(padded["labels"][:19], np.arange(19))
    assert np.all(padded["fields"][19:] == 0)
    assert weights.dtype == np.float32 and weights.shape == (24,)
    np.testing.assert_array_equal(weights, np.r_[np.ones(19), np.zeros(5)])
    same, weights = pad_to_multiple(np.ones((16, 2)), 8)
    assert same.shape == (16, 2) and weights.sum() == 16


def test_drop_to_multiple():
    from keras_sphere.distribution import drop_to_multiple

    x, y = drop_to_multiple((np.arange(19), np.arange(19) * 2), 8)
    np.testing.assert_array_equal(x, np.arange(16))
    np.testing.assert_array_equal(y, np.arange(16) * 2)
    with pytest.raises(ValueError, match="would leave no examples"):
        drop_to_multiple(np.arange(5), 8)


def test_arrays_of_different_lengths_are_rejected():
    from keras_sphere.distribution import pad_to_multiple

    with pytest.raises(ValueError, match="same number of examples"):
        pad_to_multiple((np.ones((3, 2)), np.ones((4,))), 2)


def test_divisible_batches_drop_pad_or_explain():
    from keras_sphere.distribution import divisible_batches

    data = (np.ones((19, 4)), np.arange(19))
    (x, y), weights = divisible_batches(data, 8, remainder="drop", n_devices=8)
    assert x.shape == (16, 4) and weights.shape == (16,) and weights.min() == 1
    (x, y), weights = divisible_batches(data, 8, remainder="pad", n_devices=8)
    assert x.shape == (24, 4) and weights.sum() == 19
    with pytest.raises(ValueError, match="remainder='drop' .* remainder='pad'"):
        divisible_batches(data, 8, n_devices=8)
    with pytest.raises(ValueError, match="multiple of 8"):
        divisible_batches(data, 12, remainder="pad", n_devices=8)
    with pytest.raises(ValueError, match="remainder must be"):
        divisible_batches(data, 8, remainder="repeat", n_devices=8)
    (x, y), weights = divisible_batches((x, y), 8, n_devices=8)  # already divisible
    assert x.shape == (24, 4)


def test_predict_strips_padding_on_one_device():
    import keras

    from keras_sphere.distribution import predict

    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    x = np.random.default_rng(0).standard_normal((19, 3)).astype("float32")
    result = predict(model, x, batch_size=8, verbose=0)
    assert result.shape == (19, 2)
    np.testing.assert_allclose(result, model.predict(x, verbose=0), atol=1e-6)


if __name__ == "__main__":
    worker(sys.argv[1])
