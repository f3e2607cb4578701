"""Keras 3 layers for rotation-equivariant spherical CNNs (JAX backend).

Tensor layouts: spatial (batch, n_lat, n_lon, spins, channels) on an equiangular grid
with both poles; spectral (batch, L + 1, 2L + 1, spins, channels), complex64.
"""

from keras_sphere.layers.spin_spherical_conv import SpinSphericalConv
