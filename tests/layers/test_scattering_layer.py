import json

import keras
import numpy as np
import pytest

from keras_sphere.layers import ScatteringLayer
from keras_sphere.layers import scattering_features
from keras_sphere.layers import scattering_layer as scattering_layer_module
from keras_sphere.layers.spherical_mean import spherical_mean
from keras_sphere.sphere import Grid
from keras_sphere.sphere import isht
from keras_sphere.sphere import rotate_coefficients
from keras_sphere.testing import random_coefficients
from keras_sphere.testing import random_rotation
from keras_sphere.testing import run_layer_test
from keras_sphere.testing import run_model_saving_test


def red_maps(rng, grid, batch, channels, ell_max=None):
    """Real band-limited maps (batch, n_lat, n_lon, channels), C_ell ~ 1/(ell+1)^2,
    and their coefficients (batch, channels, L + 1, 2L + 1)."""
    ell_max = grid.max_bandlimit if ell_max is None else ell_max
    ell = np.arange(ell_max + 1)
    coeffs = random_coefficients(rng, ell_max, 0, (batch, channels), real_field=True)
    coeffs = coeffs / np.sqrt((ell + 1) * (ell + 2))[:, None]
    maps = np.asarray(isht(coeffs, grid, is_real=True)).astype(np.float32)
    return np.moveaxis(maps, 1, -1), coeffs


# --- Keras contract --------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, shape, expected_shape, n_non_trainable",
    [
        # L = 15, J0 = 2: scales 2..4, P = 1 + 3 + 3 = 7, outputs at L_s = 3 (8 x 8).
        # lam = 3, L = 9, J0 = 1: scales 1..3, P = 7, L_s = 2 (6 x 6).
        ({"J0": 2}, (2, 32, 32, 2), (2, 8, 8, 14), 0),
        ({"J0": 2, "output": "spectral"}, (2, 32, 32, 1, 2), (2, 4, 7, 1, 14), 0),
        (
            {"J0": 1, "depth": 1, "output": "invariant", "normalize": "standardize"},
            (2, 24, 40, 3),  # L = 19, scales 1..5, P = 6
            (2, 18),
            2,
        ),
        ({"J0": 1, "oversample": 2, "lam": 3.0}, (2, 20, 20, 1), (2, 6, 6, 7), 0),
    ],
)
def test_layer_contract(rng, kwargs, shape, expected_shape, n_non_trainable):
    data = rng.standard_normal(shape).astype(np.float32)
    output = run_layer_test(
        ScatteringLayer,
        kwargs,
        data,
        expected_shape,
        expected_num_trainable_weights=0,
        expected_num_non_trainable_weights=n_non_trainable,
        expected_num_params=n_non_trainable * expected_shape[-1],
    )
    expected_dtype = "complex64" if kwargs.get("output") == "spectral" else "float32"
    assert output.dtype == expected_dtype


def test_not_trainable_and_attributes():
    layer = ScatteringLayer(J0=4)
    assert not layer.trainable
    layer.build((None, 128, 128, 1))
    assert layer.paths == ((), (4,), (5,), (6,), (5, 4), (6, 4), (6, 5))
    assert layer.bandlimits == (63, 31, 63, 63, 31, 31, 63)
    assert layer.count_params() == 0
    # Tables are threaded state, not weights.
    assert not layer.weights and layer.non_trainable_variables


@pytest.mark.parametrize(
    "n, J0, depth, expected",
    [
        (128, 4, 2, (None, 32, 32, 2 * 7)),  # L = 63
        (512, 4, 2, (None, 32, 32, 2 * 16)),  # L = 255
        (2048, 4, 2, (None, 32, 32, 2 * 29)),  # L = 1023 (scattering.md section 4)
        (2048, 5, 2, (None, 64, 64, 2 * 22)),
        (2048, 4, 3, (None, 32, 32, 2 * 64)),
    ],
)
def test_output_shapes_and_channel_counts(n, J0, depth, expected):  # noqa: N803
    layer = ScatteringLayer(J0=J0, depth=depth)
    assert layer.compute_output_shape((None, n, n, 2)) == expected


def test_shapes_at_L_63_and_255_by_running(rng):  # noqa: N802
    for n, channels in ((128, 7), (512, 16)):
        maps = rng.standard_normal((1, n, n, 1)).astype(np.float32)
        output = ScatteringLayer(J0=4)(maps)
        assert output.shape == (1, 32, 32, channels)
        assert np.all(np.isfinite(np.asarray(output)))


