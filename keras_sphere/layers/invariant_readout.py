"""`InvariantReadout`: rotation-invariant features from spatial spin fields."""

from __future__ import annotations

import keras

from keras_sphere.layers.phase_collapse import check_rank5_spins
from keras_sphere.layers.phase_collapse import smooth_modulus
from keras_sphere.layers.spherical_mean import check_example_mask
from keras_sphere.layers.spherical_mean import spherical_mean
from keras_sphere.layers.spins import check_jax_backend
from keras_sphere.layers.spins import fix_input_shape
from keras_sphere.layers.spins import normalize_spins
from keras_sphere.layers.spins import spin_zero_index
from keras_sphere.sphere import Grid

__all__ = ["InvariantReadout"]

_MODES = ("classification", "molecules")


@keras.saving.register_keras_serializable(package="keras_sphere")
class InvariantReadout(keras.layers.Layer):
    """Invariant readout: one real feature per (spin, channel), flattened spin-major.

    With mean(f) = sum_jk q_j f_jk / (4 pi) the spherical mean (`spherical_mean`):

    | mode | spin 0 | spin != 0 |
    |---|---|---|
    | "classification" | Re mean(x0) = Re(a_00) / sqrt(4 pi) | mean(abs(x)) |
    | "molecules" (anchor) | abs(mean(x0)) | mean(abs(x)) |

    The spin-0 features are exactly rotation-invariant for band-limited inputs; the
    mean moduli are invariant up to the aliasing of abs(x), which is not band-limited.
    Moduli are smoothed (`smooth_modulus`, sqrt(abs(z)^2 + 1e-12)) so gradients at
    z = 0 are finite. A `Dense` head after this layer keeps the invariance.

    No weights.

    Args:
        spins: ordered spins of the input's spin axis; must contain 0 exactly once.
        mode: "classification" or "molecules".

    Call arguments:
        inputs: spatial (batch, n_lat, n_lon, S, C), complex, or real when every spin
            is 0.
        mask: optional per-example weights (batch,) (0/1 for padded examples): output
            row b is multiplied by mask[b].

    Returns:
        real (batch, S * C) in the layer's compute dtype; feature s_idx * C + c belongs
        to spin `spins[s_idx]`, channel c.

    Example:
        >>> readout = InvariantReadout(spins=(0, 1))
        >>> readout(np.ones((2, 8, 8, 2, 3), "complex64")).shape
        (2, 6)
    """

    def __init__(self, spins=(0,), mode: str = "classification", **kwargs):
        super().__init__(**kwargs)
        check_jax_backend(type(self).__name__)
        if mode not in _MODES:
            raise ValueError(f"mode must be one of {_MODES}. Received: mode={mode!r}")
        self.spins = normalize_spins(spins, "spins")
        self._zero_index = spin_zero_index(self.spins, type(self).__name__)
        self.mode = mode

    def build(self, input_shape):
        fix_input_shape(self, input_shape)
        check_rank5_spins(self.name, input_shape, self.spins)
        self._grid = Grid(int(input_shape[1]), int(input_shape[2]))

    def compute_output_shape(self, input_shape):
        check_rank5_spins(self.name, input_shape, self.spins)
        return (input_shape[0], len(self.spins) * input_shape[4])

    def compute_mask(self, inputs, previous_mask=None):
        # The per-example mask is consumed here; nothing is propagated.
        return None

    def call(self, inputs, mask=None):
        import jax.numpy as jnp

        mean_modulus = spherical_mean(smooth_modulus(inputs), self._grid)  # [B, S, C]
        mean_zero = spherical_mean(inputs[..., self._zero_index, :], self._grid)
        if self.mode == "classification":
            zero = jnp.real(mean_zero)  # [B, C]
        else:
            zero = smooth_modulus(mean_zero)
        features = mean_modulus.at[:, self._zero_index].set(zero)
        if mask is not None:
            features = (
                features * check_example_mask(mask, features.shape[0])[:, None, None]
            )
        # [B, S, C] -> [B, S * C], spin-major.
        features = features.reshape(features.shape[0], -1)
        return features.astype(self.compute_dtype)

    def get_config(self):
        config = super().get_config()
        config.update({"spins": self.spins, "mode": self.mode})
        return config
