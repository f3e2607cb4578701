"""Maths on the sphere: grids, quadrature, Wigner functions, SHTs and rotations.

The modules, from the bottom up; each imports only modules listed before it, at module
level and inside functions alike (a test checks that no imports form a circle):

    quadrature, wigner    quadrature weights; Wigner d and spin-weighted harmonics
    delta_recursion       Wigner Delta = d(pi/2) one degree at a time (large L)
    grid, gaussian_grid   where the samples are: equiangular with poles; Gaussian
    sht_tables            latitude tables of the SHT: values, layout, disk cache
    sht_kernels           the transform as jitted passes over a plan's tables
    sht_plan              `SHTPlan`: one transform's tables on the device, cached
    sht                   `sht`, `isht`, `pad`, `truncate`
    rotation              `rotate_coefficients`, `rotate_field`
    caches                `clear_cache`
    dense                 whole transforms of small grids as dense matrices
    healpix_grid          `HealpixGrid` and its transforms through healpy
    regrid                `regrid`, `analyse`, `synthesise`: exact resampling
                          between grids, float64 NumPy (a data step)
    wavelets, scattering  scale-discretised wavelets, wavelet scattering networks

NumPy and JAX only: no layers, no TensorFlow.
"""

from keras_sphere.sphere import scattering
from keras_sphere.sphere import wavelets
from keras_sphere.sphere.caches import clear_cache
from keras_sphere.sphere.gaussian_grid import GaussianGrid
from keras_sphere.sphere.grid import Grid
from keras_sphere.sphere.healpix_grid import HealpixGrid
from keras_sphere.sphere.quadrature import clenshaw_curtis_weights
from keras_sphere.sphere.regrid import analyse
from keras_sphere.sphere.regrid import regrid
from keras_sphere.sphere.regrid import synthesise
from keras_sphere.sphere.rotation import rotate_coefficients
from keras_sphere.sphere.rotation import rotate_field
from keras_sphere.sphere.sht import isht
from keras_sphere.sphere.sht import pad
from keras_sphere.sphere.sht import sht
from keras_sphere.sphere.sht import truncate
from keras_sphere.sphere.sht_plan import SHTPlan
from keras_sphere.sphere.sht_plan import sht_plan
from keras_sphere.sphere.wigner import spin_harmonics
from keras_sphere.sphere.wigner import wigner_d
from keras_sphere.sphere.wigner import wigner_delta
