"""Gaussian versus non-Gaussian classification of CMB maps (``models.md`` section 3).

`CMBBackbone`: maps (batch, n, n) in uK -> frozen `ScatteringLayer` (standardised)
-> a small rotation-equivariant spherical CNN -> `InvariantReadout` features.
`CMBClassifier`: the backbone plus a dense head giving class probabilities
(Gaussian, non-Gaussian). Both are keras-hub classes, so presets saved with
`save_to_preset` load with `from_preset` and through `keras_sphere.zoo`.

The scattering front end is fixed, so its outputs can be computed once and cached
(`keras_sphere.layers.scattering_features`); `feature_model()` returns the same
network with the cached features as input, sharing every weight, for training.
"""

from __future__ import annotations

import keras
import keras_hub
import numpy as np

from keras_sphere._checks import check_finite
from keras_sphere.layers import InvariantReadout
from keras_sphere.layers import MagnitudeNonlinearity
from keras_sphere.layers import ScatteringLayer
from keras_sphere.layers import SphericalBatchNorm
from keras_sphere.layers import SphericalPooling
from keras_sphere.layers import SpinSphericalConv
from keras_sphere.models._trainer_state import restore_variables_on_error

__all__ = ["CMBBackbone", "CMBClassifier", "feature_classifier", "transfer_weights"]

_SPINS = (0, 1)
_INPUT_SCALE_UK = 100.0  # maps enter the CNN-only variant in units of 100 uK


def _cnn_layers(filters, num_filter_params, dtype) -> list[keras.layers.Layer]:
    """The CNN after the front end, as a chain of named layers."""
    cnn = []
    spins_in = (0,)
    for block, (width, params) in enumerate(
        zip(filters, num_filter_params, strict=True)
    ):
        if block:
            cnn.append(SphericalPooling(2, name=f"pool_{block}", dtype=dtype))
        cnn.append(
            SpinSphericalConv(
                width,
                spins_in,
                _SPINS,
                num_filter_params=params,
                name=f"conv_{block}",
                dtype=dtype,
            )
        )
        cnn.append(SphericalBatchNorm(_SPINS, name=f"norm_{block}", dtype=dtype))
        cnn.append(MagnitudeNonlinearity(_SPINS, name=f"act_{block}", dtype=dtype))
        spins_in = _SPINS
    cnn.append(InvariantReadout(_SPINS, name="readout", dtype=dtype))
    return cnn


def _head_layers(hidden_units, dropout, activation, classes, dtype):
    return [
        keras.layers.Dense(
            hidden_units, activation="relu", name="head_hidden", dtype=dtype
        ),
        keras.layers.Dropout(dropout, name="head_dropout", dtype=dtype),
        keras.layers.Dense(
            classes, activation=activation, name="predictions", dtype=dtype
        ),
    ]


def feature_classifier(
    feature_shape: tuple[int, int, int],
    mean,
    std,
    filters=(16, 32, 32),
    num_filter_params=(6, 6, None),
    hidden_units: int = 64,
    dropout: float = 0.3,
    activation="softmax",
) -> keras.Model:
    """A stand-alone `CMBClassifier` network on cached scattering features.

    The same layers, with the same names, as `CMBClassifier` after its front end,
    so trained weights move into a full classifier with `transfer_weights`. Training
    several seeds this way never builds the L = 1023 transform tables.

    Args:
        feature_shape: (n_s, n_s, P) of the unnormalised spatial features.
        mean: per-channel mean (P,) of the features, e.g. a fitted
            `ScatteringLayer.feature_mean`; applied by a Normalization layer.
        std: per-channel standard deviation (P,).
        filters: as in `CMBBackbone`.
        num_filter_params: as in `CMBBackbone`.
        hidden_units: as in `CMBClassifier`.
        dropout: as in `CMBClassifier`.
        activation: as in `CMBClassifier`.
    """
    layers = _cnn_layers(tuple(filters), tuple(num_filter_params), None)
    layers += _head_layers(hidden_units, dropout, activation, 2, None)
    return _on_features(feature_shape[0], mean, std, layers, "cmb_feature_classifier")


def _on_features(n_s: int, mean, std, layers, name: str) -> keras.Model:
    """Standardise (batch, n_s, n_s, P) features, add the spin axis, run `layers`."""
    mean, std = np.asarray(mean), np.asarray(std)
    channels = mean.shape[0]
    inputs = keras.Input((n_s, n_s, channels), name="scattering_features")
    x = keras.layers.Normalization(mean=mean, variance=np.square(std))(inputs)
    x = keras.layers.Reshape((n_s, n_s, 1, channels))(x)
    for layer in layers:
        x = layer(x)
    return keras.Model(inputs, x, name=name)


