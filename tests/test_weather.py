"""forecast() and evaluate() on stand-in models whose answers are known."""

import types

import numpy as np
import pytest

from keras_sphere import weather
from keras_sphere.data.weather import ChannelLayout
from keras_sphere.data.weather import compute_normalization
from keras_sphere.sphere import Grid

GRID = Grid(9, 16)
VARIABLES = ["temperature", "u_component_of_wind", "v_component_of_wind"]


def truth_dataset(n_time=12):
    """A travelling wave: every field moves 10 degrees east per 6 h."""
    import xarray

    lat, lon = np.meshgrid(GRID.latitudes, GRID.longitudes, indexing="ij")
    times = np.datetime64("2000-01-01") + np.arange(n_time) * np.timedelta64(6, "h")
    data = {}
    for index, name in enumerate(VARIABLES):
        values = np.stack(
            [
                np.stack(
                    [
                        level / 100
                        + index
                        + np.cos(np.radians(lat)) * np.cos(np.radians(lon - 10 * t))
                        for level in (500, 850)
                    ]
                )
                for t in range(n_time)
            ]
        )
        data[name] = xarray.DataArray(
            values.astype(np.float32),
            dims=("time", "level", "latitude", "longitude"),
            attrs={"units": "K" if index == 0 else "m s**-1"},
        )
    return xarray.Dataset(
        data,
        coords={
            "time": times,
            "level": [500, 850],
            "latitude": GRID.latitudes,
            "longitude": GRID.longitudes,
        },
    )


class Persistence:
    """A stand-in forecaster that keeps the state (rollout API of WeatherForecaster)."""

    backbone = types.SimpleNamespace(grid_shape=GRID.shape)

    def __init__(self, normalization=None):
        self.normalization = normalization

    def rollout(self, state, steps):
        return np.repeat(np.asarray(state)[:, None], steps, axis=1)


@pytest.fixture
def stats():
    layout = ChannelLayout.from_variables(VARIABLES, (500, 850))
    return compute_normalization(truth_dataset(), layout, GRID)


def test_lead_steps():
    assert weather.lead_steps("5D") == 20
    assert weather.lead_steps("36h") == 6
    assert weather.lead_steps(3) == 3
    with pytest.raises(ValueError, match="multiple of 6 h"):
        weather.lead_steps("9h")


def test_forecast_is_wb2_layout_in_physical_units(stats):
    truth = truth_dataset()
    initial = truth.isel(time=[0, 3])
    out = weather.forecast(Persistence(stats.to_dict()), initial, "1D")
    assert out["temperature"].dims == (
        "time", "prediction_timedelta", "level", "latitude", "longitude",
    )  # fmt: skip
    assert out.sizes["prediction_timedelta"] == 5
    assert out["prediction_timedelta"].values[1] == np.timedelta64(6, "h")
    np.testing.assert_array_equal(out["time"].values, initial["time"].values)
    assert out["temperature"].attrs["units"] == "K"
    # Persistence: every lead equals the initial state, back in physical units.
    np.testing.assert_allclose(
        out["u_component_of_wind"].isel(prediction_timedelta=4).values,
        initial["u_component_of_wind"].values,
        rtol=1e-5,
        atol=1e-5,
    )


def test_evaluate_scores_model_and_baselines(stats):
    truth = truth_dataset()
    out = weather.forecast(
        Persistence(), truth.isel(time=[0, 2]), "1D", normalization=stats
    )
    climatology = weather.climatology_of(truth)
    scores = weather.evaluate(out, truth, climatology)
    rmse = scores["temperature"]
    assert list(rmse["forecast"].values) == ["model", "persistence", "climatology"]
    assert rmse.dims == ("forecast", "prediction_timedelta", "level")
    # The stand-in is persistence: same scores, zero at lead 0, growing with lead.
    np.testing.assert_allclose(
        rmse.sel(forecast="model"), rmse.sel(forecast="persistence")
    )
    model = rmse.sel(forecast="model", level=500).values
    assert model[0] < 1e-6 and np.all(np.diff(model) > 0)
    # Independent check at one lead: the wave moved 40 degrees in a day, so the
    # error is cos(lat) (cos(x) - cos(x - 40 deg)); its weighted mean square
    # over the sphere is (1 - cos 40 deg) * mean(cos^2 lat) = (1 - cos 40) * 2 / 3.
    expected = np.sqrt((1 - np.cos(np.radians(40))) * 2 / 3)
    np.testing.assert_allclose(model[4], expected, rtol=1e-4)


def test_errors(stats):
    truth = truth_dataset()
    with pytest.raises(ValueError, match="normalization="):
        weather.forecast(Persistence(), truth.isel(time=[0]), "6h")
    coarse = truth.isel(longitude=slice(None, None, 2))
    with pytest.raises(ValueError, match="open_wb2"):
        weather.forecast(Persistence(stats), coarse.isel(time=[0]), "6h")
    with pytest.raises(KeyError, match="v_component_of_wind"):
        weather.forecast(
            Persistence(stats), truth[["temperature", "u_component_of_wind"]], "6h"
        )
    out = weather.forecast(Persistence(stats), truth.isel(time=[8]), "1D")
    with pytest.raises(ValueError, match="valid times"):
        weather.evaluate(out, truth)
