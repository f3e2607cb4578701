"""Reference models as keras-hub `Backbone` and `Task` subclasses.

Importing this package imports keras-hub (and with it TensorFlow), which
`keras_sphere`, `keras_sphere.sphere` and `keras_sphere.layers` never do.
"""

from keras_sphere.models.cmb import CMBBackbone
from keras_sphere.models.cmb import CMBClassifier

__all__ = ["CMBBackbone", "CMBClassifier"]
