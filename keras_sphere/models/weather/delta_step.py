"""The residual 6 h step: next state = state + delta_scale * difference.

`check_delta_scale` validates the per-channel scales (u and v of a level share
one, for rotation equivariance); `AddScaledDifference` applies them in float32.
"""

from __future__ import annotations

import keras
import numpy as np

__all__ = ["AddScaledDifference", "check_delta_scale"]


def check_delta_scale(delta_scale, num_scalar_channels: int, num_wind_levels: int):
    """Validated per-channel scales of the 6 h differences, as a tuple of floats.

    u and v of one level must share one scale: a rotation mixes them (u + i v is a
    spin-1 field), so different scales would break rotation equivariance.

    Raises:
        ValueError: wrong length, non-positive or non-finite entries, or u and v of
            a level with different scales.
    """
    channels = num_scalar_channels + 2 * num_wind_levels
    if delta_scale is None:
        return (1.0,) * channels
    scale = np.asarray(delta_scale, np.float64).reshape(-1)
    if scale.shape != (channels,):
        raise ValueError(
            f"delta_scale needs one value per state channel ({channels}: "
            f"{num_scalar_channels} scalars, {num_wind_levels} u, "
            f"{num_wind_levels} v). Received {scale.shape[0]} values."
        )
    if not (np.isfinite(scale).all() and (scale > 0).all()):
        raise ValueError(
            f"delta_scale must be positive and finite. Received: {scale.tolist()}"
        )
    u = scale[num_scalar_channels : num_scalar_channels + num_wind_levels]
    v = scale[num_scalar_channels + num_wind_levels :]
    if not np.allclose(u, v, rtol=1e-6, atol=0.0):
        raise ValueError(
            "u and v of each level must share one delta_scale (u + i v rotates as "
            "one spin-1 field; compute one scale per level from both components). "
            f"Received u scales {u.tolist()} and v scales {v.tolist()}."
        )
    return tuple(float(s) for s in scale)


@keras.saving.register_keras_serializable(package="keras_sphere")
class AddScaledDifference(keras.layers.Layer):
    """next_state = state + delta_scale * difference, per channel, in float32.

    Inputs are not cast to the compute dtype (``autocast=False``): the state keeps
    float32 under mixed precision, so long rollouts do not accumulate bfloat16
    rounding.

    Args:
        delta_scale: per-channel scale (channels,).

    Call arguments:
        inputs: [state, difference], both (batch, ..., channels).

    Returns:
        float32, the shape of `state`.
    """

    def __init__(self, delta_scale, **kwargs):
        kwargs.setdefault("autocast", False)
        super().__init__(**kwargs)
        self.delta_scale = tuple(float(s) for s in delta_scale)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[0])

    def compute_output_spec(self, inputs):
        return keras.KerasTensor(inputs[0].shape, "float32")

    def call(self, inputs):
        import jax.numpy as jnp

        state, difference = inputs
        scale = jnp.asarray(self.delta_scale, jnp.float32)
        return jnp.asarray(state, jnp.float32) + scale * jnp.asarray(
            difference, jnp.float32
        )

    def get_config(self):
        return {**super().get_config(), "delta_scale": list(self.delta_scale)}
