"""keras-sphere: rotation-equivariant deep learning on the sphere with Keras 3 and JAX.

Subpackages:
    sphere: grids, quadrature, Wigner functions, spin-weighted SHTs, rotations.
    layers: Keras layers for spin-weighted spherical CNNs.
    data: simulated and real data sets (CMB maps).
    models: reference models as keras-hub Backbone and Task classes (imports
        keras-hub and TensorFlow; import it explicitly or through `zoo`).
    zoo: pretrained presets: `zoo.load("cmb_1024")`.
"""

from keras_sphere._backend import select_jax_backend

select_jax_backend()

from keras_sphere import data  # noqa: E402
from keras_sphere import layers  # noqa: E402  (registers every layer for loading)
from keras_sphere import sphere  # noqa: E402
from keras_sphere import zoo  # noqa: E402

__version__ = "0.1.0"

__all__ = ["data", "layers", "sphere", "zoo", "__version__"]
