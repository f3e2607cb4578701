"""Data sets for spherical learning: simulated CMB maps (`cmb`), QM9 molecules (`qm9`).

Data modules never import TensorFlow at import time.
"""

from keras_sphere.data import cmb
from keras_sphere.data import qm9

__all__ = ["cmb", "qm9"]