@pytest.mark.extra_large
def test_shapes_at_L_1023_by_running(rng):  # noqa: N802
    # Needs ~5 GB of memory for the L = 1023 tables (built once, then disk-cached).
    maps = rng.standard_normal((1, 2048, 2048, 1)).astype(np.float32)
    output = np.asarray(scattering_features(maps, J0=4, verbose=0))
    assert output.shape == (1, 32, 32, 29)
    assert np.all(np.isfinite(output))


def test_channels_are_depthwise(rng):
    maps = rng.standard_normal((2, 32, 32, 3)).astype(np.float32)
    layer = ScatteringLayer(J0=2)
    together = np.asarray(layer(maps))
    n_paths = len(layer.paths)
    for channel in range(3):
        alone = np.asarray(ScatteringLayer(J0=2)(maps[..., channel : channel + 1]))
        block = together[..., channel * n_paths : (channel + 1) * n_paths]
        np.testing.assert_allclose(block, alone, atol=1e-6)


def test_model_saving_with_fitted_statistics(rng, tmp_path):
    maps = rng.standard_normal((4, 32, 32, 2)).astype(np.float32)
    layer = ScatteringLayer(J0=2, normalize="standardize")
    layer.adapt(maps, batch_size=3, verbose=0)
    inputs = keras.Input((32, 32, 2))
    features = layer(inputs)
    outputs = keras.layers.Dense(1)(keras.layers.GlobalAveragePooling2D()(features))
    model = keras.Model(inputs, outputs)
    run_model_saving_test(model, maps, tmp_path)


def test_fit_with_a_trainable_head(rng):
    maps = rng.standard_normal((8, 32, 32, 1)).astype(np.float32)
    labels = rng.integers(0, 2, (8,))
    inputs = keras.Input((32, 32, 1))
    features = ScatteringLayer(J0=0, output="invariant")(inputs)
    outputs = keras.layers.Dense(2, activation="softmax")(features)
    model = keras.Model(inputs, outputs)
    model.compile("adam", "sparse_categorical_crossentropy", jit_compile=True)
    history = model.fit(maps, labels, epochs=2, batch_size=4, verbose=0)
    assert np.all(np.isfinite(history.history["loss"]))
    assert len(model.trainable_weights) == 2
    model.evaluate(maps, labels, verbose=0)


# --- normalisation ---------------------------------------------------------------


@pytest.mark.parametrize("output", ["spatial", "spectral", "invariant"])
def test_standardize_gives_zero_mean_unit_variance(rng, output):
    maps, _ = red_maps(rng, Grid.for_bandlimit(15), 6, 2)
    layer = ScatteringLayer(J0=2, normalize="standardize", output=output)
    layer.adapt(maps, batch_size=4, verbose=0)
    reference = ScatteringLayer(J0=2, normalize="standardize")
    reference.adapt(iter([maps[:4], (maps[4:], None)]), verbose=0)
    np.testing.assert_allclose(layer.feature_mean, reference.feature_mean, rtol=1e-5)
    np.testing.assert_allclose(layer.feature_std, reference.feature_std, rtol=1e-5)
    values = np.asarray(reference(maps))  # spatial, (6, 8, 8, 14)
    grid = Grid(8, 8)
    # Exact quadrature of band-limited maps and their squares on the output grid.
    means = np.asarray(spherical_mean(values, grid)).mean(axis=0)
    squares = np.asarray(spherical_mean(values**2, grid)).mean(axis=0)
    np.testing.assert_allclose(means, 0.0, atol=1e-5)
    np.testing.assert_allclose(squares, 1.0, rtol=1e-4)
    # Every output kind applies the same affine map to the same maps.
    out = np.asarray(layer(maps))
    if output == "spectral":
        out = np.moveaxis(
            np.asarray(isht(np.moveaxis(out, -1, 1), grid, is_real=True)), 1, -1
        )
    if output == "invariant":
        np.testing.assert_allclose(
            out, np.asarray(spherical_mean(values, grid)), atol=1e-5
        )
    else:
        np.testing.assert_allclose(out, values, atol=1e-5)


