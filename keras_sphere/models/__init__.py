"""Reference models as keras-hub `Backbone` and `Task` subclasses.

Importing this package imports keras-hub (and with it TensorFlow), which
`keras_sphere`, `keras_sphere.sphere` and `keras_sphere.layers` never do; TensorFlow is
imported without its start-up logs (`_backend.import_tensorflow_quietly`).
"""

from keras_sphere._backend import import_tensorflow_quietly

import_tensorflow_quietly()

from keras_sphere.models.cmb import CMBBackbone  # noqa: E402
from keras_sphere.models.cmb import CMBClassifier  # noqa: E402
from keras_sphere.models.qm9 import QM9Backbone  # noqa: E402
from keras_sphere.models.qm9 import QM9Regressor  # noqa: E402
from keras_sphere.models.weather import PooledWeatherBackbone  # noqa: E402
from keras_sphere.models.weather import PooledWeatherForecaster  # noqa: E402
from keras_sphere.models.weather import WeatherBackbone  # noqa: E402
from keras_sphere.models.weather import WeatherForecaster  # noqa: E402

__all__ = [
    "CMBBackbone",
    "CMBClassifier",
    "PooledWeatherBackbone",
    "PooledWeatherForecaster",
    "QM9Backbone",
    "QM9Regressor",
    "WeatherBackbone",
    "WeatherForecaster",
]
