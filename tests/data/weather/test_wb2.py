"""open_wb2: orientation from coordinates, grid recognition, resampling, errors."""

import json

import numpy as np
import pytest

from keras_sphere.data.weather import open_wb2
from keras_sphere.sphere import GaussianGrid
from keras_sphere.sphere import Grid

SHARED_FILE = "../shared/data/weather/surface_temperature_6h_96x192.nc"
WIND = ["u_component_of_wind", "v_component_of_wind"]


def expected(function, grid, n_time=6):
    lat, lon = np.meshgrid(grid.latitudes, grid.longitudes, indexing="ij")
    return np.stack(
        [
            np.stack([function(lat, lon, t, level) for level in (500, 850)])
            for t in range(n_time)
        ]
    )


def test_south_first_transposed_dateline_input_is_oriented_by_coordinates(weather):
    grid = Grid(9, 16)
    longitudes = np.sort((grid.longitudes + 180.0) % 360.0 - 180.0)  # -180 .. 157.5
    dataset = weather.wb2_dataset(
        grid.latitudes[::-1],  # south first
        longitudes,
        {"temperature": weather.tilted_scalar},
        dims=("level", "longitude", "time", "latitude"),
    )
    out = open_wb2(dataset, ["temperature"])
    assert out["temperature"].dims == ("time", "level", "latitude", "longitude")
    np.testing.assert_allclose(out["latitude"], grid.latitudes)
    np.testing.assert_allclose(out["longitude"], grid.longitudes)
    # float32 storage of values near 850: relative 6e-8.
    np.testing.assert_allclose(
        out["temperature"].values, expected(weather.tilted_scalar, grid), rtol=1e-6
    )
    record = json.loads(out.attrs["keras_sphere"])
    assert record["latitude_flipped_to_north_first"]
    assert record["longitude_rolled_to_start_at_0"]
    assert record["source_grid"] == "Grid(9, 16)"


@pytest.mark.parametrize("south_first", [False, True])
def test_gaussian_to_equiangular_is_exact_for_scalars_and_wind(
    gaussian_wb2, south_first, weather
):
    dataset = gaussian_wb2
    if south_first:  # the reference code's bug: the same data stored south first
        dataset = dataset.isel(latitude=slice(None, None, -1))
    target = Grid(10, 16)
    out = open_wb2(dataset, ["temperature", *WIND], grid=target)
    # The fields are of degree <= 1 and stored in float32: exact to float32 rounding.
    np.testing.assert_allclose(
        out["temperature"].values, expected(weather.tilted_scalar, target), atol=1e-4
    )
    u = expected(lambda *a: weather.gradient_wind(*a)[0], target)
    v = expected(lambda *a: weather.gradient_wind(*a)[1], target)
    np.testing.assert_allclose(out["u_component_of_wind"].values, u, atol=1e-5)
    np.testing.assert_allclose(out["v_component_of_wind"].values, v, atol=1e-5)
    assert out["temperature"].dtype == np.float32
    record = json.loads(out.attrs["keras_sphere"])
    assert record["target_grid"] == "Grid(10, 16)"
    assert record["wind_resampled_as_spin_1"] == [WIND]


def test_solid_body_wind_stays_solid_body(weather):
    source = GaussianGrid(12, 24)
    dataset = weather.wb2_dataset(
        source.latitudes,
        source.longitudes,
        {
            "u_component_of_wind": weather.solid_body_wind,
            "v_component_of_wind": lambda lat, *a: np.zeros_like(lat),
        },
        n_time=2,
    )
    target = Grid(16, 32)
    out = open_wb2(dataset, WIND, grid=target, levels=[850])
    np.testing.assert_allclose(
        out["u_component_of_wind"].values,
        expected(weather.solid_body_wind, target, 2)[:, 1:],
        atol=1e-4,
    )
    np.testing.assert_allclose(out["v_component_of_wind"].values, 0.0, atol=1e-5)


def test_truncation_only_when_asked(gaussian_wb2, weather):
    small = Grid(6, 6)  # L = 2 < 7
    with pytest.raises(ValueError, match="lmax"):
        open_wb2(gaussian_wb2, ["temperature"], grid=small)
    out = open_wb2(gaussian_wb2, ["temperature"], grid=small, lmax=2)
    np.testing.assert_allclose(
        out["temperature"].values, expected(weather.tilted_scalar, small), atol=1e-4
    )


def test_errors_name_what_is_wrong(gaussian_wb2, weather):
    with pytest.raises(KeyError, match="geopotential.*temperature"):
        open_wb2(gaussian_wb2, ["geopotential"])
    with pytest.raises(ValueError, match="v_component_of_wind"):
        open_wb2(gaussian_wb2, ["u_component_of_wind"])
    with pytest.raises(KeyError, match="300"):
        open_wb2(gaussian_wb2, ["temperature"], levels=[300])
    three_hourly = weather.wb2_dataset(
        GaussianGrid(8, 16).latitudes,
        GaussianGrid(8, 16).longitudes,
        {"temperature": weather.tilted_scalar},
        step_hours=3,
    )
    with pytest.raises(ValueError, match="exactly 6 h"):
        open_wb2(three_hourly, ["temperature"])
    # Independent states (forecast initial times) keep their own times.
    states = open_wb2(three_hourly, ["temperature"], six_hourly=False)
    np.testing.assert_array_equal(states["time"].values, three_hourly["time"].values)
    pole_free = weather.wb2_dataset(
        np.linspace(87.1875, -87.1875, 32),
        np.arange(64) * 5.625,
        {"temperature": weather.tilted_scalar},
        n_time=2,
    )
    with pytest.raises(ValueError, match="with_poles"):
        open_wb2(pole_free, ["temperature"])
    broken = gaussian_wb2.copy(deep=True)
    broken["temperature"][2, 0, 3, 4] = np.nan
    with pytest.raises(ValueError, match="temperature"):
        open_wb2(broken, ["temperature"], grid=Grid(10, 16))
    with pytest.raises(FileNotFoundError, match="nowhere.zarr"):
        open_wb2("nowhere.zarr", ["temperature"])


@pytest.mark.skipif(
    not __import__("os").path.exists(SHARED_FILE), reason="shared data not present"
)
def test_real_gaussian_netcdf_file(weather):
    out = open_wb2(SHARED_FILE, ["tC"], time=slice("2001-01-01", "2001-01-01T06"))
    record = json.loads(out.attrs["keras_sphere"])
    assert record["source_grid"] == "GaussianGrid(96, 192)"
    assert record["longitude_rolled_to_start_at_0"]
    assert float(out["longitude"][0]) == 0.0 and out.sizes["time"] == 2
    on_grid = open_wb2(
        SHARED_FILE, ["tC"], grid=Grid(98, 192), time=slice("2001-01-01", "2001-01-01")
    )
    # L = 95 fits the target: the spherical mean is kept to float32 rounding.
    weights = Grid(98, 192).weights[:, None]
    mean_target = (weights * on_grid["tC"].values[0]).sum() / (4 * np.pi)
    source = GaussianGrid(96, 192)
    gl_weights = np.polynomial.legendre.leggauss(96)[1][:, None] / 2 / 192
    mean_source = (gl_weights * out["tC"].values[0]).sum()
    assert source.max_bandlimit == 95
    np.testing.assert_allclose(mean_target, mean_source, rtol=1e-5)
