"""Data sets for spherical learning: CMB maps, QM9 molecules, weather.

Simulated CMB maps (`cmb`), QM9 molecules (`qm9`), weather in WeatherBench-2 layout
(`weather`).

Data modules never import TensorFlow at import time.
"""

from keras_sphere.data import cmb
from keras_sphere.data import qm9
from keras_sphere.data import weather

__all__ = ["cmb", "qm9", "weather"]
