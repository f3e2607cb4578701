"""Test utilities: a plain float64 reference transform and an equivariance check.

The reference builds the dense synthesis matrix of every (ell, m) coefficient at every
grid point from `spin_harmonics` and inverts it by least squares. It shares nothing with
the fast transforms of ``sphere/sht.py`` beyond the harmonics themselves (which are
tested against scipy and closed forms on their own), so it is an independent check of
layouts, symmetries, FFT conventions and the exact analysis on latitude-limited grids.
Its cost is O((L + 1)^4 n_lat n_lon): use it at small L only.
"""

from __future__ import annotations

import numpy as np

from keras_sphere.sphere.grid import Grid
from keras_sphere.sphere.wigner import spin_harmonics

__all__ = ["reference_isht", "reference_sht", "synthesis_matrix", "random_coefficients"]


def synthesis_matrix(grid: Grid, ell_max: int, spin: int = 0) -> np.ndarray:
    """Dense synthesis matrix in float64.

    Returns:
        complex128, shape (n_lat * n_lon, (ell_max + 1) * (2 ell_max + 1)): column
        [ell, ell_max + m] (flattened) holds sY_ell,m at every grid point (row-major),
        zero
        for coefficients that do not exist.
    """
    orders = np.arange(-ell_max, ell_max + 1)
    values = spin_harmonics(ell_max, orders, spin, grid.theta)  # [ell, m, j]
    phase = np.exp(1j * np.outer(orders, grid.phi))  # [m, k]
    matrix = values[:, :, :, None] * phase[None, :, None, :]  # [ell, m, j, k]
    return matrix.reshape(len(values) * len(orders), -1).T


def reference_isht(coeffs: np.ndarray, grid: Grid, spin: int = 0) -> np.ndarray:
    """Synthesis by the dense matrix: (..., L + 1, 2L + 1) -> (..., n_lat, n_lon)."""
    ell_max = coeffs.shape[-2] - 1
    matrix = synthesis_matrix(grid, ell_max, spin)
    flat = coeffs.reshape(*coeffs.shape[:-2], -1)
    return (flat @ matrix.T).reshape(*coeffs.shape[:-2], grid.n_lat, grid.n_lon)


def reference_sht(field: np.ndarray, grid: Grid, ell_max: int, spin: int = 0):
    """Least-squares analysis of one field by the dense matrix (exact if band-limited).

    Returns:
        complex128, shape (ell_max + 1, 2 ell_max + 1), and the rank of the synthesis
        matrix restricted to existing coefficients (full rank = number of coefficients
        means analysis at `ell_max` is possible on this grid at all).
    """
    matrix = synthesis_matrix(grid, ell_max, spin)
    exists = np.abs(matrix).sum(axis=0) > 0
    solution, _, rank, _ = np.linalg.lstsq(matrix[:, exists], field.reshape(-1), None)
    coeffs = np.zeros(matrix.shape[1], complex)
    coeffs[exists] = solution
    return coeffs.reshape(ell_max + 1, 2 * ell_max + 1), int(rank), int(exists.sum())


def random_coefficients(
    rng: np.random.Generator,
    ell_max: int,
    spin: int = 0,
    batch_shape: tuple[int, ...] = (),
    real_field: bool = False,
) -> np.ndarray:
    """Random band-limited coefficients in the padded layout, complex128.

    Entries are standard complex normal where (ell, m) exists for `spin`, else zero.
    With `real_field` (spin 0 only) they satisfy a_ell,-m = (-1)^m conj(a_ell,m).
    """
    shape = (*batch_shape, ell_max + 1, 2 * ell_max + 1)
    coeffs = rng.standard_normal(shape) + 1j * rng.standard_normal(shape)
    ell = np.arange(ell_max + 1)[:, None]
    m = np.arange(-ell_max, ell_max + 1)[None, :]
    coeffs = coeffs * ((np.abs(m) <= ell) & (ell >= abs(spin)))
    if real_field:
        if spin != 0:
            raise ValueError(f"real_field needs spin 0. Received: spin={spin}")
        coeffs[..., ell_max] = coeffs[..., ell_max].real
        for order in range(1, ell_max + 1):
            coeffs[..., ell_max - order] = (-1) ** order * np.conj(
                coeffs[..., ell_max + order]
            )
    return coeffs


