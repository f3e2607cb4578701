"""`MagnitudeNonlinearity`: a ReLU on the modulus that keeps the phase."""

from __future__ import annotations

import keras

from keras_sphere.layers.phase_collapse import check_rank5_spins
from keras_sphere.layers.phase_collapse import smooth_modulus
from keras_sphere.layers.spins import atomic_build
from keras_sphere.layers.spins import check_jax_backend
from keras_sphere.layers.spins import fix_input_shape
from keras_sphere.layers.spins import normalize_spins

__all__ = ["MagnitudeNonlinearity"]


@keras.saving.register_keras_serializable(package="keras_sphere")
class MagnitudeNonlinearity(keras.layers.Layer):
    """Magnitude nonlinearity: z -> relu(|z| + b) z / (|z| + epsilon).

    The modulus is shrunk by a learned real bias b per (spin, channel) and the phase
    kept, so spin-s fields stay spin-s fields. Zero bias is the identity (up to a
    relative epsilon / |z|); b = -0.2 zeroes |z| = 0.1 and shrinks |z| = 1 to 0.8.
    Pointwise: exactly equivariant under the grid's discrete symmetries, approximately
    SO(3)-equivariant on band-limited inputs. |z| is computed as
    sqrt(|z|^2 + 1e-12) (`smooth_modulus`) so that gradients at z = 0 are finite.

    Weight: `bias` (S, C), float32 (not autocast), init 0; Keras count S * C.

    Args:
        spins: ordered spins of the input's spin axis.
        epsilon: added to |z| in the denominator, default 1e-6.
        bias_initializer: initializer of `bias`, default zeros.

    Call arguments:
        inputs: spatial (batch, n_lat, n_lon, S, C), complex, or real when every spin
            is 0.

    Returns:
        (batch, n_lat, n_lon, S, C): complex64 for complex input; for real input a
        real tensor in the layer's compute dtype.

    Example:
        >>> layer = MagnitudeNonlinearity(spins=(0, 1))
        >>> layer(np.ones((2, 8, 8, 2, 3), "complex64")).shape
        (2, 8, 8, 2, 3)

    Reference:
        Esteves et al., "Spin-Weighted Spherical CNNs", NeurIPS 2020.
    """

    def __init__(
        self, spins=(0,), epsilon: float = 1e-6, bias_initializer="zeros", **kwargs
    ):
        super().__init__(**kwargs)
        check_jax_backend(type(self).__name__)
        if not float(epsilon) > 0:
            raise ValueError(f"epsilon must be > 0. Received: epsilon={epsilon}")
        self.spins = normalize_spins(spins, "spins")
        self.epsilon = float(epsilon)
        self.bias_initializer = keras.initializers.get(bias_initializer)

    @atomic_build
    def build(self, input_shape):
        fix_input_shape(self, input_shape)
        check_rank5_spins(self.name, input_shape, self.spins)
        self.bias = self.add_weight(
            shape=(len(self.spins), int(input_shape[-1])),
            initializer=self.bias_initializer,
            name="bias",
            autocast=False,
        )

    def compute_output_shape(self, input_shape):
        check_rank5_spins(self.name, input_shape, self.spins)
        return tuple(input_shape)

    def call(self, inputs):
        import jax
        import jax.numpy as jnp

        field = jnp.asarray(inputs)
        is_complex = jnp.issubdtype(field.dtype, jnp.complexfloating)
        field = field.astype(jnp.complex64 if is_complex else jnp.float32)
        modulus = smooth_modulus(field)  # [B, lat, lon, S, C]
        bias = jnp.asarray(self.bias.value, jnp.float32)  # [S, C]
        scale = jnp.maximum(modulus + bias, 0.0) / (modulus + self.epsilon)
        if is_complex:
            # Real products on each part: a complex product with the real scale
            # (and its transpose) measured slower on CPU.
            return jax.lax.complex(field.real * scale, field.imag * scale)
        return (field * scale).astype(self.compute_dtype)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "spins": self.spins,
                "epsilon": self.epsilon,
                "bias_initializer": keras.initializers.serialize(self.bias_initializer),
            }
        )
        return config
