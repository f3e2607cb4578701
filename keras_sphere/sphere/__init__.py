"""Maths on the sphere: grids, quadrature, Wigner functions, SHTs and rotations.

Submodules `wavelets` (scale-discretised wavelets) and `scattering` (wavelet
scattering networks).

NumPy and JAX only: no layers, no TensorFlow.
"""

from keras_sphere.sphere import scattering
from keras_sphere.sphere import wavelets
from keras_sphere.sphere.grid import Grid
from keras_sphere.sphere.quadrature import clenshaw_curtis_weights
from keras_sphere.sphere.rotation import rotate_coefficients
from keras_sphere.sphere.rotation import rotate_field
from keras_sphere.sphere.sht import isht
from keras_sphere.sphere.sht import pad
from keras_sphere.sphere.sht import sht
from keras_sphere.sphere.sht import truncate
from keras_sphere.sphere.sht_plan import SHTPlan
from keras_sphere.sphere.sht_plan import clear_cache
from keras_sphere.sphere.sht_plan import sht_plan
from keras_sphere.sphere.wigner import spin_harmonics
from keras_sphere.sphere.wigner import wigner_d
from keras_sphere.sphere.wigner import wigner_delta