# -- equivariance helpers for the layer layout (batch, lat, lon, spins, channels) --


def _per_slice(function, tensor, spins, spin_axis=-2):
    """Apply function(slice, spin) to each spin slice of a (..., S, C) tensor."""
    import jax.numpy as jnp

    tensor = jnp.asarray(tensor)
    slices = []
    for index, spin in enumerate(spins):
        part = jnp.moveaxis(tensor[..., index, :], -1, 1)  # [B, C, a, b]
        slices.append(jnp.moveaxis(function(part, spin), 1, -1))
    return jnp.stack(slices, axis=spin_axis)


def rotate_spatial(x, grid: Grid, spins, rotation):
    """Rotate band-limited spatial tensors (B, n_lat, n_lon, S, C) by a rotation.

    `rotation` is (alpha, beta, gamma) ZYZ angles or a scipy Rotation; each spin slice
    is rotated as a spin-s field with `rotate_field` (exact for band-limited fields).
    """
    from keras_sphere.sphere import rotate_field

    return _per_slice(
        lambda part, spin: rotate_field(part, grid, rotation, spin), x, spins
    )


def rotate_spectral(coeffs, rotation):
    """Rotate spectral tensors (B, L + 1, 2L + 1, S, C) by a rotation (any spins)."""
    import jax.numpy as jnp

    from keras_sphere.sphere import rotate_coefficients
    from keras_sphere.sphere.rotation import _euler_angles

    angles = _euler_angles(rotation)
    moved = jnp.moveaxis(jnp.moveaxis(jnp.asarray(coeffs), 1, -1), 1, -1)
    rotated = rotate_coefficients(moved, *angles)
    return jnp.moveaxis(jnp.moveaxis(rotated, -1, 1), -1, 1)


def roll_spatial(x, shift: int):
    """Exact grid rotation about z by 2 pi shift / n_lon: roll the longitude axis."""
    import jax.numpy as jnp

    return jnp.roll(jnp.asarray(x), shift, axis=2)


def flip_spatial(x, spins):
    """Exact grid rotation by pi about the x axis (sphere-maths.md section 3.2).

    f'_{j, k} = (-1)^s f_{n_lat - 1 - j, (-k) mod n_lon} for each spin s.
    """
    import jax.numpy as jnp

    x = jnp.asarray(x)
    n_lon = x.shape[2]
    flipped = x[:, ::-1][:, :, (-np.arange(n_lon)) % n_lon]
    signs = jnp.asarray([(-1.0) ** s for s in spins]).reshape(1, 1, 1, -1, 1)
    return flipped * signs.astype(flipped.dtype)


def random_rotation(rng: np.random.Generator) -> tuple[float, float, float]:
    """Uniform random ZYZ angles: alpha, gamma ~ U[0, 2 pi), cos(beta) ~ U[-1, 1]."""
    return (
        float(rng.uniform(0, 2 * np.pi)),
        float(np.arccos(rng.uniform(-1, 1))),
        float(rng.uniform(0, 2 * np.pi)),
    )


def random_spatial_input(
    rng: np.random.Generator,
    grid: Grid,
    spins,
    batch: int = 2,
    channels: int = 3,
    ell_max: int | None = None,
    real: bool = False,
) -> np.ndarray:
    """Band-limited random spatial input (B, n_lat, n_lon, S, C).

    Synthesised from random coefficients up to `ell_max` (default the grid's limit) so
    that rotated copies are exactly representable. Real (float32) when `real` and every
    spin is 0, else complex64.
    """
    from keras_sphere.sphere import isht

    ell_max = grid.max_bandlimit if ell_max is None else ell_max
    spins = tuple(spins)
    is_real = real and all(s == 0 for s in spins)
    parts = []
    for spin in spins:
        coeffs = random_coefficients(rng, ell_max, spin, (batch, channels), is_real)
        field = isht(coeffs.astype(np.complex64), grid, spin, is_real=is_real)
        parts.append(np.moveaxis(np.asarray(field), 1, -1))  # [B, lat, lon, C]
    return np.stack(parts, axis=-2)


