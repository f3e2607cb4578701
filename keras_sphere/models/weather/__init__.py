"""Weather forecasters: residual spherical UNets stepping the atmosphere by 6 h.

The pooled variant, for fine grids, runs one on a coarse grid and a thin one on the
full grid.
"""

from keras_sphere.models.weather.delta_step import AddScaledDifference
from keras_sphere.models.weather.pooled_weather_backbone import PooledWeatherBackbone
from keras_sphere.models.weather.pooled_weather_forecaster import (
    PooledWeatherForecaster,
)
from keras_sphere.models.weather.rollout_training import RolloutMeanSquaredError
from keras_sphere.models.weather.rollout_training import rollout_curriculum
from keras_sphere.models.weather.weather_backbone import SpinFieldsToState
from keras_sphere.models.weather.weather_backbone import StateToSpinFields
from keras_sphere.models.weather.weather_backbone import WeatherBackbone
from keras_sphere.models.weather.weather_forecaster import WeatherForecaster
