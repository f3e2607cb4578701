"""The model zoo: pretrained presets that load with one call.

    >>> import keras_sphere
    >>> model = keras_sphere.zoo.load("cmb_1024")  # doctest: +SKIP
    >>> keras_sphere.zoo.card("cmb_1024")  # doctest: +SKIP

Presets are keras-hub preset folders with a model card; see `loading` for handles,
checksums and errors. This package imports keras-hub (and TensorFlow) only when a
function is called.
"""

from keras_sphere.zoo.loading import PresetError
from keras_sphere.zoo.loading import card
from keras_sphere.zoo.loading import list_presets
from keras_sphere.zoo.loading import load
from keras_sphere.zoo.loading import load_backbone
from keras_sphere.zoo.loading import save_preset
from keras_sphere.zoo.loading import upload_preset
from keras_sphere.zoo.samples import load_sample

__all__ = [
    "PresetError",
    "card",
    "list_presets",
    "load",
    "load_backbone",
    "load_sample",
    "save_preset",
    "upload_preset",
]
