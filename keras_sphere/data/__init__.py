"""Data sets for spherical learning: simulated CMB maps (`cmb`).

Data modules never import TensorFlow at import time.
"""

from keras_sphere.data import cmb

__all__ = ["cmb"]