def relative_error(actual, expected) -> float:
    """||actual - expected|| / ||expected|| (Frobenius norms over all entries)."""
    actual = np.asarray(actual)
    expected = np.asarray(expected)
    return float(np.linalg.norm(actual - expected) / np.linalg.norm(expected))


def equivariance_error(function, inputs, rotate_inputs, rotate_outputs) -> float:
    """E = ||f(R x) - R f(x)|| / ||f(R x)|| for one input and one rotation."""
    rotated_first = function(rotate_inputs(inputs))
    rotated_after = rotate_outputs(function(inputs))
    return relative_error(rotated_after, rotated_first)


def assert_equivariant(
    function,
    inputs,
    rotate_inputs,
    rotate_outputs,
    tolerance: float,
    label: str = "",
) -> float:
    """Assert `equivariance_error` <= tolerance; print and return the measured error.

    `rotate_inputs` and `rotate_outputs` may be lists of callables (one per rotation);
    the mean error over them is checked.
    """
    if callable(rotate_inputs):
        rotate_inputs, rotate_outputs = [rotate_inputs], [rotate_outputs]
    errors = [
        equivariance_error(function, inputs, r_in, r_out)
        for r_in, r_out in zip(rotate_inputs, rotate_outputs, strict=True)
    ]
    error = float(np.mean(errors))
    print(f"equivariance error {label}: mean {error:.2e}, max {max(errors):.2e}")
    if not error <= tolerance:
        raise AssertionError(
            f"equivariance error {error:.3e} exceeds tolerance {tolerance:.1e} {label}"
        )
    return error


# -- Keras layer checks (the role of keras-hub's TestCase.run_layer_test) -------------


def _register_test_head():
    import keras

    @keras.saving.register_keras_serializable(package="keras_sphere_testing")
    class PowerHead(keras.layers.Layer):
        """Real (batch, 1) head for fit checks: mean |x|^2 over all non-batch axes."""

        def call(self, inputs):
            import jax.numpy as jnp

            power = jnp.abs(inputs) ** 2
            axes = tuple(range(1, power.ndim))
            return jnp.mean(power, axis=axes)[:, None].astype(jnp.float32)

        def compute_output_shape(self, input_shape):
            return (input_shape[0], 1)

    return PowerHead


_POWER_HEAD = None


def power_head():
    """A registered layer mapping any tensor to a real (batch, 1) power, for tests."""
    global _POWER_HEAD
    if _POWER_HEAD is None:
        _POWER_HEAD = _register_test_head()
    return _POWER_HEAD()


def _model_around(layer, input_data, call_kwargs=None):
    import keras

    inputs = keras.Input(shape=input_data.shape[1:], dtype=str(input_data.dtype))
    outputs = layer(inputs, **(call_kwargs or {}))
    return keras.Model(inputs, power_head()(outputs))


def run_serialization_test(layer) -> None:
    """get_config -> from_config -> get_config gives identical JSON."""
    import json

    import keras

    config = layer.get_config()
    clone = type(layer).from_config(config)
    assert json.dumps(clone.get_config(), sort_keys=True, default=str) == json.dumps(
        config, sort_keys=True, default=str
    )
    serialized = keras.saving.serialize_keras_object(layer)
    revived = keras.saving.deserialize_keras_object(serialized)
    assert type(revived) is type(layer)


