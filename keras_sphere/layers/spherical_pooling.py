"""`SphericalPooling`: area-weighted spatial average pooling on an equiangular grid."""

from __future__ import annotations

import keras
import numpy as np

from keras_sphere.layers.spins import atomic_build
from keras_sphere.layers.spins import check_jax_backend
from keras_sphere.layers.spins import fix_input_shape
from keras_sphere.sphere import Grid

__all__ = ["SphericalPooling", "pooling_weights"]


def pooling_weights(grid: Grid, pool_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Separable weights of `SphericalPooling` on `grid`.

    Returns:
        latitude: float32, shape (n_lat // s, s); row J weighs input rows
            J s .. J s + s - 1 by q_j / sum of the block's q_j (sums to 1).
        longitude: float32, shape (2 h + 1,) with h = s // 2; weight of input column
            K s + d, d = -h .. h, for output column K (sums to 1): 1 / s each for odd
            s, and for even s the same with the two end columns halved.
    """
    rows = grid.weights.reshape(grid.n_lat // pool_size, pool_size)
    latitude = rows / rows.sum(axis=1, keepdims=True)
    half = pool_size // 2
    longitude = np.full(2 * half + 1, 1.0 / pool_size)
    if pool_size % 2 == 0:
        longitude[[0, -1]] *= 0.5
    return latitude.astype(np.float32), longitude.astype(np.float32)


@keras.saving.register_keras_serializable(package="keras_sphere")
class SphericalPooling(keras.layers.Layer):
    """Area-weighted s x s average pooling on the spatial grid.

    Output row J averages input rows J s .. J s + s - 1 with the input grid's
    quadrature weights q_j (`Grid.weights`, the cell areas), normalised by the block's
    own weight sum: constants are preserved and a pool of the whole grid is exactly
    the spherical mean sum_jk q_j f_jk / (4 pi). In longitude the window is centred
    on input column K s, so output column K sits exactly at the output grid's
    longitude 2 pi K / (n_lon / s): for odd s it is s columns, for even s it is
    s + 1 columns with the two end columns at half weight (the output cell
    [phi_K - pi s / n_lon, phi_K + pi s / n_lon] covers half of each). This keeps the
    layer exactly equivariant under z-rolls by multiples of s and under the grid's
    R_x(pi) flip.

    Differences from the anchor's `SphericalPooling` (spherical-cnn, layers.py): it
    divided the q-weighted block sum by the output grid's weight instead of the
    block's weight sum (constants not preserved, ~1e-3 error for a whole-grid
    pool) and used corner-aligned s x s windows (output column K centred at
    (K s + (s - 1) / 2) input columns, so not flip-equivariant for even s).

    Approximation: a grid with both poles does not pool onto the n_lat / s grid with
    both poles exactly. The pooled rows are treated by later layers as rows at
    colatitude pi J / (n_lat / s - 1) although row J is the average of a latitude band
    (row 0 averages the polar cap, not the pole value), so pooling is only
    approximately SO(3)-equivariant. Prefer spectral pooling (`SpinSphericalConv` with
    `pooling="spectral"`), which is exact. Spin-weighted fields are averaged as values,
    which is also approximate (their local frames rotate across a cell).

    No weights.

    Args:
        pool_size: s >= 1; n_lat and n_lon of the input must be divisible by s.

    Call arguments:
        inputs: spatial (batch, n_lat, n_lon, S, C), real or complex.

    Returns:
        (batch, n_lat // s, n_lon // s, S, C): complex64 for complex input; for real
        input a real tensor in the layer's compute dtype.

    Example:
        >>> pool = SphericalPooling(pool_size=2)
        >>> pool(np.zeros((2, 16, 16, 1, 3), "float32")).shape
        (2, 8, 8, 1, 3)
    """

    def __init__(self, pool_size: int = 2, **kwargs):
        super().__init__(**kwargs)
        check_jax_backend(type(self).__name__)
        if (
            isinstance(pool_size, bool)
            or not isinstance(pool_size, int | np.integer)
            or pool_size < 1
        ):
            raise ValueError(
                f"pool_size must be an integer >= 1. Received: pool_size={pool_size!r}"
            )
        self.pool_size = int(pool_size)

    def _check_shape(self, input_shape) -> Grid:
        if len(input_shape) != 5:
            raise ValueError(
                f"{self.name} expects a rank-5 spatial input (batch, n_lat, n_lon, "
                f"spins, channels). Received shape {tuple(input_shape)}."
            )
        n_lat, n_lon = int(input_shape[1]), int(input_shape[2])
        size = self.pool_size
        if n_lat % size or n_lon % size:
            raise ValueError(
                f"{self.name}: the {n_lat} x {n_lon} grid is not divisible by "
                f"pool_size={size}. Use a grid whose n_lat and n_lon are multiples of "
                f"{size}, or spectral pooling (SpinSphericalConv(pooling='spectral'))."
            )
        return Grid(n_lat, n_lon)

    @atomic_build
    def build(self, input_shape):
        fix_input_shape(self, input_shape)
        grid = self._check_shape(input_shape)
        self._latitude, self._longitude = pooling_weights(grid, self.pool_size)

    def compute_output_shape(self, input_shape):
        self._check_shape(input_shape)
        size = self.pool_size
        return (
            input_shape[0],
            input_shape[1] // size,
            input_shape[2] // size,
            input_shape[3],
            input_shape[4],
        )

    def call(self, inputs):
        import jax.numpy as jnp

        field = jnp.asarray(inputs)
        is_complex = jnp.issubdtype(field.dtype, jnp.complexfloating)
        field = field.astype(jnp.complex64 if is_complex else jnp.float32)
        batch, n_lat, n_lon, n_spins, channels = field.shape
        size = self.pool_size
        # [B, J, s, lon, S, C] x [J, s] -> [B, J, lon, S, C]
        blocks = field.reshape(batch, n_lat // size, size, n_lon, n_spins, channels)
        latitude = jnp.asarray(self._latitude)[None, :, :, None, None, None]
        field = jnp.sum(blocks * latitude, axis=2)
        # Centred longitude window: out[K] = sum_d w_d f[K s + d], d = -h .. h.
        half = size // 2
        if half:
            field = jnp.concatenate(
                [field[:, :, n_lon - half :], field, field[:, :, :half]], axis=2
            )
        pooled = 0.0
        for offset, weight in enumerate(self._longitude):
            pooled = (
                pooled + float(weight) * field[:, :, offset : offset + n_lon : size]
            )
        if is_complex:
            return pooled
        return pooled.astype(self.compute_dtype)

    def get_config(self):
        config = super().get_config()
        config.update({"pool_size": self.pool_size})
        return config