def transfer_weights(source: keras.Model, target: keras.Model) -> list[str]:
    """Copy the weights of every layer of `target` that `source` has by name.

    Returns:
        The names of the layers copied. Shapes must match (else ValueError).
    """
    found = {layer.name: layer for layer in _all_layers(source)}
    copied = []
    for layer in _all_layers(target):
        if layer.weights and layer.name in found:
            layer.set_weights(found[layer.name].get_weights())
            copied.append(layer.name)
    return copied


def _all_layers(model) -> list:
    return [
        layer
        for layer in model._flatten_layers(include_self=False)
        if not isinstance(layer, keras.Model)
    ]


@keras.saving.register_keras_serializable(package="keras_sphere")
class CMBBackbone(keras_hub.models.Backbone):
    """Scattering front end and spherical CNN for full-sky temperature maps.

    Layers (n = 2 (ell_max + 1)): Reshape to (n, n, 1, 1) -> `ScatteringLayer(J0,
    depth, normalize="standardize")` to (n_s, n_s, 1, P) with n_s = 2 * 2^J0 -> for
    each width: [`SphericalPooling(2)` from the second block on] ->
    `SpinSphericalConv` (spins (0) then (0, 1)) -> `SphericalBatchNorm` ->
    `MagnitudeNonlinearity` -> `InvariantReadout`. Rotation-invariant up to the
    scattering modulus and the pointwise nonlinearities (grid effects).

    With ``scattering=False`` the map itself (divided by 100 uK) enters the CNN at
    its own resolution: the low-resolution baseline of the cmb_1024 card.

    Args:
        ell_max: bandlimit L of the input maps, (n, n) = 2 (L + 1).
        J0: coarsest wavelet scale of the scattering layer.
        depth: scattering order.
        filters: channels of each convolution block.
        num_filter_params: anchors of each block's localized filters (None: full).
        scattering: use the scattering front end.
        dtype: dtype policy.

    Input: float (batch, n, n), temperature in uK (any offset-free map works; the
    scattering statistics are fitted to the training data). Output: float32
    (batch, 2 filters[-1]) invariant features.
    """

    def __init__(
        self,
        ell_max: int = 1023,
        J0: int = 4,  # noqa: N803
        depth: int = 2,
        filters=(16, 32, 32),
        num_filter_params=(6, 6, None),
        scattering: bool = True,
        dtype=None,
        **kwargs,
    ):
        filters = tuple(int(f) for f in filters)
        num_filter_params = tuple(num_filter_params)
        if len(filters) != len(num_filter_params) or not filters:
            raise ValueError(
                "filters and num_filter_params need one entry per block. Received "
                f"filters={filters}, num_filter_params={num_filter_params}."
            )
        n = 2 * (int(ell_max) + 1)
        inputs = keras.Input((n, n), name="maps")
        x = keras.layers.Reshape((n, n, 1, 1), name="add_spin_channel", dtype=dtype)(
            inputs
        )
        if scattering:
            front = ScatteringLayer(
                J0, depth, normalize="standardize", name="scattering", dtype=dtype
            )
        else:
            front = keras.layers.Rescaling(
                1.0 / _INPUT_SCALE_UK, name="input_scale", dtype=dtype
            )
        x = front(x)
        cnn = _cnn_layers(filters, num_filter_params, dtype)
        features = x
        for layer in cnn:
            features = layer(features)
        super().__init__(inputs=inputs, outputs=features, dtype=dtype, **kwargs)
        self.ell_max = int(ell_max)
        self.J0 = int(J0)
        self.depth = int(depth)
        self.filters = filters
        self.num_filter_params = num_filter_params
        self.scattering = bool(scattering)
        self.front = front
        self.cnn_layers = cnn

    def feature_model(self) -> keras.Model:
        """The CNN on cached, unnormalised scattering features, sharing weights.

        Input (batch, n_s, n_s, P) float32 as written by `scattering_features(maps,
        J0, depth)`; the front end's fitted standardisation is applied first.
        """
        if not self.scattering:
            raise ValueError("feature_model needs a backbone with scattering=True.")
        return _on_features(
            self.front.network.output_grid.n_lat,
            keras.ops.convert_to_numpy(self.front.feature_mean),
            keras.ops.convert_to_numpy(self.front.feature_std),
            self.cnn_layers,
            f"{self.name}_on_features",
        )

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "ell_max": self.ell_max,
                "J0": self.J0,
                "depth": self.depth,
                "filters": list(self.filters),
                "num_filter_params": list(self.num_filter_params),
                "scattering": self.scattering,
            }
        )
        return config


