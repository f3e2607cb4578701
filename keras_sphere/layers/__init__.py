"""Keras 3 layers for rotation-equivariant spherical CNNs (JAX backend).

Tensor layouts: spatial (batch, n_lat, n_lon, spins, channels) on an equiangular grid
with both poles; spectral (batch, L + 1, 2L + 1, spins, channels), complex64.
"""

from keras_sphere.layers.invariant_readout import InvariantReadout
from keras_sphere.layers.magnitude_nonlinearity import MagnitudeNonlinearity
from keras_sphere.layers.phase_collapse import PhaseCollapse
from keras_sphere.layers.scattering_features import scattering_features
from keras_sphere.layers.scattering_layer import ScatteringLayer
from keras_sphere.layers.scattering_layer import feature_statistics
from keras_sphere.layers.spectral_batch_norm import SpectralBatchNorm
from keras_sphere.layers.spherical_batch_norm import SphericalBatchNorm
from keras_sphere.layers.spherical_downsampling import SphericalDownsampling
from keras_sphere.layers.spherical_mean import SphericalMean
from keras_sphere.layers.spherical_pooling import SphericalPooling
from keras_sphere.layers.spherical_res_block import SphericalResBlock
from keras_sphere.layers.spherical_upsampling import SphericalUpsampling
from keras_sphere.layers.spin_spherical_conv import SpinSphericalConv
