"""The rollout loss (area weights, per-channel scales) and the curriculum."""

import numpy as np
import pytest

from keras_sphere.models.weather import RolloutMeanSquaredError
from keras_sphere.models.weather import rollout_curriculum
from keras_sphere.sphere import Grid


def test_loss_is_area_weighted_and_scaled():
    grid = Grid(16, 16)
    scale = (0.5, 0.4, 0.3, 0.2, 0.3, 0.2)
    loss = RolloutMeanSquaredError(scale, grid.shape)
    target = np.zeros((2, 3, 16, 16, 6), np.float32)
    # A constant error e per channel costs e^2 / scale^2 wherever it is.
    error = np.asarray(scale, np.float32) * 2.0
    value = float(loss(target, target + error))
    np.testing.assert_allclose(value, 4.0, rtol=1e-5)
    # An error on the polar rows only costs their share of the sphere's area.
    polar = np.zeros_like(target)
    polar[:, :, [0, -1]] = error
    share = 2 * grid.weights[0] * grid.n_lon / (4 * np.pi)
    np.testing.assert_allclose(float(loss(target, polar)), 4.0 * share, rtol=1e-5)
    config = loss.get_config()
    assert RolloutMeanSquaredError.from_config(config).get_config() == config


def test_curriculum():
    assert [rollout_curriculum(e) for e in range(14)] == [*range(1, 13), 12, 12]
    assert [
        rollout_curriculum(e, epochs_per_step=3, max_steps=2) for e in range(7)
    ] == [
        1,
        1,
        1,
        2,
        2,
        2,
        2,
    ]
    with pytest.raises(ValueError, match="epoch >= 0"):
        rollout_curriculum(-1)
