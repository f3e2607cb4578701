"""`PooledWeatherForecaster`: the forecaster task of a `PooledWeatherBackbone`."""

from __future__ import annotations

import keras

from keras_sphere.models.weather.pooled_weather_backbone import PooledWeatherBackbone
from keras_sphere.models.weather.weather_forecaster import WeatherForecaster

__all__ = ["PooledWeatherForecaster"]


@keras.saving.register_keras_serializable(package="keras_sphere")
class PooledWeatherForecaster(WeatherForecaster):
    """Steps a normalised state by 6 h with a `PooledWeatherBackbone`.

    Everything (arguments, rollouts, losses, `keras_sphere.weather.forecast`) is
    `WeatherForecaster`'s; keras-hub pairs each task class with one backbone class,
    hence this subclass.

    Example:
        >>> backbone = PooledWeatherBackbone(
        ...     (32, 32), 2, 1, pool_factor=2, coarse_widths=(4, 8), fine_widths=(2,)
        ... )
        >>> forecaster = PooledWeatherForecaster(backbone)
        >>> forecaster.rollout(np.zeros((1, 32, 32, 4), "float32"), steps=2).shape
        (1, 2, 32, 32, 4)
    """

    backbone_cls = PooledWeatherBackbone