def test_adapt_features_matches_adapt(rng):
    # Both compute exact spherical means (Parseval for adapt, the output grid's
    # quadrature, exact at the output bandlimit, for adapt_features): float32
    # features accumulated in float64 agree to ~1e-6 relative.
    grid = Grid.for_bandlimit(31)
    maps, _ = red_maps(rng, grid, 5, 2)
    from_maps = ScatteringLayer(2, normalize="standardize")
    from_maps.adapt(maps, batch_size=2, verbose=0)
    from_features = ScatteringLayer(2, normalize="standardize")
    from_features.build(maps.shape)
    features = np.asarray(scattering_features(maps, 2, verbose=0))
    from_features.adapt_features(features)
    for name in ("feature_mean", "feature_std"):
        np.testing.assert_allclose(
            getattr(from_features, name).numpy(),
            getattr(from_maps, name).numpy(),
            rtol=1e-5,
            atol=1e-7,
        )
    mean, std = scattering_layer_module.feature_statistics(features, Grid(8, 8))
    np.testing.assert_allclose(mean, from_maps.feature_mean.numpy(), rtol=1e-5)
    with pytest.raises(ValueError, match="expects spatial features"):
        from_features.adapt_features(features[:, :4])
    with pytest.raises(ValueError, match="must be built"):
        ScatteringLayer(2, normalize="standardize").adapt_features(features)


def test_adapt_needs_standardize():
    with pytest.raises(ValueError, match="normalize='standardize'"):
        ScatteringLayer(J0=2).adapt(np.zeros((1, 32, 32, 1), np.float32))


# --- equivariance ----------------------------------------------------------------


def equivariance_error(rng, oversample, n_pairs=10):
    """E = ||S(R f) - R S(f)|| / ||S(R f)|| over n_pairs (map, rotation) pairs, the
    inputs and outputs rotated in harmonic space (scattering.md section 8)."""
    grid = Grid.for_bandlimit(31)
    layer = ScatteringLayer(J0=2, oversample=oversample, output="spectral")
    _, coeffs = red_maps(rng, grid, n_pairs, 1)
    rotations = [random_rotation(rng) for _ in range(n_pairs)]
    rotated = np.stack(
        [rotate_coefficients(c, *r) for c, r in zip(coeffs, rotations, strict=True)]
    )
    maps = np.moveaxis(np.asarray(isht(coeffs, grid, is_real=True)), 1, -1)
    maps_rotated = np.moveaxis(np.asarray(isht(rotated, grid, is_real=True)), 1, -1)
    plain = np.moveaxis(np.asarray(layer(maps.astype(np.float32))), -1, 1)
    turned = np.moveaxis(np.asarray(layer(maps_rotated.astype(np.float32))), -1, 1)
    expected = np.stack(
        [rotate_coefficients(s, *r) for s, r in zip(plain, rotations, strict=True)]
    )
    total = np.linalg.norm(turned - expected) / np.linalg.norm(turned)
    zeroth = np.linalg.norm(turned[:, 0] - expected[:, 0]) / np.linalg.norm(
        turned[:, 0]
    )
    return total, zeroth


def test_equivariance_error_is_as_measured(rng):
    # B = 32 (64 x 64 maps, L = 31), J0 = 2, depth 2, 10 random
    # rotations, red spectrum. scattering.md section 8 measured on a DH grid
    # 2.6e-2 (oversample 1) and 4.0e-3 (oversample 2); ours, three seeds: 2.6e-2 to
    # 2.8e-2 and 3.8e-3 to 4.0e-3. Thresholds at ~1.5x ours: 4e-2 and 6e-3 (the
    # spec allows 6e-2 and 1e-2). The zeroth order is exact up to float32 rounding
    # (~1.5e-7).
    error_1, zeroth_1 = equivariance_error(rng, 1)
    error_2, zeroth_2 = equivariance_error(rng, 2)
    assert error_1 < 4e-2, error_1
    assert error_2 < 6e-3, error_2
    assert error_2 < error_1 / 4
    assert max(zeroth_1, zeroth_2) < 1e-5


# --- bad input -------------------------------------------------------------------


def test_map_too_small_for_J0():  # noqa: N802
    layer = ScatteringLayer(J0=4)
    with pytest.raises(ValueError, match="J0 must satisfy 0 <= J0 < J = 4"):
        layer(np.zeros((1, 32, 32, 1), np.float32))


def test_grid_the_layer_was_not_built_for():
    layer = ScatteringLayer(J0=2)
    layer(np.zeros((1, 32, 32, 1), np.float32))
    with pytest.raises(ValueError, match="incompatible with the layer"):
        layer(np.zeros((1, 64, 64, 1), np.float32))


