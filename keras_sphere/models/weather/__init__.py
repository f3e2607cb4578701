"""The weather forecaster: a residual spherical UNet stepping the atmosphere by 6 h."""

from keras_sphere.models.weather.weather_backbone import SpinFieldsToState
from keras_sphere.models.weather.weather_backbone import StateToSpinFields
from keras_sphere.models.weather.weather_backbone import WeatherBackbone
from keras_sphere.models.weather.weather_forecaster import AddScaledDifference
from keras_sphere.models.weather.weather_forecaster import RolloutMeanSquaredError
from keras_sphere.models.weather.weather_forecaster import WeatherForecaster
from keras_sphere.models.weather.weather_forecaster import rollout_curriculum