def run_model_saving_test(model, input_data, tmp_path, fresh_process: bool = True):
    """`.keras` and `.weights.h5` round trips give identical outputs.

    With `fresh_process`, the `.keras` file is also loaded in a new Python process that
    imports only keras_sphere (and keras_sphere.testing for the test head). Also checks
    that the weights file holds exactly `count_params()` numbers (no tables).
    """
    import os
    import pathlib
    import subprocess
    import sys

    import h5py
    import keras

    tmp_path = pathlib.Path(tmp_path)
    expected = np.asarray(model.predict(input_data, verbose=0))
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    np.testing.assert_allclose(loaded.predict(input_data, verbose=0), expected, atol=0)
    weights_path = tmp_path / "model.weights.h5"
    model.save_weights(weights_path)
    sizes = []

    def collect(_, obj):  # visititems stops at the first non-None return
        if isinstance(obj, h5py.Dataset):
            sizes.append(obj.size)

    with h5py.File(weights_path, "r") as handle:
        handle.visititems(collect)
    assert sum(sizes) == model.count_params(), (sum(sizes), model.count_params())
    loaded.load_weights(weights_path)
    np.testing.assert_allclose(loaded.predict(input_data, verbose=0), expected, atol=0)
    if fresh_process:
        np.save(tmp_path / "input.npy", np.asarray(input_data))
        code = (
            "import numpy as np, keras, keras_sphere, keras_sphere.testing as t;"
            "t.power_head();"
            f"m = keras.saving.load_model({str(path)!r});"
            f"x = np.load({str(tmp_path / 'input.npy')!r});"
            f"np.save({str(tmp_path / 'output.npy')!r}, m.predict(x, verbose=0))"
        )
        env = {**os.environ, "KERAS_BACKEND": "jax"}
        result = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, env=env
        )
        assert result.returncode == 0, result.stderr[-3000:]
        np.testing.assert_allclose(np.load(tmp_path / "output.npy"), expected, atol=0)


def run_layer_test(
    layer_class,
    init_kwargs: dict,
    input_data: np.ndarray,
    expected_output_shape: tuple,
    expected_num_trainable_weights: int | None = None,
    expected_num_non_trainable_weights: int | None = None,
    expected_num_params: int | None = None,
    run_training_check: bool = True,
    run_precision_checks: bool = True,
    call_kwargs: dict | None = None,
    weights_without_gradient: tuple[str, ...] = (),
):
    """Keras citizenship checks for one layer configuration.

    Serialization round trip, eager and symbolic shapes, `compute_output_shape`, weight
    counts, one jitted `fit` step that changes every trainable weight, and the
    `mixed_bfloat16` and `bfloat16` policies (weights in the variable dtype, finite
    outputs).

    ``weights_without_gradient`` lists path suffixes of weights whose gradient is
    zero by construction (up to round-off), left out of the "every weight trains"
    check; say why where it is passed.

    Returns:
        the eager output of a freshly built layer.
    """
    import keras

    call_kwargs = call_kwargs or {}
    layer = layer_class(**init_kwargs)
    run_serialization_test(layer)
    output = layer(input_data, **call_kwargs)
    assert tuple(output.shape) == tuple(expected_output_shape), output.shape
    assert tuple(layer.compute_output_shape(input_data.shape)) == tuple(
        expected_output_shape
    )
    if expected_num_trainable_weights is not None:
        assert len(layer.trainable_weights) == expected_num_trainable_weights
    if expected_num_non_trainable_weights is not None:
        assert len(layer.non_trainable_weights) == expected_num_non_trainable_weights
    if expected_num_params is not None:
        assert layer.count_params() == expected_num_params, layer.count_params()
    assert np.all(np.isfinite(np.asarray(output)))

    symbolic = keras.Input(shape=input_data.shape[1:], dtype=str(input_data.dtype))
    symbolic_output = layer_class(**init_kwargs)(symbolic, **call_kwargs)
    assert tuple(symbolic_output.shape[1:]) == tuple(expected_output_shape[1:])

    if run_training_check:
        fresh = layer_class(**init_kwargs)
        model = _model_around(fresh, input_data, call_kwargs)
        model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse", jit_compile=True)
        before = [np.asarray(w.value) for w in fresh.trainable_weights]
        target = np.ones((input_data.shape[0], 1), np.float32)
        # Three steps: zero-initialised scales (residual blocks) pass gradients to the
        # weights behind them only from the second step on.
        history = model.fit(
            input_data, target, epochs=3, batch_size=len(target), verbose=0
        )
        assert np.isfinite(history.history["loss"][0])
        for old, new in zip(before, fresh.trainable_weights, strict=True):
            if new.path.endswith(tuple(weights_without_gradient)):
                continue
            changed = not np.array_equal(old, np.asarray(new.value))
            assert changed, f"{new.path} did not train"

    if run_precision_checks:
        for policy in ("mixed_bfloat16", "bfloat16"):
            typed = layer_class(**init_kwargs, dtype=policy)
            result = typed(input_data, **call_kwargs)
            for weight in typed.weights:
                assert weight.dtype == keras.DTypePolicy(policy).variable_dtype
            assert np.all(np.isfinite(np.asarray(result).astype(np.complex64)))
    return output


