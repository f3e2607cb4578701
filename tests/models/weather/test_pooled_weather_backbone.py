import json

import numpy as np
import pytest

import keras_sphere  # noqa: F401
from keras_sphere.layers import SphericalDownsampling
from keras_sphere.layers import SphericalUpsampling
from keras_sphere.models import PooledWeatherBackbone
from keras_sphere.models import PooledWeatherForecaster
from keras_sphere.models import WeatherBackbone
from keras_sphere.models import WeatherForecaster
from keras_sphere.testing import assert_equivariant
from keras_sphere.testing import relative_error


def tiny_pooled(weather, **overrides):
    kwargs = dict(pool_factor=2, coarse_widths=(4,), fine_widths=(2,))
    kwargs.update(overrides)
    return PooledWeatherBackbone(
        weather.GRID_SHAPE, weather.NUM_SCALARS, weather.NUM_WIND_LEVELS, **kwargs
    )


@pytest.fixture(scope="module")
def pooled(weather):
    import keras

    keras.utils.set_random_seed(3)
    backbone = tiny_pooled(weather)
    # Larger kernels than the initialisation's near-zero heads, so that both
    # branches contribute visibly.
    for variable in backbone.trainable_variables:
        variable.assign(np.asarray(variable) * 10.0)
    return backbone


def test_is_the_sum_of_the_pooled_coarse_branch_and_the_fine_branch(
    weather, pooled, rng
):
    # Oracle: the same computation written with the public layers one by one.
    state = weather.band_limited_state(rng, ell_max=7)
    n_scalar, n_wind = weather.NUM_SCALARS, weather.NUM_WIND_LEVELS

    def fields(x):
        x = np.asarray(x)
        wind = x[..., n_scalar : n_scalar + n_wind] + 1j * x[..., n_scalar + n_wind :]
        return x[..., None, :n_scalar], wind[..., None, :].astype(np.complex64)

    def state_of(scalars, wind):
        scalars, wind = np.real(scalars)[..., 0, :], np.asarray(wind)[..., 0, :]
        return np.concatenate([scalars, wind.real, wind.imag], axis=-1)

    scalars, wind = fields(state)
    small = state_of(
        SphericalDownsampling((0,), factor=2)(scalars),
        SphericalDownsampling((1,), factor=2)(wind),
    )
    scalars, wind = fields(pooled.coarse.predict(small, verbose=0))
    coarse = state_of(
        SphericalUpsampling((0,), factor=2)(scalars),
        SphericalUpsampling((1,), factor=2)(wind),
    )
    expected = coarse + pooled.fine.predict(state, verbose=0)
    actual = pooled.predict(state, verbose=0)
    assert actual.shape == state.shape
    assert relative_error(actual, expected) < 1e-5
    # Both branches matter.
    assert relative_error(actual, coarse) > 1e-2
    assert relative_error(actual, expected - coarse) > 1e-2


def test_exact_grid_symmetries(weather, pooled, rng):
    # Rolls by multiples of pool_factor columns and the pi rotation about x map
    # both branches' grids onto themselves (float32 rounding, as WeatherBackbone).
    state = weather.band_limited_state(rng, ell_max=7)
    assert_equivariant(
        lambda x: pooled.predict(x, verbose=0),
        state,
        [lambda x: weather.roll_state(x, 2), weather.flip_state],
        [lambda y: weather.roll_state(y, 2), weather.flip_state],
        1e-5,
        "pooled weather backbone, grid symmetries",
    )


def test_coarse_branch_takes_a_weather_backbone_of_the_coarse_grid(weather, rng):
    pooled = tiny_pooled(weather)
    small = WeatherBackbone(
        (8, 8), weather.NUM_SCALARS, weather.NUM_WIND_LEVELS, widths=(4,)
    )
    pooled.coarse.set_weights(small.get_weights())
    state = weather.band_limited_state(rng, ell_max=3)[:, ::2, ::2]
    np.testing.assert_allclose(
        pooled.coarse.predict(state, verbose=0), small.predict(state, verbose=0)
    )


def test_config_round_trip_and_forecaster(weather, tmp_path, rng):
    import keras

    backbone = tiny_pooled(weather, num_filter_params=None)
    config = backbone.get_config()
    clone = PooledWeatherBackbone.from_config(config)
    assert json.dumps(clone.get_config(), sort_keys=True) == json.dumps(
        config, sort_keys=True
    )
    forecaster = PooledWeatherForecaster(backbone, delta_scale=weather.DELTA_SCALE)
    state = weather.band_limited_state(rng)
    path = tmp_path / "pooled.keras"
    forecaster.save(path)
    loaded = keras.saving.load_model(path)
    assert isinstance(loaded, PooledWeatherForecaster)
    np.testing.assert_allclose(
        loaded.rollout(state, 2), forecaster.rollout(state, 2), atol=1e-6
    )
    with pytest.raises(TypeError, match="backbone must be a PooledWeatherBackbone"):
        PooledWeatherForecaster(weather.tiny_backbone())
    with pytest.raises(TypeError, match="backbone must be a WeatherBackbone"):
        WeatherForecaster(backbone)


def test_bad_configurations(weather):
    with pytest.raises(ValueError, match="square model grid"):
        PooledWeatherBackbone((16, 32), 2, 2)
    with pytest.raises(ValueError, match="pool_factor must be >= 2 and divide"):
        PooledWeatherBackbone((16, 16), 2, 2, pool_factor=3)
    with pytest.raises(ValueError, match="coarse_widths=\\(4, 8, 16\\)"):
        tiny_pooled(weather, coarse_widths=(4, 8, 16))
