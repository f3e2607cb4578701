"""plot_mollweide draws a field on its grid and rejects what it cannot draw."""

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from keras_sphere.plotting import plot_forecast_maps  # noqa: E402
from keras_sphere.plotting import plot_mollweide  # noqa: E402
from keras_sphere.plotting import plot_rmse_by_lead  # noqa: E402
from keras_sphere.sphere import Grid  # noqa: E402


def test_draws_a_field_with_north_up_and_east_right(tmp_path):
    grid = Grid(64, 64)
    # z = cos(theta): positive in the north. x = sin(theta) cos(phi): positive at phi=0.
    theta, phi = np.meshgrid(grid.theta, grid.phi, indexing="ij")
    ax = plot_mollweide(np.cos(theta), title="z", units="1")
    mesh = ax.collections[0]
    values = np.asarray(mesh.get_array()).reshape(64, 64)
    assert values[0].min() > 0.99 and values[-1].max() < -0.99  # north row first
    ax = plot_mollweide(np.sin(theta) * np.cos(phi), display_pixels=32)
    values = np.asarray(ax.collections[0].get_array()).reshape(32, 32)
    assert values.shape == (32, 32)  # strided for display only
    # After sorting longitudes to -pi..pi, phi = 0 sits in the middle column.
    assert values[16].argmax() in (15, 16, 17)
    ax.figure.savefig(tmp_path / "map.png")
    assert (tmp_path / "map.png").stat().st_size > 1000


def test_rejects_batches():
    with pytest.raises(ValueError, match="select a map"):
        plot_mollweide(np.zeros((2, 8, 8)))


def _forecast_and_truth():
    xarray = pytest.importorskip("xarray")
    grid = Grid(8, 8)
    leads = np.arange(3) * np.timedelta64(6, "h")
    start = np.datetime64("2000-01-01T00", "ns")
    rng = np.random.default_rng(0)
    coords = {"latitude": grid.latitudes, "longitude": grid.longitudes, "level": [500]}
    forecast = xarray.Dataset(
        {
            "z": (
                ("time", "prediction_timedelta", "level", "latitude", "longitude"),
                rng.normal(size=(1, 3, 1, 8, 8)),
            )
        },
        coords={**coords, "time": [start], "prediction_timedelta": leads},
    )
    truth = xarray.Dataset(
        {
            "z": (
                ("time", "level", "latitude", "longitude"),
                rng.normal(size=(3, 1, 8, 8)),
            )
        },
        coords={**coords, "time": start + leads},
    )
    return forecast, truth


def test_forecast_maps_show_forecast_truth_and_their_difference(tmp_path):
    forecast, truth = _forecast_and_truth()
    figure = plot_forecast_maps(forecast, truth, "z", level=500, units="m")
    maps = [np.asarray(ax.collections[0].get_array()) for ax in figure.axes[::2]]
    lead = np.timedelta64(12, "h")
    expected = forecast["z"].sel(prediction_timedelta=lead).values.ravel()
    actual = truth["z"].isel(time=-1).values.ravel()
    # Maps are drawn with longitudes sorted to -pi..pi: compare sorted values.
    np.testing.assert_allclose(np.sort(maps[0].ravel()), np.sort(expected))
    np.testing.assert_allclose(np.sort(maps[1].ravel()), np.sort(actual))
    np.testing.assert_allclose(np.sort(maps[2].ravel()), np.sort(expected - actual))
    assert "0.5 days" in figure.axes[0].get_title()
    plot_forecast_maps(forecast, truth, "z", level=500, path=tmp_path / "maps.png")
    assert (tmp_path / "maps.png").stat().st_size > 1000


def test_rmse_by_lead_draws_one_line_per_forecast(tmp_path):
    from keras_sphere import weather

    forecast, truth = _forecast_and_truth()
    scores = weather.evaluate(forecast, truth, truth.mean("time"))
    figure = plot_rmse_by_lead(scores, [("z", 500, "m")])
    (ax,) = figure.axes
    assert [line.get_label() for line in ax.lines] == [
        "model",
        "persistence",
        "climatology",
    ]
    np.testing.assert_allclose(
        ax.lines[0].get_ydata(), scores["z"].sel(forecast="model", level=500)
    )
    np.testing.assert_allclose(ax.lines[0].get_xdata(), [0, 0.25, 0.5])
