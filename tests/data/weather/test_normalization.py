"""Channel layout and statistics: weighted moments, shared wind scales, immutability."""

import dataclasses
import json

import numpy as np
import pytest

from keras_sphere.data.weather import ChannelLayout
from keras_sphere.data.weather import Normalization
from keras_sphere.data.weather import compute_normalization
from keras_sphere.sphere import Grid

GRID = Grid(9, 16)


def layout():
    return ChannelLayout.from_variables(
        ["geopotential", "temperature", "u_component_of_wind", "v_component_of_wind"],
        (500, 850),
    )


def test_layout_orders_scalars_then_u_then_v_and_round_trips(weather):
    lay = layout()
    assert lay.channel_names == [
        "geopotential/500", "geopotential/850", "temperature/500", "temperature/850",
        "u_component_of_wind/500", "u_component_of_wind/850",
        "v_component_of_wind/500", "v_component_of_wind/850",
    ]  # fmt: skip
    assert (lay.num_scalar_channels, lay.num_wind_levels) == (4, 2)
    dataset = weather.random_dataset(GRID)
    stacked = lay.stack(dataset)
    assert stacked.shape == (12, 9, 16, 8) and stacked.dtype == np.float32
    np.testing.assert_array_equal(
        stacked[..., 5], dataset["u_component_of_wind"].sel(level=850).values
    )
    back = lay.unstack(stacked)
    np.testing.assert_array_equal(back["temperature"], dataset["temperature"].values)
    assert ChannelLayout.from_dict(json.loads(json.dumps(lay.to_dict()))) == lay


def weighted(values):
    w = GRID.weights[None, :, None]
    return (w * values).sum() / (w.sum() * values.shape[0] * values.shape[2])


def test_statistics_are_area_weighted_and_wind_shares_one_scale(weather):
    dataset = weather.random_dataset(GRID)
    stats = compute_normalization(dataset, layout(), GRID)
    z = dataset["geopotential"].sel(level=500).values.astype(np.float64)
    mean = weighted(z)
    np.testing.assert_allclose(stats.mean[0], mean, rtol=1e-10)
    np.testing.assert_allclose(
        stats.std[0], np.sqrt(weighted(z**2) - mean**2), rtol=1e-6
    )
    u = dataset["u_component_of_wind"].sel(level=850).values.astype(np.float64)
    v = dataset["v_component_of_wind"].sel(level=850).values.astype(np.float64)
    shared = np.sqrt(weighted(u**2 + v**2) / 2)
    assert stats.mean[5] == stats.mean[7] == 0.0
    np.testing.assert_allclose([stats.std[5], stats.std[7]], shared, rtol=1e-10)
    normalised = (z - stats.mean[0]) / stats.std[0]
    np.testing.assert_allclose(
        stats.delta_std[0],
        np.sqrt(weighted(np.diff(normalised, axis=0) ** 2)),
        rtol=1e-6,
    )
    assert stats.delta_std[4] == stats.delta_std[6]


def test_wind_statistics_do_not_change_when_the_wind_turns(weather):
    # (u, v) -> (-v, u) turns every wind vector by 90 degrees: a rotation-invariant
    # normalisation must not notice. Separate u and v scales would.
    dataset = weather.random_dataset(GRID)
    turned = dataset.copy()
    turned["u_component_of_wind"] = -dataset["v_component_of_wind"]
    turned["v_component_of_wind"] = dataset["u_component_of_wind"]
    a = compute_normalization(dataset, layout(), GRID)
    b = compute_normalization(turned, layout(), GRID)
    np.testing.assert_allclose(a.std[4:], b.std[4:], rtol=1e-6)
    np.testing.assert_allclose(a.delta_std[4:], b.delta_std[4:], rtol=1e-6)


def test_chunks_do_not_change_statistics_and_stats_are_immutable(weather):
    dataset = weather.random_dataset(GRID)
    whole = compute_normalization(dataset, layout(), GRID)
    chunked = compute_normalization(dataset, layout(), GRID, chunk=5)
    for name in ("mean", "std", "delta_std"):
        np.testing.assert_allclose(
            getattr(whole, name), getattr(chunked, name), rtol=1e-9
        )
    with pytest.raises(dataclasses.FrozenInstanceError):
        whole.std = (1.0,) * 8
    again = Normalization.from_dict(json.loads(json.dumps(whole.to_dict())))
    assert again == whole
    fields = layout().stack(dataset)
    np.testing.assert_allclose(
        whole.denormalize(whole.normalize(fields)), fields, rtol=1e-5, atol=1e-2
    )


def test_bad_statistics_are_refused(weather):
    with pytest.raises(ValueError, match="8 channels"):
        Normalization(layout(), [0.0] * 3, [1.0] * 8, [1.0] * 8)
    with pytest.raises(ValueError, match="positive"):
        Normalization(layout(), [0.0] * 8, [0.0] * 8, [1.0] * 8)
    with pytest.raises(ValueError, match="wind"):
        ChannelLayout(("temperature",), (500,), ("u_component_of_wind", "temperature"))