def test_nan_input(rng):
    layer = ScatteringLayer(J0=2)
    maps = rng.standard_normal((2, 32, 32, 1)).astype(np.float32)
    maps[1, 3, 4, 0] = np.nan
    with pytest.raises(ValueError, match="NaN or inf"):
        layer(maps)
    inputs = keras.Input((32, 32, 1))
    model = keras.Model(inputs, ScatteringLayer(J0=2)(inputs))
    # Inside a compiled predict the check raises from the running program.
    with pytest.raises(Exception, match="NaN or inf"):
        model.predict(maps, verbose=0)


@pytest.mark.parametrize(
    "shape, dtype, error, match",
    [
        ((1, 32, 32), "float32", ValueError, "expects real spin-0 maps"),
        ((1, 32, 32, 2, 1), "float32", ValueError, "expects real spin-0 maps"),
        ((1, 32, 32, 1), "complex64", TypeError, "takes real spin-0 maps"),
    ],
)
def test_bad_inputs(shape, dtype, error, match):
    with pytest.raises(error, match=match):
        ScatteringLayer(J0=2)(np.zeros(shape, dtype))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"J0": -1}, "J0 must be an integer >= 0"),
        ({"J0": 2, "normalize": "log"}, "normalize must be one of"),
        ({"J0": 2, "output": "maps"}, "output must be one of"),
        ({"J0": 2, "oversample": 0}, "oversample must be an integer >= 1"),
        ({"J0": 2, "depth": -1}, "depth must be >= 0"),
        ({"J0": 2, "lam": 1.0}, "lam must be a number > 1"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ScatteringLayer(**kwargs)


# --- scattering_features ---------------------------------------------------------


def test_features_match_the_layer(rng):
    maps = rng.standard_normal((5, 32, 32)).astype(np.float32)
    features = scattering_features(maps, J0=2, batch_size=2, verbose=0)
    expected = np.asarray(ScatteringLayer(J0=2)(maps[..., None]))
    np.testing.assert_allclose(features, expected, atol=1e-6)
    invariant = scattering_features(
        maps[..., None], J0=2, output="invariant", verbose=0
    )
    assert invariant.shape == (5, 7)


def test_features_cache_resumes_after_an_interruption(rng, tmp_path, monkeypatch):
    maps = rng.standard_normal((6, 32, 32, 1)).astype(np.float32)
    expected = scattering_features(maps, J0=2, batch_size=2, verbose=0)
    path = tmp_path / "features.npy"
    broken = maps.copy()
    broken[3, 0, 0, 0] = np.nan  # the second batch fails after the first is stored
    with pytest.raises(ValueError, match=r"Maps \[3\] contain NaN"):
        scattering_features(broken, J0=2, batch_size=2, cache_path=path, verbose=0)
    record = json.loads(path.with_name("features.npy.json").read_text())
    assert record["done"] == 2

    calls = []
    original = scattering_layer_module.scatter_channels

    def counting(batch, *args, **kwargs):
        calls.append(len(batch))
        return original(batch, *args, **kwargs)

    features_module = __import__(
        "keras_sphere.layers.scattering_features", fromlist=["x"]
    )
    monkeypatch.setattr(features_module, "scatter_channels", counting)
    resumed = scattering_features(maps, J0=2, batch_size=2, cache_path=path, verbose=0)
    assert calls == [2, 2]  # only the missing maps were computed
    np.testing.assert_allclose(resumed, expected, atol=0)
    # A finished cache is reused as is.
    again = scattering_features(maps, J0=2, batch_size=2, cache_path=path, verbose=0)
    assert calls == [2, 2]
    np.testing.assert_array_equal(again, expected)
    with pytest.raises(ValueError, match="written for other data or settings"):
        scattering_features(maps, J0=1, cache_path=path, verbose=0)
    with pytest.raises(ValueError, match="written for other data or settings"):
        scattering_features(maps + 1, J0=2, cache_path=path, verbose=0)


def test_features_progress_bar(rng, capsys):
    maps = rng.standard_normal((3, 32, 32)).astype(np.float32)
    scattering_features(maps, J0=2, batch_size=2, verbose=1)
    assert "3/3" in capsys.readouterr().out


def test_features_bad_input():
    with pytest.raises(ValueError, match="maps must have shape"):
        scattering_features(np.zeros((32, 32), np.float32), J0=2)
    with pytest.raises(ValueError, match="J0 must satisfy"):
        scattering_features(np.zeros((1, 32, 32), np.float32), J0=4)
    with pytest.raises(ValueError, match="maps is empty"):
        scattering_features(np.zeros((0, 32, 32), np.float32), J0=2)
