"""`SphericalUpsampling`: exact spectral upsampling of spatial spin fields."""

from __future__ import annotations

import keras
import numpy as np

from keras_sphere.layers.phase_collapse import check_rank5_spins
from keras_sphere.layers.spins import atomic_build
from keras_sphere.layers.spins import check_jax_backend
from keras_sphere.layers.spins import fix_input_shape
from keras_sphere.layers.spins import normalize_spins
from keras_sphere.layers.transform_state import TransformState
from keras_sphere.sphere import Grid

__all__ = ["SphericalUpsampling"]


@keras.saving.register_keras_serializable(package="keras_sphere")
class SphericalUpsampling(keras.layers.Layer):
    """Spectral upsampling: analyse at L, zero-pad to L_out, synthesise on a finer grid.

    With L = `Grid.max_bandlimit` of the input grid, the output bandlimit is
    L_out = factor (L + 1) - 1 and the output grid the square model grid
    2 (L_out + 1) x 2 (L_out + 1) (`Grid.for_bandlimit`); a 2 (L + 1) square input
    grid becomes factor times larger per side. Coefficients above L are zero, so the
    output is the same band-limited field sampled more finely and the layer is exactly
    SO(3)-equivariant. SHT tables are layer state (`TransformState`), not weights.

    No weights.

    Args:
        spins: ordered spins of the input's spin axis.
        factor: integer upsampling factor >= 1.

    Call arguments:
        inputs: spatial (batch, n_lat, n_lon, S, C), complex, or real when every spin
            is 0.

    Returns:
        (batch, 2 (L_out + 1), 2 (L_out + 1), S, C): complex64 for complex input; for
        real input a real tensor in the layer's compute dtype.

    Example:
        >>> upsample = SphericalUpsampling(spins=(0, 1), factor=2)
        >>> upsample(np.zeros((2, 8, 8, 2, 3), "complex64")).shape
        (2, 16, 16, 2, 3)
    """

    def __init__(self, spins=(0,), factor: int = 2, **kwargs):
        super().__init__(**kwargs)
        check_jax_backend(type(self).__name__)
        if (
            isinstance(factor, bool)
            or not isinstance(factor, int | np.integer)
            or factor < 1
        ):
            raise ValueError(
                f"factor must be an integer >= 1. Received: factor={factor!r}"
            )
        self.spins = normalize_spins(spins, "spins")
        self.factor = int(factor)

    def _grids(self, input_shape) -> tuple[Grid, int, Grid, int]:
        check_rank5_spins(self.name, input_shape, self.spins)
        grid_in = Grid(int(input_shape[1]), int(input_shape[2]))
        ell_in = grid_in.max_bandlimit
        largest_spin = max(abs(spin) for spin in self.spins)
        if ell_in < largest_spin:
            raise ValueError(
                f"{self.name}: a {grid_in.n_lat} x {grid_in.n_lon} grid holds degrees "
                f"up to {ell_in}, below |spin| = {largest_spin} of spins={self.spins}."
            )
        ell_out = self.factor * (ell_in + 1) - 1
        return grid_in, ell_in, Grid.for_bandlimit(ell_out), ell_out

    @atomic_build
    def build(self, input_shape):
        fix_input_shape(self, input_shape)
        grid_in, ell_in, grid_out, ell_out = self._grids(input_shape)
        # Analysing only up to the smaller bandlimit is the truncation when going
        # down (no coefficients above L_out are ever computed); going up, the
        # coefficients are zero-padded from L_in to L_out in `call`.
        self._ell_in, self._ell_out = min(ell_in, ell_out), ell_out
        self._forward_tables = TransformState(
            self, grid_in, self._ell_in, self.spins, "forward"
        )
        self._inverse_tables = TransformState(
            self, grid_out, ell_out, self.spins, "inverse"
        )

    def compute_output_shape(self, input_shape):
        _, _, grid_out, _ = self._grids(input_shape)
        return (input_shape[0], grid_out.n_lat, grid_out.n_lon, *input_shape[3:])

    def call(self, inputs):
        import jax.numpy as jnp

        is_real = not jnp.issubdtype(inputs.dtype, jnp.complexfloating) and all(
            spin == 0 for spin in self.spins
        )
        coeffs = self._forward_tables.to_spectral(inputs, self.spins)
        extra = self._ell_out - self._ell_in
        # [B, L + 1, 2L + 1, S, C] -> [B, L_out + 1, 2 L_out + 1, S, C]
        coeffs = jnp.pad(coeffs, ((0, 0), (0, extra), (extra, extra), (0, 0), (0, 0)))
        field = self._inverse_tables.to_spatial(coeffs, self.spins, is_real=is_real)
        if is_real:
            return field.astype(self.compute_dtype)
        return field

    def get_config(self):
        config = super().get_config()
        config.update({"spins": self.spins, "factor": self.factor})
        return config
