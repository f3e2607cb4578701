"""`SphericalMean`: the quadrature-weighted mean of spatial fields over the sphere."""

from __future__ import annotations

import keras
import numpy as np

from keras_sphere.layers.spins import atomic_build
from keras_sphere.layers.spins import check_jax_backend
from keras_sphere.layers.spins import fix_input_shape
from keras_sphere.sphere import Grid

__all__ = [
    "SphericalMean",
    "check_example_mask",
    "check_spatial_rank",
    "spherical_mean",
]


def check_spatial_rank(layer_name: str, input_shape) -> Grid:
    """The `Grid` of a rank-5 spatial input shape, or a ValueError."""
    if len(input_shape) != 5:
        raise ValueError(
            f"{layer_name} expects a rank-5 spatial input (batch, n_lat, n_lon, spins, "
            f"channels). Received shape {tuple(input_shape)}."
        )
    return Grid(int(input_shape[1]), int(input_shape[2]))


def spherical_mean(field, grid: Grid):
    """Spherical mean sum_jk q_j f_jk / (4 pi) over the grid axes, in 32-bit.

    Exact for fields band-limited at `grid.max_bandlimit` (the Clenshaw-Curtis row
    weights integrate degrees up to n_lat - 1 exactly, and the longitude sum removes
    every m != 0 with |m| < n_lon).

    Args:
        field: real or complex, (batch, n_lat, n_lon, ...) sampled on `grid`.
        grid: the `Grid` of `field`.

    Returns:
        (batch, ...): float32 for real input, complex64 for complex input.
    """
    import jax.numpy as jnp

    field = jnp.asarray(field)
    is_complex = jnp.issubdtype(field.dtype, jnp.complexfloating)
    field = field.astype(jnp.complex64 if is_complex else jnp.float32)
    # Normalised by their own sum, so the mean of a constant is that constant.
    weights = grid.weights / (grid.n_lon * grid.weights.sum())
    weights = jnp.asarray(weights.astype(np.float32))
    row_sums = jnp.sum(field, axis=2)  # [B, lat, ...]
    # [B, lat, ...] x [lat] -> [B, ...]
    return jnp.tensordot(
        jnp.moveaxis(row_sums, 1, -1), weights, axes=1, precision="highest"
    )


def check_example_mask(mask, batch: int):
    """A per-example mask (batch,) as float32 (1 keeps, 0 drops, or any weight)."""
    import jax.numpy as jnp

    mask = jnp.asarray(mask, jnp.float32)
    if mask.shape != (batch,):
        raise ValueError(
            f"mask must have shape (batch,) = ({batch},), one weight per example. "
            f"Received shape {tuple(mask.shape)}."
        )
    return mask


@keras.saving.register_keras_serializable(package="keras_sphere")
class SphericalMean(keras.layers.Layer):
    """Spherical mean of each spin and channel, with the grid's quadrature weights.

    out[b, s, c] = sum_jk q_j x[b, j, k, s, c] / (4 pi), q_j = `Grid.weights`. For
    spin 0 this is a_00 / sqrt(4 pi) of a band-limited field, hence exactly
    rotation-invariant; for spins != 0 it is the mean of the values (not invariant;
    use `InvariantReadout` for invariant features).

    No weights.

    Call arguments:
        inputs: spatial (batch, n_lat, n_lon, S, C), real or complex.
        mask: optional per-example weights (batch,) (0/1 for padded examples): output
            row b is multiplied by mask[b].

    Returns:
        (batch, S, C): complex64 for complex input; for real input a real tensor in
        the layer's compute dtype.

    Example:
        >>> mean = SphericalMean()
        >>> mean(np.ones((2, 8, 8, 1, 3), "float32")).shape
        (2, 1, 3)
    """

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        check_jax_backend(type(self).__name__)

    @atomic_build
    def build(self, input_shape):
        fix_input_shape(self, input_shape)
        self._grid = check_spatial_rank(self.name, input_shape)

    def compute_output_shape(self, input_shape):
        check_spatial_rank(self.name, input_shape)
        return (input_shape[0], input_shape[3], input_shape[4])

    def compute_mask(self, inputs, previous_mask=None):
        # The per-example mask is consumed here; nothing is propagated.
        return None

    def call(self, inputs, mask=None):
        import jax.numpy as jnp

        mean = spherical_mean(inputs, self._grid)  # [B, S, C]
        if mask is not None:
            mean = mean * check_example_mask(mask, mean.shape[0])[:, None, None]
        if jnp.issubdtype(mean.dtype, jnp.complexfloating):
            return mean
        return mean.astype(self.compute_dtype)
