"""What rollout training optimises: its loss and its curriculum of lengths.

Loss (`RolloutMeanSquaredError`, the default of `compile`): the squared error of the
predicted normalised states, divided per channel by delta_scale^2, i.e. measured in
units of the 6 h differences' standard deviation (Keisler 2022). At the first step
this is exactly the MSE of the standardised differences; later steps measure the
accumulated state error on the same scale. It is averaged over steps, channels and
the sphere with area weights (the grid's quadrature weights, so each region counts
by its area rather than by its number of samples, and the loss is rotation-
invariant), then over the batch.

`rollout_curriculum` gives the rollout length of each epoch (Keisler 2022).
"""

from __future__ import annotations

import keras
import numpy as np

from keras_sphere.sphere import Grid

__all__ = ["MAX_CURRICULUM_STEPS", "RolloutMeanSquaredError", "rollout_curriculum"]

# Keisler (2022): rollout training lengthened from 1 step to 12 six-hour steps (3 days).
MAX_CURRICULUM_STEPS = 12


def rollout_curriculum(
    epoch: int, *, max_steps: int = MAX_CURRICULUM_STEPS, epochs_per_step: int = 1
) -> int:
    """Rollout length to train an epoch on: 1 step, then one more per stage.

    Args:
        epoch: 0-based epoch index.
        max_steps: the longest rollout (default 12 six-hour steps, 3 days).
        epochs_per_step: epochs trained at each length before it grows.

    Returns:
        min(max_steps, 1 + epoch // epochs_per_step). Build targets of that many
        steps for the epoch (a new length compiles a new training step once).

    Raises:
        ValueError: if epoch < 0, max_steps < 1 or epochs_per_step < 1.

    Example:
        >>> [rollout_curriculum(e, epochs_per_step=2) for e in range(6)]
        [1, 1, 2, 2, 3, 3]
    """
    if epoch < 0 or max_steps < 1 or epochs_per_step < 1:
        raise ValueError(
            "rollout_curriculum needs epoch >= 0, max_steps >= 1 and "
            f"epochs_per_step >= 1. Received: epoch={epoch}, max_steps={max_steps}, "
            f"epochs_per_step={epochs_per_step}"
        )
    return int(min(max_steps, 1 + epoch // epochs_per_step))


@keras.saving.register_keras_serializable(package="keras_sphere")
class RolloutMeanSquaredError(keras.losses.Loss):
    """Area-weighted squared error of normalised states in units of delta_scale.

    For targets y and predictions p of shape (batch, steps, n_lat, n_lon, channels)
    (or one step, (batch, n_lat, n_lon, channels)), the loss of an example is

        mean over steps, rows j, columns, channels c of
            w_j ((p - y) / delta_scale_c)^2,

    with w_j the grid's quadrature weight of row j scaled to mean 1 over the grid
    (area weighting). Per-example losses are then reduced as any Keras loss
    (sample weights apply per example).

    Args:
        delta_scale: per-channel scale (channels,), as the forecaster's.
        grid_shape: (n_lat, n_lon) of the state.
        name: loss name.
        reduction: Keras reduction of the per-example losses.
        dtype: computation dtype (default float32).
    """

    def __init__(
        self,
        delta_scale,
        grid_shape,
        name: str = "rollout_mean_squared_error",
        reduction: str = "sum_over_batch_size",
        dtype=None,
    ):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.delta_scale = tuple(float(s) for s in delta_scale)
        self.grid_shape = tuple(int(n) for n in grid_shape)
        grid = Grid(*self.grid_shape)
        # q_j n_lat n_lon / (4 pi): the mean over all samples of these is 1.
        self._row_weights = (
            grid.weights * grid.n_lat * grid.n_lon / (4.0 * np.pi)
        ).astype(np.float32)

    def call(self, y_true, y_pred):
        from keras import ops

        scale = ops.convert_to_tensor(np.asarray(self.delta_scale, np.float32))
        error = ops.square((y_pred - y_true) / scale)
        # Rows are axis -3 in both layouts: [..., n_lat, n_lon, channels].
        weighted = error * ops.convert_to_tensor(self._row_weights[:, None, None])
        axes = tuple(range(1, len(weighted.shape)))
        return ops.mean(weighted, axis=axes)

    def get_config(self):
        return {
            "name": self.name,
            "reduction": self.reduction,
            "dtype": self.dtype,
            "delta_scale": list(self.delta_scale),
            "grid_shape": list(self.grid_shape),
        }
