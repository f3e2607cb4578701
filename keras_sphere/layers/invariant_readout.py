"""`InvariantReadout`: rotation-invariant features from spatial spin fields."""

from __future__ import annotations

import math

import keras

from keras_sphere.layers.phase_collapse import check_rank5_spins
from keras_sphere.layers.phase_collapse import smooth_modulus
from keras_sphere.layers.spherical_mean import check_example_mask
from keras_sphere.layers.spherical_mean import spherical_mean
from keras_sphere.layers.spins import atomic_build
from keras_sphere.layers.spins import check_jax_backend
from keras_sphere.layers.spins import fix_input_shape
from keras_sphere.layers.spins import normalize_spins
from keras_sphere.layers.spins import spin_zero_index
from keras_sphere.layers.transform_state import TransformState
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

    No weights. With ``input_representation="spectral"`` the input is the
    coefficients (batch, L + 1, 2L + 1, S, C): the spin-0 features come from a_00
    directly and the other spins are synthesised on `grid` (default the square model
    grid 2 (L + 1)) for their mean moduli, the same features as the spatial layer on
    that grid.

    Args:
        spins: ordered spins of the input's spin axis; must contain 0 exactly once.
        mode: "classification" or "molecules".
        input_representation: "spatial" or "spectral".
        grid: (n_lat, n_lon) on which spectral input is synthesised for the moduli.

    Call arguments:
        inputs: spatial (batch, n_lat, n_lon, S, C), complex, or real when every spin
            is 0; or spectral (batch, L + 1, 2L + 1, S, C).
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

    def __init__(
        self,
        spins=(0,),
        mode: str = "classification",
        input_representation: str = "spatial",
        grid: tuple[int, int] | None = None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        check_jax_backend(type(self).__name__)
        if mode not in _MODES:
            raise ValueError(f"mode must be one of {_MODES}. Received: mode={mode!r}")
        if input_representation not in ("spatial", "spectral"):
            raise ValueError(
                'input_representation must be "spatial" or "spectral". '
                f"Received: input_representation={input_representation!r}"
            )
        if input_representation == "spatial" and grid is not None:
            raise ValueError('grid applies to input_representation="spectral" only.')
        self.spins = normalize_spins(spins, "spins")
        self._zero_index = spin_zero_index(self.spins, type(self).__name__)
        self.mode = mode
        self.input_representation = input_representation
        self.grid = None if grid is None else tuple(int(n) for n in grid)

    @atomic_build
    def build(self, input_shape):
        fix_input_shape(self, input_shape)
        check_rank5_spins(self.name, input_shape, self.spins)
        if self.input_representation == "spatial":
            self._grid = Grid(int(input_shape[1]), int(input_shape[2]))
            return
        ell_max = int(input_shape[1]) - 1
        if input_shape[2] != 2 * ell_max + 1:
            raise ValueError(
                f"{self.name}: spectral input must have shape (batch, L + 1, 2L + 1, "
                f"spins, channels). Received shape {tuple(input_shape)}."
            )
        grid = Grid.for_bandlimit(ell_max) if self.grid is None else Grid(*self.grid)
        grid.check_bandlimit(ell_max)
        self._grid = grid
        self._other_spins = tuple(s for s in self.spins if s != 0)
        if self._other_spins:
            self._inverse = TransformState(
                self, grid, ell_max, self._other_spins, "inverse"
            )

    def compute_output_shape(self, input_shape):
        check_rank5_spins(self.name, input_shape, self.spins)
        return (input_shape[0], len(self.spins) * input_shape[4])

    def compute_mask(self, inputs, previous_mask=None):
        # The per-example mask is consumed here; nothing is propagated.
        return None

    def call(self, inputs, mask=None):
        import jax.numpy as jnp

        if self.input_representation == "spectral":
            mean_zero, mean_modulus = self._spectral_means(inputs)
        else:
            mean_modulus = spherical_mean(smooth_modulus(inputs), self._grid)
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

    def _spectral_means(self, coeffs):
        """(mean of spin 0 [B, C], mean moduli [B, S, C]) from coefficients.

        The spin-0 entry of the mean moduli is a placeholder (zeros, not
        synthesised): `call` replaces it with the spin-0 feature.
        """
        import jax.numpy as jnp

        coeffs = jnp.asarray(coeffs).astype(jnp.complex64)
        ell_max = coeffs.shape[1] - 1
        # mean(f) = a_00 Y_00 = a_00 / sqrt(4 pi).
        mean_zero = coeffs[:, 0, ell_max, self._zero_index] / math.sqrt(4 * math.pi)
        placeholder = jnp.zeros_like(mean_zero.real)[:, None]  # [B, 1, C]
        if not self._other_spins:
            return mean_zero, placeholder
        others = [self.spins.index(s) for s in self._other_spins]
        field = self._inverse.to_spatial(coeffs[..., others, :], self._other_spins)
        moduli = spherical_mean(smooth_modulus(field), self._grid)  # [B, S - 1, C]
        index = self._zero_index
        return mean_zero, jnp.concatenate(
            [moduli[:, :index], placeholder, moduli[:, index:]], axis=1
        )

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "spins": self.spins,
                "mode": self.mode,
                "input_representation": self.input_representation,
                "grid": self.grid,
            }
        )
        return config