def randomize_weights(layer, rng: np.random.Generator, scale: float = 1.0) -> None:
    """Random non-zero values for every weight of a layer or model (tests only).

    Weights get scale * N(0, 1); moving variances |N(0, 1)| + 0.5 so they stay
    positive. Equivariance tests run with every weight random (biases included),
    since zero-initialised weights can hide terms that break equivariance.
    """
    for weight in layer.weights:
        value = rng.standard_normal(weight.shape)
        if weight.name == "moving_variance":
            value = np.abs(value) + 0.5
        else:
            value = scale * value
        weight.assign(value.astype(np.float32))


def spatial_to_spectral(field, grid: Grid, spins, ell_max: int | None = None):
    """(B, n_lat, n_lon, S, C) -> (B, L + 1, 2L + 1, S, C) by `sht` per spin slice."""
    from keras_sphere.sphere import sht

    return _per_slice(lambda part, spin: sht(part, grid, spin, ell_max), field, spins)


def band_limited_equivariance(
    layer, rng, spins, grid: Grid, ell_max: int, n_rotations: int = 5, scale=0.5
):
    """Equivariance errors of sht_L o layer under random rotations (anchor method).

    The output of a pointwise nonlinearity is not band-limited; its coefficients up to
    `ell_max` are compared. Inputs are `ell_max`-band-limited with unit RMS, and every
    weight is random (`randomize_weights` with `scale`).

    Returns:
        (mean relative error E, mean absolute and max absolute coefficient error).
    """
    inputs = random_spatial_input(rng, grid, spins, channels=2, ell_max=ell_max)
    inputs = inputs / np.sqrt(np.mean(np.abs(inputs) ** 2))
    layer(inputs)
    randomize_weights(layer, rng, scale)
    relative, mean_abs, max_abs = [], [], []
    for _ in range(n_rotations):
        rotation = random_rotation(rng)
        rotated = rotate_spatial(inputs, grid, spins, rotation)
        first = np.asarray(spatial_to_spectral(layer(rotated), grid, spins, ell_max))
        after = np.asarray(
            rotate_spectral(
                spatial_to_spectral(layer(inputs), grid, spins, ell_max), rotation
            )
        )
        relative.append(relative_error(after, first))
        mean_abs.append(np.mean(np.abs(after - first)))
        max_abs.append(np.max(np.abs(after - first)))
    errors = float(np.mean(relative)), float(np.mean(mean_abs)), float(max(max_abs))
    print(
        f"{type(layer).__name__} {grid.shape} L={ell_max}: E {errors[0]:.2e}, "
        f"coefficient MAE {errors[1]:.2e}, max {errors[2]:.2e}"
    )
    return errors