@keras.saving.register_keras_serializable(package="keras_sphere")
class CMBClassifier(keras_hub.models.Task):
    """Probability that a CMB map is non-Gaussian.

    `CMBBackbone` features -> Dense(hidden_units, relu) -> Dropout -> Dense(2,
    activation). Output (batch, 2): probabilities of `classes` with the default
    softmax (logits with ``activation=None``).

    `predict`, `evaluate` and `fit` refuse maps given as arrays that hold NaN or
    infinite values (the error names the maps), and a call that fails (a batch of
    the wrong grid, for instance) leaves the model's weights in place.

    Args:
        backbone: a `CMBBackbone`.
        hidden_units: width of the hidden dense layer.
        dropout: dropout rate before the output layer.
        activation: "softmax" or None.
        preprocessor: unused (keras-hub signature); must be None.
    """

    backbone_cls = CMBBackbone
    preprocessor_cls = None
    classes = ("gaussian", "non_gaussian")

    def __init__(
        self,
        backbone: CMBBackbone,
        hidden_units: int = 64,
        dropout: float = 0.3,
        activation="softmax",
        preprocessor=None,
        **kwargs,
    ):
        if preprocessor is not None:
            raise ValueError("CMBClassifier takes maps directly: preprocessor=None.")
        head = _head_layers(
            hidden_units, dropout, activation, len(self.classes), backbone.dtype_policy
        )
        self.backbone = backbone
        self.preprocessor = None
        inputs = backbone.input
        x = backbone(inputs)
        for layer in head:
            x = layer(x)
        # compile() (called by Task.__init__) reads the activation.
        self._output_activation = activation
        super().__init__(inputs=inputs, outputs=x, **kwargs)
        self.hidden_units = int(hidden_units)
        self.dropout = float(dropout)
        self.activation = activation
        self.head_layers = head

    def compile(self, optimizer="auto", loss="auto", *, metrics="auto", **kwargs):
        """Adam(1e-3), sparse categorical cross-entropy and accuracy by default."""
        if optimizer == "auto":
            optimizer = keras.optimizers.Adam(1e-3)
        if loss == "auto":
            loss = keras.losses.SparseCategoricalCrossentropy(
                from_logits=self._output_activation != "softmax"
            )
        if metrics == "auto":
            metrics = [keras.metrics.SparseCategoricalAccuracy(name="accuracy")]
        super().compile(optimizer=optimizer, loss=loss, metrics=metrics, **kwargs)

    def predict(self, x=None, batch_size=None, **kwargs):
        """Class probabilities (batch, 2) of maps (batch, n, n) in uK.

        As `keras.Model.predict` (``verbose``, ``steps``, ``callbacks`` pass
        through), after checking that maps given as arrays are finite; datasets
        and generators are not read ahead to check them.

        Raises:
            ValueError: if a map holds NaN or infinite values; the message lists
                the indices of the offending maps.
        """
        _check_maps(x)
        with restore_variables_on_error(self):
            return super().predict(x, batch_size=batch_size, **kwargs)

    def evaluate(self, x=None, y=None, batch_size=None, **kwargs):
        """As `keras.Model.evaluate`, with the checks of `predict`."""
        _check_maps(x)
        with restore_variables_on_error(self):
            return super().evaluate(x, y, batch_size=batch_size, **kwargs)

    def fit(self, x=None, y=None, batch_size=None, **kwargs):
        """As `keras.Model.fit`, with the checks of `predict` on `x`."""
        _check_maps(x)
        with restore_variables_on_error(self, build_optimizer=True):
            return super().fit(x, y, batch_size=batch_size, **kwargs)

    def feature_model(self) -> keras.Model:
        """The classifier on cached scattering features (see `CMBBackbone`)."""
        features = self.backbone.feature_model()
        x = features.output
        for layer in self.head_layers:
            x = layer(x)
        return keras.Model(features.input, x, name=f"{self.name}_on_features")

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "hidden_units": self.hidden_units,
                "dropout": self.dropout,
                "activation": self.activation,
            }
        )
        return config


def _check_maps(x) -> None:
    """Refuse maps given as an array (or a dict of arrays) with non-finite values."""
    arrays = x.items() if isinstance(x, dict) else [("maps", x)]
    for name, value in arrays:
        if all(hasattr(value, attribute) for attribute in ("shape", "__array__")):
            check_finite(value, name)  # NumPy, JAX and TensorFlow arrays
